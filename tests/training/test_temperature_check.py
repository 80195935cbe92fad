"""The held-out check that decides whether the fitted calibration temperature is kept."""

from __future__ import annotations

import numpy as np

import model
from training.pipeline import checked_temperature


def _calibrated_logits(n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true class distribution (labels are drawn from it)."""
    Z = rng.normal(scale=2.0, size=(n, 3))
    P = model.softmax(Z)
    y = (rng.random(n)[:, None] > np.cumsum(P, axis=1)).sum(axis=1)
    return Z, y


def test_a_temperature_that_holds_up_is_kept() -> None:
    rng = np.random.default_rng(0)
    Z, y = _calibrated_logits(4000, rng)
    # Overconfident by a factor 3 everywhere: both halves agree that T is about 3.
    got = checked_temperature(3 * Z, y, groups=None)
    assert got["temperature"] == got["fitted"]
    assert 2.7 < got["temperature"] < 3.3
    assert got["held_out_brier_fitted"] < got["held_out_brier_unscaled"]


def test_a_temperature_driven_by_a_few_groups_is_refused() -> None:
    rng = np.random.default_rng(1)
    Z, y = _calibrated_logits(6000, rng)
    groups = np.repeat(np.arange(100), 60)
    # Two whole groups answered confidently wrong: the log-loss fit widens T for their sake.
    wrong = np.isin(groups, [2, 7])
    Z[wrong] = 0.0
    Z[wrong, (y[wrong] + 1) % 3] = 12.0
    got = checked_temperature(Z, y, groups)
    assert got["fitted"] > 1.2
    assert got["temperature"] == 1.0
    assert got["halves_of"] == "groups"
