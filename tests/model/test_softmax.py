"""Softmax, log-softmax and log-loss: invariants checked with hypothesis, values against formulas."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

import model
from tests.model.toys import reference_softmax

LOGIT_BOUND = 1e4


@st.composite
def logit_matrices(draw: st.DrawFn, bound: float = LOGIT_BOUND) -> NDArray[np.float64]:
    """(n, k) float64 logits in [-bound, bound], 1 <= n <= 6, 2 <= k <= 6."""
    n = draw(st.integers(1, 6))
    k = draw(st.integers(2, 6))
    return draw(
        arrays(
            np.float64,
            (n, k),
            elements=st.floats(-bound, bound, allow_nan=False, allow_infinity=False),
        )
    )


@settings(deadline=None)
@given(logit_matrices())
def test_rows_are_finite_probabilities_summing_to_one(Z: NDArray[np.float64]) -> None:
    P = model.softmax(Z)

    assert P.shape == Z.shape
    assert np.all(np.isfinite(P))
    assert np.all(P >= 0.0)
    assert np.all(P <= 1.0)
    np.testing.assert_allclose(P.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # The winning class keeps the highest probability.
    assert np.array_equal(P[np.arange(len(Z)), Z.argmax(axis=1)], P.max(axis=1))


@settings(deadline=None)
@given(
    logit_matrices(),
    arrays(np.float64, 6, elements=st.floats(-LOGIT_BOUND, LOGIT_BOUND, allow_nan=False)),
)
def test_adding_a_constant_to_a_row_changes_nothing(
    Z: NDArray[np.float64], shifts: NDArray[np.float64]
) -> None:
    shifted = Z + shifts[: len(Z), None]

    # Only the rounding of z + c (|z + c| <= 2e4, so ~2e-12 absolute) may differ.
    np.testing.assert_allclose(model.softmax(shifted), model.softmax(Z), rtol=1e-10, atol=1e-300)


@settings(deadline=None)
@given(logit_matrices())
def test_softmax_matches_logsumexp_reference_and_log_softmax(Z: NDArray[np.float64]) -> None:
    P = model.softmax(Z)

    # Both subtract rounded numbers of magnitude up to 2e4 (ulp ~4e-12) before exp.
    np.testing.assert_allclose(P, reference_softmax(Z), rtol=1e-10, atol=1e-300)
    log_P = model.log_softmax(Z)
    assert np.all(np.isfinite(log_P))
    assert np.all(log_P <= 0.0)
    np.testing.assert_allclose(np.exp(log_P), P, rtol=1e-10, atol=1e-300)


def test_extreme_logits_saturate_without_overflow() -> None:
    Z = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]])

    P = model.softmax(Z)

    np.testing.assert_array_equal(P[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(P[1], [1 / 3, 1 / 3, 1 / 3], rtol=1e-15)
    np.testing.assert_array_equal(P[2], [0.5, 0.5, 0.0])
    assert model.log_softmax(Z)[0, 1] == -2e4


def test_softmax_accepts_integer_logits_and_keeps_float32() -> None:
    np.testing.assert_allclose(model.softmax(np.array([[0, 0]])), [[0.5, 0.5]])
    P32 = model.softmax(np.array([[1.0, 2.0, 3.0]], dtype=np.float32))
    assert P32.dtype == np.float32
    np.testing.assert_allclose(P32, reference_softmax(np.array([[1.0, 2.0, 3.0]])), rtol=1e-6)


def test_softmax_does_not_modify_its_input() -> None:
    Z = np.array([[3.0, 1.0, -2.0]])
    model.softmax(Z)
    model.log_softmax(Z)
    np.testing.assert_array_equal(Z, [[3.0, 1.0, -2.0]])


def test_log_loss_by_hand() -> None:
    P = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8], [0.25, 0.5, 0.25]])
    y = np.array([0, 2, 0])

    expected = -(math.log(0.7) + math.log(0.8) + math.log(0.25)) / 3
    assert model.log_loss(P, y) == pytest.approx(expected, rel=1e-14)


def test_log_loss_of_a_confident_mistake_is_large_but_finite() -> None:
    loss = model.log_loss(np.array([[1.0, 0.0]]), np.array([1]))

    assert math.isfinite(loss)
    assert loss == pytest.approx(-math.log(np.finfo(np.float64).eps))
