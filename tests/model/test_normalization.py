"""The standardizer: zero mean and unit variance, and never NaN or infinity on constant features."""

from __future__ import annotations

import numpy as np
import pytest

import model
from bench.context import REAL_DATA


def test_standardized_training_data_has_zero_mean_unit_variance() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(loc=[35.0, 0.6, -1e3], scale=[5.0, 0.01, 300.0], size=(500, 3))

    standardizer = model.Standardizer.fit(X)
    Xs = standardizer.transform(X)

    np.testing.assert_allclose(standardizer.mean, X.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(standardizer.scale, X.std(axis=0), rtol=1e-12)
    np.testing.assert_allclose(Xs.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(Xs.std(axis=0), 1.0, rtol=1e-12)


@pytest.mark.parametrize("value", [0.0, 0.1, 35.57, -1e6, 1e12])
def test_constant_feature_maps_to_zero_not_nan(value: float) -> None:
    X = np.column_stack([np.full(50, value), np.linspace(0.0, 1.0, 50)])

    standardizer = model.Standardizer.fit(X)
    Xs = standardizer.transform(X)
    unseen = standardizer.transform(np.array([[value + 1.0, 0.5]]))

    assert standardizer.scale[0] == 1.0
    assert np.all(np.isfinite(Xs))
    np.testing.assert_allclose(Xs[:, 0], 0.0, atol=1e-6 * max(1.0, abs(value)))
    assert np.all(np.isfinite(unseen))


def test_numerically_constant_feature_gets_unit_scale() -> None:
    """Spread at the level of float rounding is noise, not signal, and must not blow up."""
    base = 1e6
    X = (base + np.array([0.0, 1.0, 0.0, -1.0]) * np.spacing(base))[:, None]

    standardizer = model.Standardizer.fit(X)

    assert standardizer.scale[0] == 1.0
    assert np.all(np.abs(standardizer.transform(X)) < 1e-6)


def test_single_row_gives_unit_scales() -> None:
    standardizer = model.Standardizer.fit(np.array([[3.0, -4.0]]))

    np.testing.assert_array_equal(standardizer.scale, [1.0, 1.0])
    np.testing.assert_array_equal(standardizer.transform(np.array([[3.0, -4.0]])), [[0.0, 0.0]])


def test_transform_returns_new_float64_array_and_leaves_input_alone() -> None:
    standardizer = model.Standardizer.fit(np.array([[0.0, 10.0], [2.0, 30.0]]))
    X = np.array([[1.0, 20.0], [3.0, 40.0]], dtype=np.float32)

    Xs = standardizer.transform(X)

    assert Xs.dtype == np.float64
    np.testing.assert_array_equal(Xs, [[0.0, 0.0], [2.0, 2.0]])
    np.testing.assert_array_equal(X, [[1.0, 20.0], [3.0, 40.0]])


@pytest.mark.parametrize("bad", [np.zeros(3), np.zeros((0, 2)), np.zeros((2, 2, 2))])
def test_fit_rejects_data_that_is_not_a_nonempty_matrix(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="n_samples, n_features"):
        model.Standardizer.fit(bad)


def test_real_sensor_readings_standardize_cleanly() -> None:
    if not REAL_DATA.exists():
        pytest.skip(f"real sensor data not found at {REAL_DATA}")
    X = np.loadtxt(REAL_DATA, delimiter=",", skiprows=1, usecols=(0, 1), max_rows=6000)

    standardizer = model.Standardizer.fit(X)
    Xs = standardizer.transform(X)

    assert np.all(np.isfinite(Xs))
    np.testing.assert_allclose(Xs.mean(axis=0), 0.0, atol=1e-9)
    np.testing.assert_allclose(Xs.std(axis=0), 1.0, rtol=1e-9)
