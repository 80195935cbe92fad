"""Expected calibration error by hand, temperature fitting against a grid-search oracle, and
temperature scaling repairing a deliberately over-confident model."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

import model
from tests.model.toys import gaussian_blobs, make_classifier, reference_softmax, train_mlp


def test_reliability_bins_and_ece_by_hand() -> None:
    # Confidences 0.90 (right), 0.92 (wrong), 0.75 (right), 0.55 (wrong), none on a bin edge.
    P = np.array(
        [
            [0.90, 0.10],
            [0.08, 0.92],
            [0.25, 0.75],
            [0.55, 0.45],
        ]
    )
    y = np.array([0, 0, 1, 1])

    confidence, accuracy, counts = model.reliability_bins(P, y, n_bins=15)

    # Bin b covers (b/15, (b+1)/15]: 0.90 and 0.92 fall in bin 13, 0.75 in 11, 0.55 in 8.
    expected_counts = np.zeros(15, dtype=np.int64)
    expected_counts[[8, 11, 13]] = [1, 1, 2]
    np.testing.assert_array_equal(counts, expected_counts)
    assert confidence[13] == pytest.approx(0.91)
    assert accuracy[13] == pytest.approx(0.5)
    assert (confidence[11], accuracy[11]) == pytest.approx((0.75, 1.0))
    assert (confidence[8], accuracy[8]) == pytest.approx((0.55, 0.0))
    # Gaps weighted by count: (2 * |0.5 - 0.91| + |1 - 0.75| + |0 - 0.55|) / 4.
    assert model.expected_calibration_error(P, y, n_bins=15) == pytest.approx(0.405)


def test_bins_are_closed_on_the_right() -> None:
    """Confidences exactly on an edge (0.5 and 0.75 are exact in binary) go to the lower bin."""
    P = np.array([[0.5, 0.5], [0.75, 0.25], [0.25, 0.75], [1.0, 0.0]])
    y = np.array([0, 0, 0, 0])

    _, accuracy, counts = model.reliability_bins(P, y, n_bins=4)

    # (0.25, 0.5] holds 0.5; (0.5, 0.75] holds both 0.75s; (0.75, 1] holds 1.0.
    np.testing.assert_array_equal(counts, [0, 1, 2, 1])
    np.testing.assert_array_equal(accuracy, [0.0, 1.0, 0.5, 1.0])


def test_ece_with_one_bin_is_the_gap_between_mean_confidence_and_accuracy() -> None:
    P = np.array([[0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.1, 0.1, 0.8]])
    y = np.array([0, 0, 2])

    assert model.expected_calibration_error(P, y, n_bins=1) == pytest.approx(
        abs(2 / 3 - (0.6 + 0.7 + 0.8) / 3)
    )


def test_perfectly_calibrated_predictions_have_near_zero_ece() -> None:
    """Labels drawn from the predicted probabilities themselves: calibrated by construction."""
    rng = np.random.default_rng(0)
    P = reference_softmax(rng.normal(scale=2.0, size=(200_000, 3)))
    y = (rng.random((len(P), 1)) > P.cumsum(axis=1)).sum(axis=1)

    assert model.expected_calibration_error(P, y) < 0.01


def nll(Z: NDArray[np.float64], y: NDArray[np.intp], temperature: float) -> float:
    """Mean negative log-likelihood of softmax(Z / T), written out with logsumexp."""
    S = Z / temperature
    top = S.max(axis=1)
    log_norm = top + np.log(np.exp(S - top[:, None]).sum(axis=1))
    return float(np.mean(log_norm - S[np.arange(len(y)), y]))


def grid_search_temperature(Z: NDArray[np.float64], y: NDArray[np.intp]) -> tuple[float, float]:
    """The oracle: the best of 4001 temperatures spaced evenly in log between 0.05 and 20."""
    grid = np.geomspace(0.05, 20.0, 4001)
    losses = [nll(Z, y, T) for T in grid]
    best = int(np.argmin(losses))
    return float(grid[best]), float(losses[best])


def noisy_logits(
    rng: np.random.Generator, n: int, k: int, sharpness: float
) -> tuple[NDArray[np.float64], NDArray[np.intp]]:
    """Labels drawn from softmax(true logits); returned logits are the true ones times sharpness.

    Labels are sampled, so some are surprising and the best temperature is interior, near
    ``sharpness`` for large n.
    """
    true_logits = rng.normal(scale=1.5, size=(n, k))
    P = reference_softmax(true_logits)
    y = (rng.random((n, 1)) > P.cumsum(axis=1)).sum(axis=1)
    return true_logits * sharpness, y


@pytest.mark.parametrize("seed", range(8))
def test_fit_temperature_agrees_with_grid_search_oracle(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sharpness = float(rng.choice([0.2, 0.5, 1.0, 2.5, 6.0]))
    Z, y = noisy_logits(rng, int(rng.integers(50, 400)), int(rng.integers(2, 6)), sharpness)

    fitted = model.fit_temperature(Z, y)
    grid_T, grid_loss = grid_search_temperature(Z, y)

    # The fitted optimum is at least as good as the best grid point and, the NLL being
    # unimodal in log T, lies within one grid step (a factor of 1.0015) of it.
    grid_step = np.log(20.0 / 0.05) / 4000
    assert nll(Z, y, fitted) <= grid_loss + 1e-12
    assert abs(np.log(fitted / grid_T)) <= grid_step * (1 + 1e-6)


@pytest.mark.parametrize("sharpness", [0.25, 3.0])
def test_fit_temperature_recovers_a_known_scale(sharpness: float) -> None:
    Z, y = noisy_logits(np.random.default_rng(1), 20_000, 3, sharpness)

    assert model.fit_temperature(Z, y) == pytest.approx(sharpness, rel=0.05)


@pytest.mark.parametrize("seed", range(40))
def test_fit_temperature_converges_in_a_few_newton_steps(seed: int) -> None:
    """The docstring promises a few steps: with 20 allowed it must already be at the optimum."""
    rng = np.random.default_rng(100 + seed)
    Z, y = noisy_logits(rng, 200, 3, float(rng.uniform(0.3, 5.0)))

    assert model.fit_temperature(Z, y, max_iter=20) == pytest.approx(
        model.fit_temperature(Z, y, max_iter=1000), rel=1e-8
    )


@pytest.mark.parametrize(
    ("sharpness", "end"), [(1e-6, model.MIN_TEMPERATURE), (1e6, model.MAX_TEMPERATURE)]
)
def test_fit_temperature_stays_in_the_range_a_classifier_accepts(
    sharpness: float, end: float
) -> None:
    """Logits far too timid or far too confident: the fit stops at an end of the range, which
    a Classifier (and so the artifact) accepts."""
    Z, y = noisy_logits(np.random.default_rng(1), 2_000, 3, sharpness)
    temperature = model.fit_temperature(Z, y)
    assert model.MIN_TEMPERATURE <= temperature <= model.MAX_TEMPERATURE
    assert temperature == pytest.approx(end, rel=1e-6)


def test_fit_temperature_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError, match="fit_temperature"):
        model.fit_temperature(np.zeros((3, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="fit_temperature"):
        model.fit_temperature(np.zeros((0, 2)), np.zeros(0, dtype=int))


@settings(deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 8), st.integers(2, 5)),
        elements=st.floats(-1e3, 1e3, allow_nan=False),
    ),
    st.floats(0.01, 100.0),
)
def test_temperature_scaling_never_changes_which_class_wins(
    Z: NDArray[np.float64], temperature: float
) -> None:
    """The class with the largest logit keeps the largest probability at any temperature.

    (Logits closer than float resolution, e.g. 0 and -1e-63, give equal probabilities, so the
    property is stated as "the winner's probability is the maximum", which ties satisfy.)
    """
    rows = np.arange(len(Z))
    winners = Z.argmax(axis=1)
    for P in (model.softmax(Z), model.softmax(Z / temperature)):
        assert np.array_equal(P[rows, winners], P.max(axis=1))


def test_temperature_scaling_repairs_an_over_confident_model() -> None:
    rng = np.random.default_rng(5)
    X, y = gaussian_blobs(3000, rng, spread=0.8)
    train, valid, test = np.split(rng.permutation(len(y)), [1000, 2000])
    standardizer, net = train_mlp(X[train], y[train], (16,), rng, epochs=5)
    # Deliberately over-confident: the output layer's logits made four times larger.
    net.coefs[-1] *= 4.0
    net.intercepts[-1] *= 4.0
    raw = make_classifier(standardizer, net, X[train])

    temperature = model.fit_temperature(raw.logits(X[valid]), y[valid])
    calibrated = make_classifier(standardizer, net, X[train], temperature=temperature)

    before = model.expected_calibration_error(raw.predict_proba(X[test]), y[test], n_bins=15)
    after = model.expected_calibration_error(calibrated.predict_proba(X[test]), y[test], n_bins=15)
    assert temperature > 2.0
    assert after < before
    assert after < 0.05
    assert np.array_equal(calibrated.predict(X[test]), raw.predict(X[test]))
    assert np.array_equal(
        calibrated.predict_proba(X[test]).argmax(axis=1),
        raw.predict_proba(X[test]).argmax(axis=1),
    )
    np.testing.assert_array_equal(
        calibrated.predict_proba(X[test], calibrated=False), raw.predict_proba(X[test])
    )


def test_brier_score_by_hand() -> None:
    P = np.array([[0.7, 0.2, 0.1], [0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    y = np.array([0, 1, 0])
    # (0.09 + 0.04 + 0.01), (0.25 + 0.25 + 0), (1 + 0 + 1): at most 2 per reading.
    assert model.brier_score(P, y) == pytest.approx((0.14 + 0.5 + 2.0) / 3)


def test_log_loss_by_hand_and_of_certain_right_answers() -> None:
    P = np.array([[0.5, 0.25, 0.25], [0.0, 1.0, 0.0]])
    assert model.log_loss(P, np.array([0, 1])) == pytest.approx(np.log(2) / 2)
    # No loss is +0.0, not -0.0 (which `evaluate --json` would print as "-0.0").
    loss = model.log_loss(np.array([[1.0, 0.0, 0.0]]), np.array([0]))
    assert loss == 0.0 and math.copysign(1.0, loss) == 1.0
