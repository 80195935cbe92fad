"""Calibrated probabilities for the service's hot path, checked against `model.Classifier` at load."""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

import model

logger = logging.getLogger(__name__)

# Standardized inputs are clipped here so that any finite reading, however absurd, yields finite
# logits and probabilities; such readings are reported outside the training range anyway.
STANDARD_CLIP = 1e6
# How far this path may drift from `Classifier.predict_proba` (which may compute in float32).
TOLERANCE = 1e-5


class PredictorMismatch(Exception):
    """The fast path disagrees with the model's own `predict_proba`; it must not be used."""


class Predictor:
    """`Classifier.predict_proba` rebuilt for serving, in float64 with the temperature folded in.

    The model's general path costs about 15 µs for one reading, most of it per-call numpy overhead
    that a web request pays for nothing; this one takes one list of floats, makes one tiny array
    and finishes the softmax in plain Python (about 5 µs). It relies on the network being ReLU
    layers followed by a linear output (`model.MLP`), which `verify` checks against the model's
    own output before the predictor is ever used.
    """

    def __init__(self, classifier: model.Classifier) -> None:
        network = classifier.network
        coefs = [np.asarray(W, dtype=np.float64) for W in network.coefs]
        intercepts = [np.asarray(b, dtype=np.float64) for b in network.intercepts]
        coefs[-1] = coefs[-1] / classifier.temperature
        intercepts[-1] = intercepts[-1] / classifier.temperature
        self._hidden = list(zip(coefs[:-1], intercepts[:-1], strict=True))
        self._out_W, self._out_b = coefs[-1], intercepts[-1]
        self._mean = np.asarray(classifier.standardizer.mean, dtype=np.float64)
        self._scale = np.asarray(classifier.standardizer.scale, dtype=np.float64)
        self._min = classifier.feature_min
        self._max = classifier.feature_max
        # Plain Python copies for the one-reading path.
        self._mean_list = self._mean.tolist()
        self._scale_list = self._scale.tolist()
        self._min_list = self._min.tolist()
        self._max_list = self._max.tolist()
        # The one-reading path appends a constant 1 to every layer's input and the bias as a last
        # row of the weights: one `np.dot` per layer, written into a reused buffer.
        self._hidden_augmented = [np.vstack([W, b]) for W, b in self._hidden]
        self._out_augmented = np.vstack([self._out_W, self._out_b])
        self._buffers = threading.local()

    def proba_one(self, values: Sequence[float]) -> list[float]:
        """Probabilities of one reading ``values`` (n_features,) -> list of n_classes floats."""
        H: Any = [
            min(max((v - m) / s, -STANDARD_CLIP), STANDARD_CLIP)
            for v, m, s in zip(values, self._mean_list, self._scale_list, strict=True)
        ]
        H.append(1.0)
        # Per thread (per greenlet under gevent): a buffer is written by one request at a time.
        buffers = getattr(self._buffers, "layers", None)
        if buffers is None:
            buffers = self._buffers.layers = [
                np.ones(W.shape[1] + 1) for W in self._hidden_augmented
            ]
        for W, buffer in zip(self._hidden_augmented, buffers, strict=True):
            activations = buffer[:-1]
            np.dot(H, W, out=activations)
            np.maximum(activations, 0.0, out=activations)
            H = buffer
        z = np.dot(H, self._out_augmented).tolist()
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = sum(e)
        return [v / total for v in e]

    def in_range_one(self, values: Sequence[float]) -> bool:
        """Whether every feature of one reading lies within the training range."""
        return all(
            lo <= v <= hi for lo, v, hi in zip(self._min_list, values, self._max_list, strict=True)
        )

    def proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """Probabilities of readings ``X`` (n_samples, n_features) -> (n_samples, n_classes)."""
        H = X - self._mean
        H /= self._scale
        np.clip(H, -STANDARD_CLIP, STANDARD_CLIP, out=H)
        for W, b in self._hidden:
            H = H @ W
            H += b
            np.maximum(H, 0.0, out=H)
        Z = H @ self._out_W
        Z += self._out_b
        Z -= Z.max(axis=1, keepdims=True)
        np.exp(Z, out=Z)
        Z /= Z.sum(axis=1, keepdims=True)
        return Z

    def in_range(self, X: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Whether every feature of each reading ``X`` (n_samples, n_features) is in range -> (n_samples,)."""
        within: NDArray[np.bool_] = np.all((self._min <= X) & (self._max >= X), axis=1)
        return within


def probe_readings(classifier: model.Classifier, rng: np.random.Generator) -> NDArray[np.float64]:
    """Readings spanning and exceeding the training range -> (n_probes, n_features)."""
    lo, hi = classifier.feature_min, classifier.feature_max
    span = np.maximum(hi - lo, classifier.standardizer.scale)
    inside = lo + rng.random((32, lo.size)) * (hi - lo)
    around = lo - span + rng.random((32, lo.size)) * 3.0 * span
    return np.vstack([lo, hi, (lo + hi) / 2.0, inside, around])


class ModelPredictor:
    """The same interface on the model's own general methods: slower, used if `verify` fails."""

    def __init__(self, classifier: model.Classifier) -> None:
        self._classifier = classifier
        self._low = classifier.standardizer.mean - STANDARD_CLIP * classifier.standardizer.scale
        self._high = classifier.standardizer.mean + STANDARD_CLIP * classifier.standardizer.scale

    def proba_one(self, values: Sequence[float]) -> list[float]:
        """Probabilities of one reading ``values`` (n_features,) -> list of n_classes floats."""
        row: list[float] = self.proba(np.array([values], dtype=np.float64))[0].tolist()
        return row

    def in_range_one(self, values: Sequence[float]) -> bool:
        """Whether every feature of one reading lies within the training range."""
        return bool(self._classifier.in_training_range([values])[0])

    def proba(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        """Probabilities of readings ``X`` (n_samples, n_features) -> (n_samples, n_classes)."""
        return self._classifier.predict_proba(np.clip(X, self._low, self._high))

    def in_range(self, X: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Whether every feature of each reading ``X`` (n_samples, n_features) is in range -> (n_samples,)."""
        return self._classifier.in_training_range(X)


def build_predictor(classifier: model.Classifier) -> Predictor | ModelPredictor:
    """The fast Predictor if it agrees with ``classifier`` on probe readings, else ModelPredictor."""
    try:
        return verify(Predictor(classifier), classifier)
    except PredictorMismatch as exc:
        logger.warning("serving with the model's general (slower) path: %s", exc)
        return ModelPredictor(classifier)


def verify(predictor: Predictor, classifier: model.Classifier) -> Predictor:
    """Return ``predictor`` if it agrees with ``classifier``; raises PredictorMismatch otherwise."""
    # A fixed seed: the same artifact is always checked on the same readings.
    X = probe_readings(classifier, np.random.default_rng(0))
    expected = classifier.predict_proba(X)
    worst = float(np.max(np.abs(predictor.proba(X) - expected)))
    singles = np.array([predictor.proba_one(row) for row in X.tolist()])
    worst = max(worst, float(np.max(np.abs(singles - expected))))
    if not worst <= TOLERANCE:
        raise PredictorMismatch(
            f"serving path differs from the model's predict_proba by {worst:.3g} (> {TOLERANCE})"
        )
    in_range = classifier.in_training_range(X)
    if (
        not np.array_equal(predictor.in_range(X), in_range)
        or [predictor.in_range_one(row) for row in X.tolist()] != in_range.tolist()
    ):
        raise PredictorMismatch("serving path disagrees with the model's in_training_range")
    return predictor
