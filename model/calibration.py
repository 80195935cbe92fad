"""Softmax, probability metrics and temperature scaling (Guo et al., 2017)."""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

FloatArray = NDArray[np.floating]

# Temperatures outside this range mean the logits carry no usable signal (or a bug upstream).
# fit_temperature searches only this range, and a Classifier accepts only this range: at least
# 1e-2, float32 logits (at most 3.4e38) divided by it stay far from float64's 1.8e308.
MIN_TEMPERATURE = 1e-2
MAX_TEMPERATURE = 1e2


def log_softmax(Z: ArrayLike) -> FloatArray:
    """Row-wise log-softmax of logits ``Z`` of shape (n_samples, n_classes), numerically stable."""
    Z = np.asarray(Z)
    if not np.issubdtype(Z.dtype, np.floating):
        Z = Z.astype(np.float64)
    shifted: FloatArray = Z - Z.max(axis=1, keepdims=True)
    shifted -= np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return shifted


def softmax(Z: ArrayLike, out: FloatArray | None = None) -> FloatArray:
    """Row-wise softmax of logits ``Z`` of shape (n_samples, n_classes).

    Subtracting the row maximum first keeps ``exp`` from overflowing, so rows sum to 1 and hold no
    NaN for any finite logits. ``out`` (same shape, may be ``Z`` itself) receives the result
    instead of a new array.
    """
    Z = np.asarray(Z)
    if not np.issubdtype(Z.dtype, np.floating):
        Z = Z.astype(np.float64)
    P: FloatArray = np.subtract(Z, _row_reduce(np.maximum, Z), out=out)
    np.exp(P, out=P)
    P /= _row_reduce(np.add, P)
    return P


def _row_reduce(op: np.ufunc, Z: FloatArray) -> FloatArray:
    # Column by column, (n_samples, 1): with a handful of classes this is several times faster
    # than numpy's reduction along a short last axis.
    total = Z[:, :1].copy()
    for j in range(1, Z.shape[1]):
        op(total, Z[:, j : j + 1], out=total)
    return total


def log_loss(P: ArrayLike, y: ArrayLike) -> float:
    """Mean negative log-likelihood of integer labels ``y`` (n_samples,) under ``P`` (n_samples, n_classes).

    Probabilities are clipped by the dtype's eps so a confident mistake costs a large, finite loss.
    """
    P = np.asarray(P, dtype=np.float64)
    y = np.asarray(y, dtype=np.intp)
    eps = np.finfo(P.dtype).eps
    picked = np.clip(P[np.arange(y.shape[0]), y], eps, 1.0)
    return float(-np.log(picked).mean()) + 0.0  # + 0.0: no loss is 0.0, not -0.0


def brier_score(P: ArrayLike, y: ArrayLike) -> float:
    """Mean squared distance between ``P`` (n_samples, n_classes) and the one-hot labels ``y`` (n_samples,).

    A proper scoring rule like the log-loss, but bounded (at most 2 per reading), so a few
    confidently wrong readings cannot dominate it.
    """
    P = np.asarray(P, dtype=np.float64)
    y = np.asarray(y, dtype=np.intp)
    squared = (P * P).sum(axis=1) - 2 * P[np.arange(y.shape[0]), y] + 1.0
    return float(squared.mean())


def reliability_bins(
    P: ArrayLike, y: ArrayLike, n_bins: int = 15
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Mean confidence, accuracy and count of the predictions in each equal-width confidence bin.

    Bin ``b`` holds predictions with confidence in ``(b / n_bins, (b + 1) / n_bins]``. Empty bins have
    confidence and accuracy 0. Returns three arrays of shape (n_bins,).
    """
    P = np.asarray(P, dtype=np.float64)
    y = np.asarray(y, dtype=np.intp)
    confidence = P.max(axis=1)
    correct = (P.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(confidence * n_bins).astype(np.intp) - 1, 0, n_bins - 1)
    counts = np.bincount(bins, minlength=n_bins).astype(np.int64)
    safe = np.maximum(counts, 1)
    mean_confidence = np.bincount(bins, weights=confidence, minlength=n_bins) / safe
    accuracy = np.bincount(bins, weights=correct, minlength=n_bins) / safe
    return mean_confidence, accuracy, counts


def expected_calibration_error(P: ArrayLike, y: ArrayLike, n_bins: int = 15) -> float:
    """Expected calibration error: the count-weighted mean gap between confidence and accuracy per bin."""
    mean_confidence, accuracy, counts = reliability_bins(P, y, n_bins)
    total = counts.sum()
    if total == 0:
        return 0.0
    return float(np.sum(np.abs(accuracy - mean_confidence) * counts) / total)


def fit_temperature(logits: ArrayLike, y: ArrayLike, max_iter: int = 100) -> float:
    """Temperature ``T`` minimizing the mean NLL of ``softmax(logits / T)`` on held-out labels ``y``.

    The NLL is convex in ``beta = 1 / T`` (logits scale linearly in it), with derivative
    ``E_p[z] - z_y`` and second derivative ``Var_p[z]``: a safeguarded Newton search on a
    bracket finds the unique optimum in a few steps. Dividing by a positive scalar never
    changes which class wins.
    """
    Z = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y, dtype=np.intp)
    if Z.ndim != 2 or Z.shape[0] != y.shape[0] or Z.shape[0] == 0:
        raise ValueError("fit_temperature needs logits of shape (n, k) and n labels, n > 0")
    z_true = Z[np.arange(Z.shape[0]), y]

    def derivatives(beta: float) -> tuple[float, float]:
        P = softmax(beta * Z)
        expected = (P * Z).sum(axis=1)
        variance = (P * Z * Z).sum(axis=1) - expected**2
        return float((expected - z_true).mean()), float(variance.mean())

    lo, hi = 1.0 / MAX_TEMPERATURE, 1.0 / MIN_TEMPERATURE
    beta = 1.0
    for _ in range(max_iter):
        gradient, curvature = derivatives(beta)
        if gradient > 0:
            hi = beta
        else:
            lo = beta
        step = beta - gradient / curvature if curvature > 0 else np.inf
        # Newton when it stays inside the bracket, bisection otherwise. The bracket is closed:
        # a converged Newton step lands on beta itself, which has just become an end of it.
        new_beta = step if lo <= step <= hi else 0.5 * (lo + hi)
        if abs(new_beta - beta) <= 1e-10 * max(1.0, beta):
            beta = new_beta
            break
        beta = new_beta
    return float(1.0 / beta)
