"""Fixtures for the model tests: a small trained classifier and its saved artifact."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import model
from tests.model.toys import gaussian_blobs, make_classifier, train_mlp


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20240611)


@pytest.fixture(scope="session")
def trained_classifier() -> model.Classifier:
    """A float32 classifier (as production trains them) on three overlapping blobs.

    Session-scoped because training is the slow part; tests must not mutate it.
    """
    rng = np.random.default_rng(7)
    X, y = gaussian_blobs(600, rng)
    standardizer, net = train_mlp(X, y, (16, 16), rng, epochs=20, dtype=np.float32)
    return make_classifier(
        standardizer, net, X, classes=("normal", "warning", "critical"), temperature=1.7, y=y
    )


@pytest.fixture
def artifact(tmp_path: Path, trained_classifier: model.Classifier) -> Path:
    """A real artifact written by ``Classifier.save`` into a fresh directory."""
    path = tmp_path / "model.npz"
    trained_classifier.save(path)
    return path
