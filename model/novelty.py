"""Novelty detection: how far a standardized reading lies from every class seen in training."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from operator import mul
from typing import Any, ClassVar

import numpy as np
from numpy.typing import ArrayLike, NDArray

# Added to every class covariance (standardized space, where each feature's total variance is
# 1): keeps the whitening finite for a constant feature, collinear features or a class with
# fewer readings than features, and stops a direction in which one class barely varies from
# flagging readings a hair's breadth off it.
DEFAULT_SHRINKAGE = 1e-3
# Above this many multiplications per reading (classes x features^2), scoring one reading in
# plain Python costs more than numpy's per-call overhead.
_PYTHON_MAX_PRODUCTS = 48
# The artifact's keys for the novelty model, apart from everything else in it.
ARRAY_KEYS = (
    "novelty_method",
    "novelty_means",
    "novelty_whiteners",
    "novelty_threshold",
    "novelty_target_rate",
)


def threshold_for_rate(scores: ArrayLike, rate: float) -> float:
    """The smallest score that at most ``rate`` of ``scores`` (n,) exceed: an order statistic.

    With n held-out scores, ``floor(rate * n)`` of them may lie above the threshold; ties at
    the threshold count as not novel, so the held-out rate never exceeds ``rate``.
    """
    s = np.sort(np.asarray(scores, dtype=np.float64).ravel())
    if s.size == 0:
        raise ValueError("a novelty threshold needs at least one held-out reading")
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"the novelty false-alarm rate must be in [0, 1), got {rate}")
    allowed = math.floor(rate * s.size)
    return float(s[s.size - 1 - allowed])


@dataclass(frozen=True, eq=False)
class ClassMahalanobis:
    """Mahalanobis distance to the nearest class, in standardized space, over a threshold.

    means : ndarray of shape (n_classes, n_features), each class's mean training reading
    whiteners : ndarray of shape (n_classes, n_features, n_features); the squared distance of
        ``x`` to class k is ``||(x - means[k]) @ whiteners[k]||**2``, i.e. ``whiteners[k]``
        is the transposed inverse Cholesky factor of class k's (shrunk) covariance
    threshold : distance above which a reading is novel; ``score`` divides by it
    target_rate : the false-alarm rate on held-out readings the threshold was chosen for

    ``score`` is ``distance / threshold``: at least 0, above 1 exactly for novel readings.
    """

    means: NDArray[np.float64]
    whiteners: NDArray[np.float64]
    threshold: float = 1.0
    target_rate: float = 0.0

    method: ClassVar[str] = "class_mahalanobis"

    def __post_init__(self) -> None:
        object.__setattr__(self, "means", np.asarray(self.means, dtype=np.float64))
        object.__setattr__(self, "whiteners", np.asarray(self.whiteners, dtype=np.float64))
        object.__setattr__(self, "threshold", float(self.threshold))
        object.__setattr__(self, "target_rate", float(self.target_rate))
        if self.means.ndim != 2 or self.means.shape[0] < 1 or self.means.shape[1] < 1:
            raise ValueError(
                f"novelty means must have shape (n_classes, n_features), got {self.means.shape}"
            )
        k, d = self.means.shape
        if self.whiteners.shape != (k, d, d):
            raise ValueError(
                f"novelty whiteners have shape {self.whiteners.shape}, expected {(k, d, d)}"
            )
        if not (np.all(np.isfinite(self.means)) and np.all(np.isfinite(self.whiteners))):
            raise ValueError("non-finite value in the novelty model")
        if not (math.isfinite(self.threshold) and self.threshold > 0):
            raise ValueError(f"novelty threshold must be positive and finite, got {self.threshold}")
        if not 0.0 <= self.target_rate < 1.0:
            raise ValueError(f"novelty target rate must be in [0, 1), got {self.target_rate}")

    @classmethod
    def fit(
        cls,
        Xs: ArrayLike,
        y: ArrayLike,
        n_classes: int,
        shrinkage: float = DEFAULT_SHRINKAGE,
    ) -> ClassMahalanobis:
        """Fit on standardized training readings ``Xs`` (n_samples, n_features), labels ``y`` (n_samples,).

        Every class in ``range(n_classes)`` needs at least one reading. The threshold is left
        at 1 (scores are raw distances) until ``with_threshold`` sets it from held-out data.
        """
        Xs = np.asarray(Xs, dtype=np.float64)
        y = np.asarray(y, dtype=np.intp)
        if Xs.ndim != 2 or y.shape != (Xs.shape[0],):
            raise ValueError(f"expected Xs (n, d) and y (n,), got {Xs.shape} and {y.shape}")
        if not shrinkage > 0:
            raise ValueError(f"shrinkage must be positive, got {shrinkage}")
        d = Xs.shape[1]
        means = np.empty((n_classes, d))
        whiteners = np.empty((n_classes, d, d))
        for k in range(n_classes):
            members = Xs[y == k]
            if members.shape[0] == 0:
                raise ValueError(f"class {k} has no training readings to fit novelty on")
            means[k] = members.mean(axis=0)
            centered = members - means[k]
            covariance = centered.T @ centered / max(members.shape[0] - 1, 1)
            covariance += shrinkage * np.eye(d)
            # Sigma = C C^T, so (x - mu)^T Sigma^-1 (x - mu) = ||C^-1 (x - mu)||^2.
            factor = np.linalg.cholesky(covariance)
            whiteners[k] = np.linalg.inv(factor).T
        return cls(means=means, whiteners=whiteners)

    def with_threshold(self, Xs_held_out: ArrayLike, rate: float) -> ClassMahalanobis:
        """A copy whose threshold lets at most ``rate`` of held-out readings (n, n_features) be novel."""
        distance = threshold_for_rate(self.distance(Xs_held_out), rate)
        # A positive floor: held-out readings all sitting on class means would give 0.
        return replace(self, threshold=max(distance, 1e-12), target_rate=rate)

    @property
    def n_classes(self) -> int:
        return int(self.means.shape[0])

    @property
    def n_features(self) -> int:
        return int(self.means.shape[1])

    @cached_property
    def _affine(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        # All classes in one product: x @ A + c holds (x - mu_k) @ W_k for every k side by side,
        # A (n_features, n_classes * n_features), c (n_classes * n_features,).
        A = self.whiteners.transpose(1, 0, 2).reshape(self.n_features, -1)
        c = -np.einsum("ki,kij->kj", self.means, self.whiteners).ravel()
        return np.ascontiguousarray(A), c

    @cached_property
    def _per_class_lists(self) -> list[tuple[list[list[float]], list[float]]]:
        # Per class: the columns of its block of A and its offsets, as plain floats.
        A, c = self._affine
        d = self.n_features
        columns, offsets = A.T.tolist(), c.tolist()
        return [(columns[i : i + d], offsets[i : i + d]) for i in range(0, len(columns), d)]

    def distance(self, Xs: ArrayLike) -> NDArray[np.float64]:
        """Mahalanobis distance of standardized ``Xs`` (n_samples, n_features) to the nearest class -> (n_samples,)."""
        Xs = np.asarray(Xs, dtype=np.float64)
        A, c = self._affine
        Z = Xs @ A
        Z += c
        Z *= Z
        squared = Z.reshape(Xs.shape[0], self.n_classes, self.n_features).sum(axis=2)
        nearest: NDArray[np.float64] = np.sqrt(squared.min(axis=1))
        return nearest

    def score(self, Xs: ArrayLike) -> NDArray[np.float64]:
        """Novelty of standardized ``Xs`` (n_samples, n_features) -> (n_samples,); above 1 is novel."""
        scores = self.distance(Xs)
        scores /= self.threshold
        return scores

    def score_one(self, xs: Sequence[float]) -> float:
        """``score`` of one standardized reading (n_features,), avoiding per-call array overhead.

        A web request scores one reading: for a small model, plain Python is a few times
        faster than numpy's per-call cost; past ``_PYTHON_MAX_PRODUCTS`` multiplications the
        batch code on a one-row array is.
        """
        if self.n_classes * self.n_features**2 > _PYTHON_MAX_PRODUCTS:
            return float(self.score(np.array([xs], dtype=np.float64))[0])
        nearest = math.inf
        for columns, offsets in self._per_class_lists:
            z = [o + sum(map(mul, xs, col)) for col, o in zip(columns, offsets, strict=True)]
            squared = sum(map(mul, z, z))
            nearest = min(nearest, squared)
        return math.sqrt(nearest) / self.threshold

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The artifact's arrays for this model, keyed by ``ARRAY_KEYS``."""
        return {
            "novelty_method": np.array(self.method, dtype=np.str_),
            "novelty_means": self.means,
            "novelty_whiteners": self.whiteners,
            "novelty_threshold": np.array(self.threshold, dtype=np.float64),
            "novelty_target_rate": np.array(self.target_rate, dtype=np.float64),
        }

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> ClassMahalanobis:
        """Rebuild from an artifact's arrays (``ARRAY_KEYS`` present); raises ValueError naming the problem."""
        method = arrays["novelty_method"]
        if method.shape != () or method.dtype.kind != "U" or str(method) != cls.method:
            raise ValueError(f"unknown novelty method {method!r} (this build knows {cls.method!r})")
        for key in ("novelty_means", "novelty_whiteners"):
            if arrays[key].dtype.kind != "f":
                raise ValueError(f"key {key!r} must be floating point, got {arrays[key].dtype}")
        for key in ("novelty_threshold", "novelty_target_rate"):
            if arrays[key].shape != () or arrays[key].dtype.kind != "f":
                raise ValueError(f"key {key!r} must be a floating-point scalar")
        return cls(
            means=arrays["novelty_means"],
            whiteners=arrays["novelty_whiteners"],
            threshold=float(arrays["novelty_threshold"]),
            target_rate=float(arrays["novelty_target_rate"]),
        )
