"""Settings come from `SENSOR_*` environment variables, are validated, and every one is documented."""

from __future__ import annotations

import os
from pathlib import Path

import pydantic
import pytest

from service.settings import API_JSON_DEPTH, ServerSettings, Settings


def test_settings_come_from_sensor_prefixed_environment(monkeypatch) -> None:
    monkeypatch.setenv("SENSOR_MODEL_PATH", "/srv/m.npz")
    monkeypatch.setenv("SENSOR_MAX_BATCH", "50")
    monkeypatch.setenv("SENSOR_MODEL_NAME", "pump")
    settings = Settings()
    assert settings.model_path == Path("/srv/m.npz")
    assert settings.max_batch == 50 and settings.model_name == "pump"
    # Explicit arguments win over the environment.
    assert Settings(max_batch=7).max_batch == 7


def test_defaults(monkeypatch) -> None:
    for key in list(os.environ):
        if key.startswith("SENSOR_"):
            monkeypatch.delenv(key)
    settings, server = Settings(), ServerSettings()
    assert settings.model_path == Path("models/model.npz")
    assert settings.model_name == "sensor-classifier"
    assert settings.max_batch == 10_000
    assert server.bind == "127.0.0.1:8000" and server.workers is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SENSOR_MAX_BATCH", "0"),
        ("SENSOR_MAX_JSON_DEPTH", str(API_JSON_DEPTH - 1)),
        ("SENSOR_REQUEST_TIMEOUT", "0"),
        # Infinity would turn the slow-client timeout and the model watcher off unannounced.
        ("SENSOR_REQUEST_TIMEOUT", "inf"),
        ("SENSOR_RELOAD_INTERVAL", "inf"),
        ("SENSOR_RELOAD_INTERVAL", "nan"),
        ("SENSOR_MODEL_NAME", "a/b"),
        ("SENSOR_MAX_BODY_BYTES", "lots"),
    ],
)
def test_invalid_settings_are_refused(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_every_setting_is_documented() -> None:
    for cls in (Settings, ServerSettings):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no docstring"
