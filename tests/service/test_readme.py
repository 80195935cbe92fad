"""The README's settings table names every setting, with its default, and nothing that is gone."""

from __future__ import annotations

import re
from pathlib import Path

from service.settings import ServerSettings, Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_every_setting_is_in_the_readme_and_every_row_is_a_setting() -> None:
    text = README.read_text()
    table = text[text.index("## Settings") : text.index("\n## ", text.index("## Settings") + 1)]
    documented = set(re.findall(r"`(SENSOR_[A-Z_]+)`", table.split("\n| ", 1)[1]))
    settings = {
        f"SENSOR_{name.upper()}" for cls in (Settings, ServerSettings) for name in cls.model_fields
    }
    assert settings - documented == set(), "settings missing from the README"
    assert documented - settings == set(), "README rows for settings that do not exist"
    rows = {
        m.group(1): m.group(2)
        for m in re.finditer(r"^\| `(SENSOR_[A-Z_]+)` \| `([^`]*)`", table, re.M)
    }
    for cls in (Settings, ServerSettings):
        for name, field in cls.model_fields.items():
            key = f"SENSOR_{name.upper()}"
            if (
                key in rows
                and isinstance(field.default, int | float)
                and not isinstance(field.default, bool)
            ):
                assert rows[key] == str(field.default), (key, rows[key], field.default)
