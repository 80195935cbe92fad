"""SGD with momentum and Adam: updates checked by hand, in place, and they reduce the loss."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
from numpy.typing import NDArray

import model
from tests.model.toys import gaussian_blobs


def hand_network() -> tuple[model.MLP, NDArray[np.float64], NDArray[np.intp]]:
    """A 3-2-2 network with hand-picked weights and one reading (as scikit-learn's test_fit)."""
    coefs = [
        np.array([[0.1, -0.2], [0.4, 0.3], [-0.5, 0.6]]),
        np.array([[0.5, -0.3], [0.2, 0.7]]),
    ]
    intercepts = [np.array([0.1, -0.1]), np.array([0.0, 0.1])]
    return model.MLP(coefs, intercepts), np.array([[0.6, 0.8, 0.7]]), np.array([1])


def hand_gradients() -> list[NDArray[np.float64]]:
    """Gradients of ``hand_network`` worked out on paper.

    Hidden pre-activations: 0.06 + 0.32 - 0.35 + 0.1 = 0.13 and -0.12 + 0.24 + 0.42 - 0.1 = 0.44,
    both positive so ReLU passes them. Logits: 0.065 + 0.088 = 0.153 and
    -0.039 + 0.308 + 0.1 = 0.369. With label 1, the output delta is (p0, p1 - 1) = (p0, -p0)
    where p0 = 1 / (1 + exp(0.369 - 0.153)). Back through W1: (0.5 + 0.3, 0.2 - 0.7) * p0.
    """
    p0 = 1.0 / (1.0 + math.exp(0.369 - 0.153))
    h = np.array([0.13, 0.44])
    x = np.array([0.6, 0.8, 0.7])
    delta_out = np.array([p0, -p0])
    delta_hidden = np.array([0.8 * p0, -0.5 * p0])
    return [np.outer(x, delta_hidden), np.outer(h, delta_out), delta_hidden, delta_out]


def test_backprop_of_hand_network_matches_paper() -> None:
    net, X, y = hand_network()
    loss, grads = net.loss_and_gradients(X, y)

    p1 = 1.0 - 1.0 / (1.0 + math.exp(0.369 - 0.153))
    assert loss == pytest.approx(-math.log(p1), rel=1e-12)
    for got, expected in zip(grads, hand_gradients(), strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("nesterov", [True, False], ids=["nesterov", "classic"])
def test_one_sgd_training_step_by_hand(nesterov: bool) -> None:
    net, X, y = hand_network()
    before = [p.copy() for p in net.params]
    optimizer = model.SGD(net.params, learning_rate=0.1, momentum=0.9, nesterov=nesterov)

    optimizer.step(net.loss_and_gradients(X, y)[1])

    # From zero velocity: v = -lr g; classic momentum moves by v, Nesterov by mu v - lr g.
    factor = 0.1 * (1.0 + 0.9) if nesterov else 0.1
    for p, p0, g in zip(net.params, before, hand_gradients(), strict=True):
        np.testing.assert_allclose(p, p0 - factor * g, rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("nesterov", [True, False], ids=["nesterov", "classic"])
def test_sgd_momentum_recurrence_over_three_steps(nesterov: bool) -> None:
    lr, mu = 0.05, 0.8
    p = np.array([1.0, -2.0, 0.5])
    gradients = [np.array([0.3, -0.1, 2.0]), np.array([-0.4, 0.2, 1.0]), np.array([0.1, 0.1, -3.0])]
    optimizer = model.SGD([p], learning_rate=lr, momentum=mu, nesterov=nesterov)

    # Written per coordinate with Python floats (Sutskever et al. 2013; scikit-learn's form).
    expected = [1.0, -2.0, 0.5]
    velocity = [0.0, 0.0, 0.0]
    for g in gradients:
        optimizer.step([g])
        for j in range(3):
            velocity[j] = mu * velocity[j] - lr * g[j]
            expected[j] += (mu * velocity[j] - lr * g[j]) if nesterov else velocity[j]
        np.testing.assert_allclose(p, expected, rtol=1e-13)


def textbook_adam(
    p0: NDArray[np.float64],
    gradients: list[NDArray[np.float64]],
    learning_rates: list[float],
    beta1: float = 0.9,
    beta2: float = 0.999,
) -> list[NDArray[np.float64]]:
    """Kingma & Ba (2015), Algorithm 1 with bias-corrected moments and epsilon = 0."""
    p, m, v = p0.copy(), np.zeros_like(p0), np.zeros_like(p0)
    trajectory = []
    for t, (g, lr) in enumerate(zip(gradients, learning_rates, strict=True), start=1):
        m = beta1 * m + (1 - beta1) * g
        v = beta2 * v + (1 - beta2) * g**2
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        p = p - lr * m_hat / np.sqrt(v_hat)
        trajectory.append(p.copy())
    return trajectory


def test_adam_matches_textbook_algorithm_including_a_schedule() -> None:
    rng = np.random.default_rng(0)
    p0 = rng.normal(size=5)
    gradients = [rng.normal(size=5) for _ in range(4)]
    learning_rates = [0.01, 0.01, 0.005, 0.002]
    p = p0.copy()
    optimizer = model.Adam([p], learning_rate=learning_rates[0], epsilon=0.0)

    for g, lr, expected in zip(
        gradients, learning_rates, textbook_adam(p0, gradients, learning_rates), strict=True
    ):
        optimizer.learning_rate = lr
        optimizer.step([g])
        np.testing.assert_allclose(p, expected, rtol=1e-12)


def test_adam_first_step_moves_every_parameter_by_the_learning_rate() -> None:
    """With bias correction, step one is lr * g / |g| (up to epsilon), whatever the scale of g."""
    p = np.array([0.0, 0.0, 0.0, 0.0])
    optimizer = model.Adam([p], learning_rate=0.01)

    optimizer.step([np.array([2e-2, -5.0, 2e2, -1.0])])

    np.testing.assert_allclose(p, [-0.01, 0.01, -0.01, 0.01], rtol=1e-4)


def test_adam_epsilon_enters_as_in_scikit_learn() -> None:
    """Default epsilon, folded form: p -= lr * sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)."""
    g = np.array([1e-7, 3e-6])
    p = np.zeros(2)
    optimizer = model.Adam([p], learning_rate=0.1, epsilon=1e-6)
    optimizer.step([g])

    m, v = 0.1 * g, 0.001 * g**2
    expected = -0.1 * math.sqrt(1 - 0.999) / (1 - 0.9) * m / (np.sqrt(v) + 1e-6)
    np.testing.assert_allclose(p, expected, rtol=1e-12)


def blob_problem() -> tuple[model.MLP, NDArray[np.float64], NDArray[np.intp]]:
    rng = np.random.default_rng(1)
    X, y = gaussian_blobs(300, rng, spread=0.5)
    Xs = model.Standardizer.fit(X).transform(X)
    return model.MLP.initialize([2, 16, 3], rng=rng, dtype=np.float32), Xs, y


@pytest.mark.parametrize(
    "make_optimizer",
    [
        lambda params: model.SGD(params, learning_rate=0.1, momentum=0.9),
        lambda params: model.Adam(params, learning_rate=0.01),
    ],
    ids=["sgd-momentum", "adam"],
)
def test_optimizer_reduces_loss_updating_parameters_in_place(
    make_optimizer: Callable[[list[NDArray[np.floating]]], model.SGD | model.Adam],
) -> None:
    net, X, y = blob_problem()
    params = net.params
    ids = [id(p) for p in params]
    initial_loss, _ = net.loss_and_gradients(X, y)
    initial = [p.copy() for p in params]
    optimizer = make_optimizer(net.params)

    for _ in range(100):
        _, grads = net.loss_and_gradients(X, y)
        optimizer.step(grads)
    final_loss, _ = net.loss_and_gradients(X, y)

    assert final_loss < 0.5 * initial_loss
    # The network's own arrays were changed: same objects, same dtype, new values.
    assert [id(p) for p in net.params] == ids
    assert all(p.dtype == np.float32 for p in net.params)
    assert all(not np.array_equal(p, p0) for p, p0 in zip(net.params, initial, strict=True))


def test_sgd_rejects_momentum_outside_unit_interval() -> None:
    with pytest.raises(ValueError, match="momentum"):
        model.SGD([np.zeros(2)], momentum=1.0)
