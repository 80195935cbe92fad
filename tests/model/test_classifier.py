"""The Classifier: predictions against an independent forward pass, ranges, shapes, validation."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

import model
from tests.model.toys import (
    gaussian_blobs,
    make_classifier,
    reference_logits,
    reference_softmax,
    train_mlp,
)


def reference_proba(clf: model.Classifier, X: NDArray[np.float64], temperature: float) -> Any:
    Z = reference_logits(
        clf.network.coefs, clf.network.intercepts, clf.standardizer.mean, clf.standardizer.scale, X
    )
    return reference_softmax(Z / temperature)


def with_temperature(clf: model.Classifier, temperature: float) -> model.Classifier:
    return dataclasses.replace(clf, temperature=temperature)


@pytest.fixture(scope="module")
def float64_classifier() -> model.Classifier:
    rng = np.random.default_rng(11)
    X, y = gaussian_blobs(300, rng)
    standardizer, net = train_mlp(X, y, (12, 8), rng, epochs=10, dtype=np.float64)
    return make_classifier(standardizer, net, X, temperature=0.6)


def test_probabilities_match_an_independent_forward_pass(
    float64_classifier: model.Classifier,
) -> None:
    X = np.random.default_rng(0).normal(scale=3.0, size=(500, 2))
    clf = float64_classifier

    np.testing.assert_allclose(
        clf.predict_proba(X), reference_proba(clf, X, clf.temperature), rtol=1e-9, atol=1e-15
    )
    np.testing.assert_allclose(
        clf.predict_proba(X, calibrated=False), reference_proba(clf, X, 1.0), rtol=1e-9, atol=1e-15
    )
    np.testing.assert_allclose(
        clf.logits(X),
        reference_logits(
            clf.network.coefs,
            clf.network.intercepts,
            clf.standardizer.mean,
            clf.standardizer.scale,
            X,
        ),
        rtol=1e-10,
        atol=1e-12,
    )


def test_float32_classifier_matches_float64_reference_closely(
    trained_classifier: model.Classifier,
) -> None:
    X = np.random.default_rng(1).normal(scale=3.0, size=(500, 2))
    clf = trained_classifier

    P = clf.predict_proba(X)

    assert P.dtype == np.float64
    np.testing.assert_allclose(P, reference_proba(clf, X, clf.temperature), atol=1e-5)


def test_batches_larger_than_one_chunk_are_complete(trained_classifier: model.Classifier) -> None:
    """Inference runs in chunks of 32768 rows; rows past the first chunk must be filled too."""
    X = np.random.default_rng(2).normal(scale=3.0, size=(70_001, 2))

    P = trained_classifier.predict_proba(X)

    # Equal to float32 precision, not bit for bit: BLAS picks its float32 kernels by the number
    # of rows (OpenBLAS's Haswell kernels sum the last rows of a block in another order), so the
    # same reading can differ in the last bits alone and in a block. An unfilled row is garbage.
    same = {"rtol": 1e-5, "atol": 1e-9}
    np.testing.assert_allclose(P[-5:], trained_classifier.predict_proba(X[-5:]), **same)
    np.testing.assert_allclose(
        P[32_766:32_770], trained_classifier.predict_proba(X[32_766:32_770]), **same
    )
    np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)


@settings(deadline=None, max_examples=60)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 20), st.just(2)),
        elements=st.floats(-1e6, 1e6, allow_nan=False),
    )
)
def test_predict_proba_rows_sum_to_one_for_any_reading(
    trained_classifier: model.Classifier, X: NDArray[np.float64]
) -> None:
    clf = trained_classifier
    for calibrated in (True, False):
        P = clf.predict_proba(X, calibrated=calibrated)
        assert P.shape == (len(X), 3)
        assert np.all(np.isfinite(P))
        assert np.all(P >= 0.0)
        np.testing.assert_allclose(P.sum(axis=1), 1.0, atol=1e-12)


def decision_boundary_points(clf: model.Classifier, rng: np.random.Generator) -> Any:
    """Readings within float rounding of a boundary, where two logits (nearly) tie.

    Bisection along segments whose ends get different classes; both final ends are kept.
    """
    points = []
    while len(points) < 200:
        a, b = rng.normal(loc=1.0, scale=2.0, size=(2, 2))
        class_a, class_b = clf.predict(np.array([a, b]))
        if class_a == class_b:
            continue
        lo, hi = 0.0, 1.0
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if clf.predict((a + mid * (b - a))[None])[0] == class_a:
                lo = mid
            else:
                hi = mid
        points += [a + lo * (b - a), a + hi * (b - a)]
    return np.array(points)


@pytest.mark.parametrize("temperature", [0.05, 0.3, 1.0, 1.7, 3.1, 40.0])
def test_temperature_never_changes_the_winning_class_even_at_near_ties(
    trained_classifier: model.Classifier, temperature: float
) -> None:
    clf = with_temperature(trained_classifier, temperature)
    X = decision_boundary_points(clf, np.random.default_rng(3))

    winners = clf.predict(X)

    # The predicted class always has the highest probability, calibrated or not (a tie in
    # probability would be allowed; a strictly more probable other class is the bug).
    rows = np.arange(len(X))
    for P in (clf.predict_proba(X), clf.predict_proba(X, calibrated=False)):
        assert np.array_equal(P[rows, winners], P.max(axis=1))
    assert np.array_equal(clf.logits(X).argmax(axis=1), winners)


def test_predictions_follow_weights_changed_in_place() -> None:
    """A training loop may evaluate a Classifier while its optimizer updates the same arrays."""
    rng = np.random.default_rng(4)
    X, y = gaussian_blobs(200, rng)
    standardizer, net = train_mlp(X, y, (8,), rng, epochs=1, dtype=np.float32)
    clf = make_classifier(standardizer, net, X, temperature=2.0)
    clf.predict_proba(X)
    optimizer = model.Adam(net.params, learning_rate=0.05)

    for _ in range(20):
        optimizer.step(net.loss_and_gradients(standardizer.transform(X), y)[1])

    np.testing.assert_allclose(clf.predict_proba(X), reference_proba(clf, X, 2.0), atol=1e-5)


def test_predict_returns_class_indices(trained_classifier: model.Classifier) -> None:
    X = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 1.7]])

    indices = trained_classifier.predict(X)

    assert indices.shape == (3,)
    assert np.issubdtype(indices.dtype, np.integer)
    # The blob centres: each is classified as its own class.
    assert [trained_classifier.classes[i] for i in indices] == ["normal", "warning", "critical"]


def test_in_training_range_is_inclusive_and_false_for_nan(
    trained_classifier: model.Classifier,
) -> None:
    lo, hi = trained_classifier.feature_min, trained_classifier.feature_max
    X = np.array(
        [
            lo,
            hi,
            (lo + hi) / 2,
            [np.nextafter(lo[0], -np.inf), lo[1]],
            [hi[0], np.nextafter(hi[1], np.inf)],
            [np.nan, lo[1]],
        ]
    )

    np.testing.assert_array_equal(
        trained_classifier.in_training_range(X), [True, True, True, False, False, False]
    )


@pytest.mark.parametrize("shape", [(2,), (3, 3), (1, 1), (2, 2, 2)])
def test_wrong_input_shape_is_a_value_error_naming_features(
    trained_classifier: model.Classifier, shape: tuple[int, ...]
) -> None:
    for method in (
        trained_classifier.predict_proba,
        trained_classifier.predict,
        trained_classifier.logits,
        trained_classifier.in_training_range,
    ):
        with pytest.raises(ValueError, match=r"expected readings of shape \(n, 2\).*x0, x1"):
            method(np.zeros(shape))


def test_empty_batch_gives_empty_results(trained_classifier: model.Classifier) -> None:
    X = np.zeros((0, 2))

    assert trained_classifier.predict_proba(X).shape == (0, 3)
    assert trained_classifier.predict(X).shape == (0,)
    assert trained_classifier.in_training_range(X).shape == (0,)


def test_properties_describe_the_model(trained_classifier: model.Classifier) -> None:
    assert trained_classifier.n_features == 2
    assert trained_classifier.n_classes == 3
    assert trained_classifier.features == ("x0", "x1")
    assert trained_classifier.units == ("", "")
    assert isinstance(trained_classifier.version, str)
    assert len(trained_classifier.version) >= 8


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"classes": ("only",)}, "at least two classes"),
        ({"classes": ("a", "a", "b")}, "unique"),
        ({"features": ("x", "")}, "non-empty"),
        ({"units": ("mm/s",)}, "units"),
        ({"temperature": 0.0}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"temperature": 5e-324}, "temperature must be between"),
        ({"temperature": 1e3}, "temperature must be between"),
        ({"feature_min": [1.0, 0.0], "feature_max": [0.0, 1.0]}, "feature_min exceeds"),
        ({"feature_min": [0.0, 0.0, 0.0]}, "feature_min has shape"),
        ({"classes": ("a", "b")}, "do not chain"),
    ],
)
def test_construction_rejects_inconsistent_models(
    trained_classifier: model.Classifier, changes: dict[str, Any], message: str
) -> None:
    fields: dict[str, Any] = {
        "network": trained_classifier.network,
        "standardizer": trained_classifier.standardizer,
        "classes": trained_classifier.classes,
        "features": trained_classifier.features,
        "units": trained_classifier.units,
        "feature_min": trained_classifier.feature_min,
        "feature_max": trained_classifier.feature_max,
        "novelty_model": trained_classifier.novelty_model,
    }
    with pytest.raises(ValueError, match=message):
        model.Classifier(**(fields | changes))


def test_self_test_passes_for_a_trained_model(trained_classifier: model.Classifier) -> None:
    trained_classifier.self_test()


def test_construction_refuses_a_network_whose_answers_overflow(
    trained_classifier: model.Classifier,
) -> None:
    coefs = [np.full_like(W, 3e38) for W in trained_classifier.network.coefs]
    network = model.MLP(coefs, trained_classifier.network.intercepts)
    with pytest.raises(ValueError, match="not finite at the training mean"):
        dataclasses.replace(trained_classifier, network=network)


def test_self_test_sees_weights_changed_after_construction(
    trained_classifier: model.Classifier,
) -> None:
    """What the service's readiness check relies on: the live weights are tested."""
    coefs = [W.copy() for W in trained_classifier.network.coefs]
    clf = dataclasses.replace(
        trained_classifier, network=model.MLP(coefs, trained_classifier.network.intercepts)
    )
    coefs[0][:] = 1e38
    with pytest.raises(ValueError, match="not finite"):
        clf.self_test()


def test_absurd_finite_readings_give_finite_probabilities() -> None:
    """A gateway may send 1e300; the answer must still be a probability distribution."""
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 2)) * [10.0, 1.0] + [50.0, 3.0]
    net = model.MLP.initialize([2, 16, 16, 3], rng)
    clf = make_classifier(model.Standardizer.fit(X), net, X, temperature=0.5)
    absurd = np.array([[1e300, -1e300], [-1e308, 1e308], [1e300, 1e300], [5e-324, 0.0]])
    P = clf.predict_proba(absurd)
    assert np.all(np.isfinite(P))
    np.testing.assert_allclose(P.sum(axis=1), 1.0)
    assert not clf.in_training_range(absurd[:3]).any()


def test_one_reading_path_matches_the_batch_path() -> None:
    """`predict_proba_one` and `in_training_range_one` are the service's hot path: same answers."""
    rng = np.random.default_rng(11)
    X = rng.normal(size=(500, 3)) * [10.0, 1.0, 1e4] + [50.0, 3.0, 1e5]
    net = model.MLP.initialize([3, 32, 16, 4], rng)
    # Fitted on the central rows only, so the probe has readings on both sides of the range.
    central = X[np.all(np.abs(X - X.mean(axis=0)) < 1.5 * X.std(axis=0), axis=1)]
    clf = make_classifier(model.Standardizer.fit(X), net, central, temperature=1.7)
    probe = np.vstack([X[:200], X[:50] * 3.0, [[1e300, -1e300, 0.0]]])
    expected = clf.predict_proba(probe)
    singles = np.array([clf.predict_proba_one(row) for row in probe.tolist()])
    np.testing.assert_allclose(singles, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(singles.sum(axis=1), 1.0, atol=1e-12)
    assert [clf.in_training_range_one(row) for row in probe.tolist()] == (
        clf.in_training_range(probe).tolist()
    )
    # An uncalibrated answer would differ: the temperature is really applied.
    assert not np.allclose(singles, clf.predict_proba(probe, calibrated=False), atol=1e-3)


def test_float32_logits_are_divided_by_the_temperature_in_float64(
    trained_classifier: model.Classifier,
) -> None:
    """float32 logits / a Python float computes in float32 under numpy 2 unless told otherwise,
    which rounds nearly tied logits to a tie; the batch path must divide in float64."""
    clf = with_temperature(trained_classifier, 1.7)
    assert clf.network.dtype == np.float32
    X = np.random.default_rng(4).normal(scale=3.0, size=(300, clf.n_features))
    expected = model.softmax(clf.logits(X) / 1.7)
    np.testing.assert_allclose(clf.predict_proba(X), expected, rtol=1e-12, atol=1e-15)
