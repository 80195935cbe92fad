"""Fixtures for the deployment tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.artifacts import write_artifact


@pytest.fixture
def tiny_artifact(tmp_path: Path) -> Path:
    """A small real model artifact, standing in for the one the image trains at build time."""
    return write_artifact(tmp_path / "artifacts" / "model.npz")
