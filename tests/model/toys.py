"""Small data sets, a plain training loop and an independent forward pass for the model tests.

The training loop lives in ``training/``; these tests must not depend on it, so a minimal
mini-batch loop around ``model.Adam`` is written out here instead.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

import model


def two_moons(
    n_samples: int, noise: float, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Two interleaving half circles, as scikit-learn's ``make_moons``, with Gaussian noise.

    Returns X of shape (n_samples, 2) and y of shape (n_samples,) with labels 0 (outer moon)
    and 1 (inner moon).
    """
    n_outer = n_samples // 2
    n_inner = n_samples - n_outer
    t_outer = np.linspace(0.0, np.pi, n_outer)
    t_inner = np.linspace(0.0, np.pi, n_inner)
    X = np.vstack(
        [
            np.column_stack([np.cos(t_outer), np.sin(t_outer)]),
            np.column_stack([1.0 - np.cos(t_inner), 1.0 - np.sin(t_inner) - 0.5]),
        ]
    )
    y = np.concatenate([np.zeros(n_outer, dtype=np.intp), np.ones(n_inner, dtype=np.intp)])
    return X + rng.normal(scale=noise, size=X.shape), y


def gaussian_blobs(
    n_samples: int, rng: np.random.Generator, spread: float = 1.0
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Three overlapping 2-d Gaussian classes (so no classifier is always right).

    Returns X of shape (n_samples, 2) and y of shape (n_samples,) in {0, 1, 2}.
    """
    centers = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.7]])
    y = rng.integers(0, 3, n_samples).astype(np.intp)
    return centers[y] + rng.normal(scale=spread, size=(n_samples, 2)), y


def train_mlp(
    X: NDArray[np.float64],
    y: NDArray[np.intp],
    hidden: tuple[int, ...],
    rng: np.random.Generator,
    epochs: int,
    batch_size: int = 32,
    learning_rate: float = 0.01,
    dtype: type[np.floating] = np.float64,
) -> tuple[model.Standardizer, model.MLP]:
    """Fit a standardizer and an MLP with plain mini-batch Adam; X (n, n_features), y (n,)."""
    standardizer = model.Standardizer.fit(X)
    Xs = standardizer.transform(X)
    n_classes = int(y.max()) + 1
    net = model.MLP.initialize([X.shape[1], *hidden, n_classes], rng=rng, dtype=dtype)
    optimizer = model.Adam(net.params, learning_rate=learning_rate)
    for _ in range(epochs):
        order = rng.permutation(len(y))
        for start in range(0, len(y), batch_size):
            batch = order[start : start + batch_size]
            _, grads = net.loss_and_gradients(Xs[batch], y[batch])
            optimizer.step(grads)
    return standardizer, net


def fit_novelty(
    standardizer: model.Standardizer,
    X: NDArray[np.float64],
    n_classes: int,
    y: NDArray[np.intp] | None = None,
    rate: float = 0.005,
) -> model.ClassMahalanobis:
    """A novelty model of readings ``X`` (n, n_features) with labels ``y`` (n,), thresholded on ``X``.

    Without ``y`` every class is fitted on all of ``X``: a model that knows where the data
    lies but not which class sits where.
    """
    Xs = standardizer.transform(X)
    if y is None:
        labels = np.repeat(np.arange(n_classes, dtype=np.intp), X.shape[0])
        fitted = model.ClassMahalanobis.fit(np.tile(Xs, (n_classes, 1)), labels, n_classes)
    else:
        fitted = model.ClassMahalanobis.fit(Xs, y, n_classes)
    return fitted.with_threshold(Xs, rate)


def make_classifier(
    standardizer: model.Standardizer,
    net: model.MLP,
    X: NDArray[np.float64],
    classes: tuple[str, ...] | None = None,
    temperature: float = 1.0,
    y: NDArray[np.intp] | None = None,
) -> model.Classifier:
    """Wrap a trained network as a Classifier whose training range (and novelty model) is that of ``X``."""
    n_features = X.shape[1]
    n_classes = net.layer_sizes[-1]
    return model.Classifier(
        network=net,
        standardizer=standardizer,
        classes=classes or tuple(f"class_{i}" for i in range(n_classes)),
        features=tuple(f"x{i}" for i in range(n_features)),
        units=("",) * n_features,
        feature_min=X.min(axis=0),
        feature_max=X.max(axis=0),
        temperature=temperature,
        metadata={"purpose": "test"},
        novelty_model=fit_novelty(standardizer, X, n_classes, y),
    )


def reference_logits(
    coefs: list[NDArray[np.floating]],
    intercepts: list[NDArray[np.floating]],
    mean: NDArray[np.float64],
    scale: NDArray[np.float64],
    X: NDArray[np.float64],
) -> NDArray[np.float64]:
    """Forward pass written out independently of ``model``, all in float64.

    X : raw readings (n_samples, n_features) -> logits (n_samples, n_classes)
    """
    H = (np.asarray(X, dtype=np.float64) - mean) / scale
    for i, (W, b) in enumerate(zip(coefs, intercepts, strict=True)):
        H = H @ W.astype(np.float64) + b.astype(np.float64)
        if i < len(coefs) - 1:
            H = np.where(H > 0, H, 0.0)
    return H


def reference_softmax(Z: NDArray[np.float64]) -> NDArray[np.float64]:
    """Softmax via logsumexp in float64, for comparing with ``model.softmax``."""
    Z = np.asarray(Z, dtype=np.float64)
    top = Z.max(axis=1, keepdims=True)
    log_norm = top + np.log(np.sum(np.exp(Z - top), axis=1, keepdims=True))
    return np.exp(Z - log_norm)
