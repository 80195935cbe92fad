"""The command line's options, --quick, and `python -m bench compare`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import compare
from bench.cli import parse_options
from bench.context import QUICK, Options


def _options(*argv: str) -> Options:
    return parse_options(list(argv))


def test_defaults_are_the_issues_figures() -> None:
    options = _options()
    assert options.sections == ("training", "inference", "http")
    assert (options.samples, options.test_samples, options.csv_rows) == (
        300_000,
        300_000,
        1_000_000,
    )
    assert options.inference_rows == 1_000_000
    assert (options.connections, options.threads, options.duration, options.runs) == (
        16,
        2,
        10.0,
        3,
    )
    assert options.batch_size == 100
    assert options.train_epochs is None and not options.quick


def test_quick_shrinks_what_was_not_given() -> None:
    options = _options("--quick", "--samples", "5000", "--only", "http,training")
    assert options.quick
    assert options.samples == 5000
    assert options.duration == QUICK["duration"] and options.runs == QUICK["runs"]
    # Sections always run in the suite's order, whatever order they were named in.
    assert options.sections == ("training", "http")


def test_the_command_line_is_generated_from_options(capsys: pytest.CaptureFixture[str]) -> None:
    """--help offers every field of Options (under its first alias when it has one)."""
    with pytest.raises(SystemExit) as exit_info:
        parse_options(["--help"])
    assert exit_info.value.code == 0
    help_text = capsys.readouterr().out
    for name, info in Options.model_fields.items():
        alias = info.validation_alias
        flag = alias.choices[0] if alias is not None else name  # type: ignore[union-attr]
        flag = flag.replace("_", "-")
        assert (f"-{flag}" if len(flag) == 1 else f"--{flag}") in help_text, name


def test_zero_epochs_leaves_the_choice_to_training() -> None:
    assert _options("--csv-epochs", "0").csv_epochs is None
    assert _options("--csv-epochs", "3").csv_epochs == 3


@pytest.mark.parametrize(
    "argv",
    [["--only", "gpu"], ["--only", ""], ["--duration", "0.5"], ["--samples", "0"], ["--runs", "x"]],
)
def test_bad_arguments_exit_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        parse_options(argv)
    assert exit_info.value.code == 2
    assert "python -m bench" in capsys.readouterr().err


def _document(tmp_path: Path, name: str, rows: list[tuple[str, float, str]]) -> Path:
    path = tmp_path / name
    path.write_text(
        json.dumps(
            {
                "started_at": "2025-01-01T00:00:00+00:00",
                "options": {"quick": False},
                "machine": {"git_commit": "0123456789abcdef"},
                "rows": [
                    {"key": key, "value": value, "text": f"{value:g} s", "better": better}
                    for key, value, better in rows
                ],
            }
        )
    )
    return path


def test_compare_says_which_changes_are_better(tmp_path: Path) -> None:
    old = _document(
        tmp_path,
        "old.json",
        [
            ("a.seconds", 10.0, "lower"),
            ("b.rate", 100.0, "higher"),
            ("c.rate", 100.0, "higher"),
            ("gone", 1.0, "lower"),
        ],
    )
    new = _document(
        tmp_path,
        "new.json",
        [("a.seconds", 5.0, "lower"), ("b.rate", 50.0, "higher"), ("c.rate", 102.0, "higher")],
    )
    lines = {
        line.split("|")[1].strip(): line
        for line in compare.render(old, new).splitlines()
        if line.startswith("| ")
    }
    # Each value as the run's own table printed it.
    assert "| 10 s | 5 s | -50.0% | better |" in lines["a.seconds"]
    assert "-50.0%" in lines["b.rate"] and "worse" in lines["b.rate"]
    assert "| ~ |" in lines["c.rate"]
    assert "gone" not in lines
    assert "measured in one run only: gone" in compare.render(old, new)
