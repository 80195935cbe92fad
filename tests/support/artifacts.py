"""Tiny model artifacts for tests: real `model.Classifier`s with random weights, no training needed."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

import model
from tests.support.server import REPO_ROOT
from training.limits import known_limits

DEFAULT_FEATURES = ("temperature", "vibration")
DEFAULT_UNITS = ("°C", "mm/s")
DEFAULT_CLASSES = ("normal", "warning", "critical")
# Roughly the synthetic default data's range (°C, mm/s).
DEFAULT_MIN = (20.0, 0.0)
DEFAULT_MAX = (90.0, 12.0)


def build_classifier(
    *,
    features: Sequence[str] = DEFAULT_FEATURES,
    units: Sequence[str] | None = None,
    classes: Sequence[str] = DEFAULT_CLASSES,
    hidden: Sequence[int] = (16,),
    feature_min: Sequence[float] | None = None,
    feature_max: Sequence[float] | None = None,
    temperature: float = 1.5,
    seed: int = 0,
    dtype: Any = np.float32,
    metadata: Mapping[str, Any] | None = None,
    limits: Sequence[tuple[float, float]] | None = None,
    novelty_threshold: float | None = None,
    drift_reference: model.DriftReference | None = None,
) -> model.Classifier:
    """A classifier over ``features`` and ``classes`` with weights drawn from ``seed``.

    Different seeds give different weights, hence different `version`s. Biases are random too,
    so the classes are not all equally likely. The standardizer maps the training range to
    roughly [-1.7, 1.7], as data uniform over that range would. ``limits`` (low, high) per
    feature default to what training writes for the feature names.

    The novelty model is that uniform data's: every class centred in the range with unit
    covariance (in standardized space). Its threshold defaults to the distance of the range's
    corners, sqrt(3 n_features), so a reading is novel only outside the training range.

    The drift reference defaults to ``uniform_reference``: that same uniform data, binned.
    """
    rng = np.random.default_rng(seed)
    n = len(features)
    if units is None:
        units = DEFAULT_UNITS if tuple(features) == DEFAULT_FEATURES else ("",) * n
    if feature_min is None:
        feature_min = DEFAULT_MIN if tuple(features) == DEFAULT_FEATURES else (0.0,) * n
    if feature_max is None:
        feature_max = DEFAULT_MAX if tuple(features) == DEFAULT_FEATURES else (1.0,) * n
    lo = np.asarray(feature_min, dtype=np.float64)
    hi = np.asarray(feature_max, dtype=np.float64)
    if limits is None:
        limits = [known_limits(f, u) for f, u in zip(features, units, strict=True)]
    network = model.MLP.initialize([n, *hidden, len(classes)], rng=rng, dtype=dtype)
    k = len(classes)
    novelty_model = model.ClassMahalanobis(
        means=np.zeros((k, n)),
        whiteners=np.broadcast_to(np.eye(n), (k, n, n)),
        threshold=novelty_threshold if novelty_threshold is not None else np.sqrt(3.0 * n),
    )
    for b in network.intercepts:
        b[:] = rng.normal(0.0, 0.5, size=b.shape)
    return model.Classifier(
        network=network,
        standardizer=model.Standardizer(mean=(lo + hi) / 2.0, scale=(hi - lo) / np.sqrt(12.0)),
        classes=tuple(classes),
        features=tuple(features),
        units=tuple(units),
        feature_min=lo,
        feature_max=hi,
        temperature=temperature,
        lower_limits=np.array([low for low, _ in limits]),
        upper_limits=np.array([high for _, high in limits]),
        metadata=dict(
            metadata
            if metadata is not None
            else {
                "created_at": "2026-01-01T00:00:00+00:00",
                "config": {"hidden": list(hidden), "seed": seed},
                "data": {"source": "tests.support.artifacts"},
                "metrics": {
                    "test": {
                        "accuracy": 0.5,
                        "novelty": {
                            "method": novelty_model.method,
                            "threshold": novelty_model.threshold,
                            "target_false_alarm_rate": novelty_model.target_rate,
                            "validation_false_alarm_rate": 0.0,
                            "false_alarm_rate": 0.0,
                        },
                    }
                },
            }
        ),
        novelty_model=novelty_model,
        drift_reference=drift_reference or uniform_reference(lo, hi, len(classes)),
    )


def uniform_reference(
    feature_min: Sequence[float] | np.ndarray,
    feature_max: Sequence[float] | np.ndarray,
    n_classes: int,
) -> model.DriftReference:
    """The drift reference of readings uniform over the training range, labels equally likely.

    Ten equal-width bins per feature (the quantiles of uniform data) plus the empty underflow
    and overflow bins; ``uniform_readings`` draws readings that match it.
    """
    lo, hi = np.asarray(feature_min, np.float64), np.asarray(feature_max, np.float64)
    edges = tuple(np.linspace(a, b, 11) for a, b in zip(lo, hi, strict=True))
    inner = np.full(10, 0.1)
    return model.DriftReference(
        edges=edges,
        feature_shares=tuple(np.concatenate([[0.0], inner, [0.0]]) for _ in edges),
        label_shares=np.full(n_classes, 1.0 / n_classes),
    )


def uniform_readings(classifier: model.Classifier, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` readings (n, n_features) uniform over the training range (``uniform_reference``)."""
    return rng.uniform(
        classifier.feature_min, classifier.feature_max, size=(n, classifier.n_features)
    )


def write_artifact(path: Path, **kwargs: Any) -> Path:
    """Save ``build_classifier(**kwargs)`` atomically at ``path``; returns ``path``."""
    build_classifier(**kwargs).save(path)
    return path


def middle_reading(classifier: model.Classifier) -> dict[str, float]:
    """A reading at the middle of the training range, keyed by feature name."""
    middle = (classifier.feature_min + classifier.feature_max) / 2.0
    return dict(zip(classifier.features, middle.tolist(), strict=True))


def train_artifact(path: Path, *, seed: int = 0, samples: int = 20_000) -> Path:
    """A real model trained by `python -m training` on synthetic data (about a second): one
    with every test metric training records, as the model card shows them."""
    command = [sys.executable, "-m", "training", "--quiet", "--samples", str(samples)]
    command += ["--seed", str(seed), "--out", str(path)]
    subprocess.run(command, cwd=REPO_ROOT, check=True, capture_output=True, timeout=120)
    return path
