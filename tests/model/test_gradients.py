"""Backpropagation against central finite differences, and the loss against its formula."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

import model

# Central differences have truncation error ~h**2 and rounding error ~eps/h; h near
# cbrt(eps) ~ 6e-6 balances the two, which keeps the estimate accurate to ~1e-8 relative.
STEP = 1e-5
# A finite difference that moves a ReLU pre-activation across 0 measures a kink, not a
# derivative. Perturbing one weight by STEP moves a pre-activation by at most
# STEP * |activation| (a few 1e-5 here), so networks are redrawn until every hidden
# pre-activation is at least this far from 0.
KINK_MARGIN = 1e-3


def hidden_preactivations(net: model.MLP, X: NDArray[np.float64]) -> list[NDArray[np.float64]]:
    """Pre-activations (n, width) of every hidden layer, computed independently of ``model``."""
    out = []
    H = X
    for W, b in zip(net.coefs[:-1], net.intercepts[:-1], strict=True):
        Z = H @ W + b
        out.append(Z)
        H = np.maximum(Z, 0.0)
    return out


def random_problem(
    layer_sizes: list[int], rng: np.random.Generator, n_samples: int = 6
) -> tuple[model.MLP, NDArray[np.float64], NDArray[np.intp]]:
    """A float64 network with non-zero biases and a batch far enough from every ReLU kink."""
    for _ in range(1000):
        net = model.MLP.initialize(layer_sizes, rng=rng, dtype=np.float64)
        for b in net.intercepts:
            # Zero biases (the initializer's choice) would hide a wrong intercept gradient.
            b[:] = rng.normal(scale=0.3, size=b.shape)
        X = rng.normal(size=(n_samples, layer_sizes[0]))
        y = rng.integers(0, layer_sizes[-1], n_samples)
        if all(np.abs(Z).min() > KINK_MARGIN for Z in hidden_preactivations(net, X)):
            return net, X, y
    raise AssertionError("could not draw a network away from ReLU kinks")


def numerical_gradients(
    net: model.MLP, X: NDArray[np.float64], y: NDArray[np.intp], l2: float
) -> list[NDArray[np.float64]]:
    """Central-difference estimate of d loss / d parameter for every entry of ``net.params``."""
    estimates = []
    for p in net.params:
        estimate = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            original = p[index]
            p[index] = original + STEP
            loss_plus, _ = net.loss_and_gradients(X, y, l2=l2)
            p[index] = original - STEP
            loss_minus, _ = net.loss_and_gradients(X, y, l2=l2)
            p[index] = original
            estimate[index] = (loss_plus - loss_minus) / (2 * STEP)
        estimates.append(estimate)
    return estimates


def max_relative_error(
    analytic: list[NDArray[np.float64]], numeric: list[NDArray[np.float64]]
) -> float:
    """max |a - n| / max(|a|, |n|) over all entries; entries where both are exactly 0 count as 0."""
    a = np.concatenate([g.ravel() for g in analytic])
    n = np.concatenate([g.ravel() for g in numeric])
    denominator = np.maximum(np.abs(a), np.abs(n))
    both_zero = denominator == 0
    error = np.abs(a - n) / np.where(both_zero, 1.0, denominator)
    return float(error.max())


@pytest.mark.parametrize("l2", [0.0, 0.5], ids=["no-l2", "l2"])
@pytest.mark.parametrize("layer_sizes", [[4, 6, 3], [4, 6, 5, 3]], ids=["one-hidden", "two-hidden"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_backprop_matches_central_differences(layer_sizes: list[int], l2: float, seed: int) -> None:
    net, X, y = random_problem(layer_sizes, np.random.default_rng(seed))
    _, analytic = net.loss_and_gradients(X, y, l2=l2)

    numeric = numerical_gradients(net, X, y, l2)

    assert [g.shape for g in analytic] == [p.shape for p in net.params]
    assert max_relative_error(analytic, numeric) < 1e-6


def test_gradient_check_catches_a_wrong_gradient() -> None:
    """The check itself must be able to fail: a tiny error in one entry is caught."""
    net, X, y = random_problem([4, 6, 3], np.random.default_rng(3))
    _, analytic = net.loss_and_gradients(X, y)
    numeric = numerical_gradients(net, X, y, 0.0)
    analytic[0][0, 0] *= 1.0 + 1e-5

    assert max_relative_error(analytic, numeric) > 1e-6


@pytest.mark.parametrize("l2", [0.0, 0.3])
def test_loss_is_mean_cross_entropy_plus_sklearn_l2(l2: float) -> None:
    net, X, y = random_problem([3, 5, 4, 3], np.random.default_rng(4), n_samples=9)
    loss, _ = net.loss_and_gradients(X, y, l2=l2)

    H = X
    for W, b in zip(net.coefs[:-1], net.intercepts[:-1], strict=True):
        H = np.maximum(H @ W + b, 0.0)
    Z = H @ net.coefs[-1] + net.intercepts[-1]
    P = np.exp(Z) / np.exp(Z).sum(axis=1, keepdims=True)
    expected = -np.mean(np.log(P[np.arange(len(y)), y]))
    expected += l2 / (2 * len(y)) * sum(np.sum(W**2) for W in net.coefs)

    assert loss == pytest.approx(expected, rel=1e-12)


def test_float32_gradients_agree_with_float64() -> None:
    """Production trains in float32: its gradients must be the float64 ones, rounded."""
    net64, X, y = random_problem([4, 8, 8, 3], np.random.default_rng(5), n_samples=16)
    net32 = model.MLP(
        [W.astype(np.float32) for W in net64.coefs],
        [b.astype(np.float32) for b in net64.intercepts],
    )
    loss64, grads64 = net64.loss_and_gradients(X, y, l2=0.1)
    loss32, grads32 = net32.loss_and_gradients(X, y, l2=0.1)

    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for g32, g64 in zip(grads32, grads64, strict=True):
        assert g32.dtype == np.float32
        np.testing.assert_allclose(g32, g64, rtol=1e-3, atol=1e-6)


def test_gradients_do_not_alias_or_modify_parameters() -> None:
    net, X, y = random_problem([4, 6, 5, 3], np.random.default_rng(6))
    before = [p.copy() for p in net.params]
    _, grads = net.loss_and_gradients(X, y, l2=0.2)

    for p, original in zip(net.params, before, strict=True):
        np.testing.assert_array_equal(p, original)
    for g in grads:
        assert not any(np.shares_memory(g, p) for p in net.params)
