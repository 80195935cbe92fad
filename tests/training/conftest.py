"""Fixtures for the training tests: CSV files written in tmp_path and a tiny model trained once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

import model
from bench.context import REAL_DATA
from training.cli import main

REPO = Path(__file__).resolve().parents[2]
# The tests that train on the real readings skip, saying so, where the folder is absent.
needs_real_data = pytest.mark.skipif(not REAL_DATA.exists(), reason="../shared/data is not present")
# Few samples and epochs: the tests check plumbing and honesty, the benchmarks check quality.
TINY_TRAIN = ("--samples", "3000", "--epochs", "4", "--quiet")


@pytest.fixture
def write_csv(tmp_path: Path) -> Callable[[str, str], Path]:
    """Write ``text`` (a whole CSV file, header included) to ``tmp_path / name``."""

    def write(text: str, name: str = "data.csv") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


@pytest.fixture(scope="session")
def tiny_artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model trained by the command line on a little synthetic data (read-only for tests)."""
    path = tmp_path_factory.mktemp("tiny") / "model.npz"
    assert main([*TINY_TRAIN, "--out", str(path)]) == 0
    return path


@pytest.fixture(scope="session")
def tiny_classifier(tiny_artifact: Path) -> model.Classifier:
    return model.load(tiny_artifact)
