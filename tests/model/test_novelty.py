"""Novelty: class Mahalanobis distance against an independent oracle, thresholds, far readings."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

import model
from model.novelty import DEFAULT_SHRINKAGE, threshold_for_rate
from tests.model.toys import make_classifier


def oracle_distance(
    Xs: NDArray[np.float64], train: NDArray[np.float64], y: NDArray[np.intp], n_classes: int
) -> NDArray[np.float64]:
    """Min over classes of sqrt((x - mu)^T (Sigma + shrinkage I)^-1 (x - mu)), by linear solves."""
    d = train.shape[1]
    squared = []
    for k in range(n_classes):
        members = train[y == k]
        mu = members.mean(axis=0)
        sigma = np.atleast_2d(np.cov(members, rowvar=False, ddof=1)) if len(members) > 1 else 0
        sigma = sigma + DEFAULT_SHRINKAGE * np.eye(d)
        diff = Xs - mu
        squared.append(np.einsum("ni,ni->n", diff, np.linalg.solve(sigma, diff.T).T))
    return np.sqrt(np.min(squared, axis=0))


@st.composite
def labelled_data(draw: st.DrawFn) -> tuple[NDArray[np.float64], NDArray[np.intp], int]:
    n_features = draw(st.integers(1, 5))
    n_classes = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    per_class = draw(st.integers(1, 40))
    y = np.repeat(np.arange(n_classes, dtype=np.intp), per_class)
    # Correlated features with class-dependent centres and spreads.
    mixing = rng.normal(size=(n_classes, n_features, n_features))
    X = rng.normal(size=(y.size, n_features))
    X = np.einsum("ni,nij->nj", X, mixing[y]) + 3.0 * rng.normal(size=(n_classes, n_features))[y]
    return X, y, n_classes


@settings(max_examples=60, deadline=None)
@given(labelled_data())
def test_distance_matches_an_independent_oracle(
    data: tuple[NDArray[np.float64], NDArray[np.intp], int],
) -> None:
    X, y, n_classes = data
    fitted = model.ClassMahalanobis.fit(X, y, n_classes)
    probe = np.random.default_rng(0).normal(scale=4.0, size=(50, X.shape[1]))

    expected = oracle_distance(probe, X, y, n_classes)
    np.testing.assert_allclose(fitted.distance(probe), expected, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        fitted.distance(X), oracle_distance(X, X, y, n_classes), rtol=1e-6, atol=1e-6
    )


@settings(max_examples=60, deadline=None)
@given(labelled_data(), st.floats(0.01, 100.0))
def test_one_reading_score_matches_the_batch_score(
    data: tuple[NDArray[np.float64], NDArray[np.intp], int], threshold: float
) -> None:
    X, y, n_classes = data
    fitted = dataclasses.replace(model.ClassMahalanobis.fit(X, y, n_classes), threshold=threshold)
    probe = np.random.default_rng(1).normal(scale=5.0, size=(20, X.shape[1]))

    singles = [fitted.score_one(row) for row in probe.tolist()]
    np.testing.assert_allclose(singles, fitted.score(probe), rtol=1e-9, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=300),
    st.floats(0.0, 0.999),
)
def test_threshold_lets_at_most_the_rate_through(scores: list[float], rate: float) -> None:
    threshold = threshold_for_rate(scores, rate)
    above = sum(s > threshold for s in scores)

    assert threshold in scores
    assert above <= math.floor(rate * len(scores))
    # And it is the smallest such score: one step lower would let too many through.
    lower = [s for s in scores if s < threshold]
    if lower:
        assert sum(s > max(lower) for s in scores) > math.floor(rate * len(scores))


@pytest.mark.parametrize("rate", [-0.1, 1.0, float("nan")])
def test_threshold_refuses_a_rate_outside_0_to_1(rate: float) -> None:
    with pytest.raises(ValueError, match="rate"):
        threshold_for_rate([1.0, 2.0], rate)


def test_with_threshold_holds_the_held_out_false_alarm_rate() -> None:
    rng = np.random.default_rng(5)
    X, held_out = rng.normal(size=(5000, 3)), rng.normal(size=(4000, 3))
    y = rng.integers(0, 2, 5000)
    fitted = model.ClassMahalanobis.fit(X, y, 2).with_threshold(held_out, 0.01)

    assert fitted.target_rate == 0.01
    assert np.mean(fitted.score(held_out) > 1) <= 0.01
    assert np.mean(fitted.score(held_out) > 1) >= 0.0095
    # Fresh readings from the same distribution: close to the target.
    assert np.mean(fitted.score(rng.normal(size=(20_000, 3))) > 1) == pytest.approx(0.01, abs=0.004)


def test_constant_and_collinear_features_and_tiny_classes_stay_finite() -> None:
    rng = np.random.default_rng(6)
    a = rng.normal(size=200)
    X = np.column_stack([a, 2 * a, np.zeros(200), rng.normal(size=200)])
    y = np.r_[np.zeros(199, dtype=np.intp), 1]  # class 1 has a single reading
    fitted = model.ClassMahalanobis.fit(X, y, 2)

    scores = fitted.score(rng.normal(scale=10.0, size=(100, 4)))
    assert np.all(np.isfinite(scores)) and np.all(scores >= 0)


def test_a_class_without_training_readings_is_refused() -> None:
    with pytest.raises(ValueError, match="class 2 has no training readings"):
        model.ClassMahalanobis.fit(np.zeros((4, 2)), np.array([0, 1, 0, 1]), 3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"means": np.zeros(3)}, "shape"),
        ({"whiteners": np.ones((3, 2, 1))}, "whiteners have shape"),
        ({"whiteners": np.full((3, 2, 2), np.nan)}, "non-finite"),
        ({"threshold": 0.0}, "threshold must be positive"),
        ({"threshold": np.inf}, "threshold must be positive"),
        ({"target_rate": 1.0}, "target rate"),
    ],
)
def test_construction_rejects_inconsistent_novelty_models(
    changes: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {"means": np.zeros((3, 2)), "whiteners": np.ones((3, 2, 2))}
    with pytest.raises(ValueError, match=message):
        model.ClassMahalanobis(**(fields | changes))  # type: ignore[arg-type]


def test_classifier_rejects_a_novelty_model_of_other_shape(
    trained_classifier: model.Classifier,
) -> None:
    other = model.ClassMahalanobis(means=np.zeros((2, 2)), whiteners=np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="novelty model covers 2 classes"):
        dataclasses.replace(trained_classifier, novelty_model=other)


# --- through the Classifier -----------------------------------------------------------


@pytest.fixture(scope="module")
def blob_classifier() -> model.Classifier:
    """A small classifier over three Gaussian blobs with their labelled novelty model."""
    rng = np.random.default_rng(9)
    y = rng.integers(0, 3, 600).astype(np.intp)
    X = np.array([[20.0, 1.0], [40.0, 3.0], [60.0, 5.0]])[y] + rng.normal(size=(600, 2))
    net = model.MLP.initialize([2, 8, 3], rng)
    return make_classifier(model.Standardizer.fit(X), net, X, y=y)


def test_classifier_novelty_is_the_novelty_of_the_standardized_reading(
    trained_classifier: model.Classifier,
) -> None:
    clf = trained_classifier
    X = np.random.default_rng(7).normal(scale=4.0, size=(300, 2))
    expected = (
        clf.novelty_model.distance(clf.standardizer.transform(X)) / clf.novelty_model.threshold
    )

    novelty = clf.novelty(X)
    assert novelty.shape == (300,) and novelty.dtype == np.float64
    np.testing.assert_allclose(novelty, expected, rtol=1e-12)
    np.testing.assert_allclose(
        [clf.novelty_one(row) for row in X.tolist()], novelty, rtol=1e-9, atol=1e-12
    )


def test_novelty_of_batches_larger_than_one_chunk_is_complete(
    trained_classifier: model.Classifier,
) -> None:
    X = np.random.default_rng(8).normal(scale=3.0, size=(70_001, 2))
    novelty = trained_classifier.novelty(X)

    np.testing.assert_allclose(novelty[-5:], trained_classifier.novelty(X[-5:]), rtol=1e-12)
    np.testing.assert_allclose(
        novelty[32_766:32_770], trained_classifier.novelty(X[32_766:32_770]), rtol=1e-12
    )


def test_training_readings_are_mostly_not_novel_and_far_ones_are(
    trained_classifier: model.Classifier,
) -> None:
    clf = trained_classifier
    center = clf.standardizer.mean
    assert clf.novelty_one(center.tolist()) < 1
    far = center + 50 * clf.standardizer.scale
    assert clf.novelty_one(far.tolist()) > 1


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.floats(allow_nan=False, allow_infinity=False, min_value=-1e308, max_value=1e308),
        min_size=2,
        max_size=2,
    )
)
def test_novelty_is_finite_for_any_finite_reading(
    blob_classifier: model.Classifier, reading: list[float]
) -> None:
    clf = blob_classifier
    batch = clf.novelty(np.array([reading]))[0]
    single = clf.novelty_one(reading)

    assert math.isfinite(single) and single >= 0
    assert math.isfinite(batch) and batch >= 0
    assert single == pytest.approx(batch, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("direction", [(1, 0), (0, -1), (1, 1), (-1, 1)])
@pytest.mark.parametrize("sigmas", [1e6, 1e12, 1e300])
def test_a_reading_a_million_standard_deviations_out_is_always_novel(
    blob_classifier: model.Classifier, direction: tuple[int, int], sigmas: float
) -> None:
    clf = blob_classifier
    reading = clf.standardizer.mean + np.asarray(direction) * sigmas * clf.standardizer.scale
    reading = np.nan_to_num(reading, posinf=1e308, neginf=-1e308)

    batch = clf.novelty(reading[None, :])[0]
    single = clf.novelty_one(reading.tolist())
    for value in (batch, single):
        assert math.isfinite(value)
        assert value > 1
