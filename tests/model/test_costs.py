"""The cost matrix: least-expected-cost decisions, validation, round trip and version."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.typing import NDArray

import model
from tests.model.test_artifact import assert_refused, read_members, write_members

# "Missing a critical state costs 10 false alarms", on normal / warning / critical.
MISS_COSTS = np.array(
    [
        [0.0, 1.0, 1.0],
        [1.0, 0.0, 1.0],
        [10.0, 10.0, 0.0],
    ]
)


def with_costs(clf: model.Classifier, costs: Any) -> model.Classifier:
    return dataclasses.replace(clf, costs=costs, metadata=dict(clf.metadata))


def brute_force_decision(p: NDArray[np.float64], costs: NDArray[np.float64]) -> int:
    """The first answer j whose sum over i of p[i] * costs[i, j] is smallest, by explicit loops."""
    best, best_cost = 0, None
    for j in range(costs.shape[1]):
        cost = sum(float(p[i]) * float(costs[i, j]) for i in range(costs.shape[0]))
        if best_cost is None or cost < best_cost:
            best, best_cost = j, cost
    return best


# --- the decision ---------------------------------------------------------------------------


def test_hand_computed_decision(trained_classifier: model.Classifier) -> None:
    clf = with_costs(trained_classifier, MISS_COSTS)
    P = np.array([[0.85, 0.05, 0.10], [0.95, 0.04, 0.01], [0.30, 0.60, 0.10]])
    # Row 0: normal costs 0.05 + 10 * 0.10 = 1.05, warning 0.85 + 1.0 = 1.85, critical 0.90.
    # Row 1: normal 0.04 + 0.1 = 0.14, warning 0.95 + 0.1 = 1.05, critical 0.99.
    # Row 2: normal 0.6 + 1.0 = 1.6, warning 0.3 + 1.0 = 1.3, critical 0.9.
    np.testing.assert_allclose(
        clf.expected_costs(P),
        [[1.05, 1.85, 0.90], [0.14, 1.05, 0.99], [1.60, 1.30, 0.90]],
    )
    assert clf.decide(P).tolist() == [2, 0, 2]
    assert [clf.decide_one(row) for row in P.tolist()] == [2, 0, 2]
    # The same probabilities under argmax answer the most probable class.
    assert trained_classifier.decide(P).tolist() == [0, 0, 1]


def test_default_costs_are_argmax(trained_classifier: model.Classifier) -> None:
    assert trained_classifier.has_default_costs
    np.testing.assert_array_equal(trained_classifier.costs, 1 - np.eye(3))
    # Nearly equal probabilities, where 1 - p would round to a tie.
    P = np.array([[1e-20, 2e-20, 1.0 - 3e-20], [0.5, 0.5 + 2**-53, 0.0], [0.25, 0.5, 0.25]])
    assert trained_classifier.decide(P).tolist() == P.argmax(axis=1).tolist()
    assert [trained_classifier.decide_one(p) for p in P.tolist()] == [2, 1, 1]
    # Giving the default matrix explicitly is the same model.
    explicit = with_costs(trained_classifier, model.default_costs(3))
    assert explicit.has_default_costs
    assert explicit.version == trained_classifier.version


def test_ties_go_to_the_lowest_index_as_argmax(trained_classifier: model.Classifier) -> None:
    clf = with_costs(trained_classifier, [[0, 2, 2], [2, 0, 2], [2, 2, 0]])  # argmax, scaled
    assert not clf.has_default_costs
    P = np.array([[0.4, 0.4, 0.2], [0.2, 0.4, 0.4], [1 / 3, 1 / 3, 1 / 3]])
    assert clf.decide(P).tolist() == P.argmax(axis=1).tolist() == [0, 1, 0]
    assert [clf.decide_one(p) for p in P.tolist()] == [0, 1, 0]


probability_rows = arrays(
    np.float64,
    st.tuples(st.integers(1, 20), st.just(3)),
    elements=st.floats(0.0, 1.0, allow_nan=False),
).filter(lambda A: bool(np.all(A.sum(axis=1) > 0)))
cost_matrices = arrays(
    np.float64, (3, 3), elements=st.sampled_from([0.0, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0])
).map(lambda C: C * (1 - np.eye(3)))


@settings(deadline=None, max_examples=200)
@given(raw=probability_rows, costs=cost_matrices)
def test_decide_matches_brute_force_and_decide_one(
    trained_classifier: model.Classifier, raw: NDArray[np.float64], costs: NDArray[np.float64]
) -> None:
    P = raw / raw.sum(axis=1, keepdims=True)
    clf = with_costs(trained_classifier, costs)
    chosen = clf.decide(P)
    assert chosen.shape == (P.shape[0],)
    expected = clf.expected_costs(P)
    for n, p in enumerate(P):
        # The answer's expected cost is the least (up to rounding of the sums' order).
        assert expected[n, chosen[n]] <= expected[n].min() + 1e-12
        assert clf.decide_one(p.tolist()) == chosen[n] or np.isclose(
            expected[n, clf.decide_one(p.tolist())], expected[n, chosen[n]]
        )
        j = brute_force_decision(p, costs)
        assert np.isclose(expected[n, j], expected[n, chosen[n]])


@settings(deadline=None, max_examples=100)
@given(raw=probability_rows)
def test_default_decision_is_argmax(
    trained_classifier: model.Classifier, raw: NDArray[np.float64]
) -> None:
    P = raw / raw.sum(axis=1, keepdims=True)
    assert trained_classifier.decide(P).tolist() == P.argmax(axis=1).tolist()
    assert [trained_classifier.decide_one(p) for p in P.tolist()] == P.argmax(axis=1).tolist()


def test_decide_checks_the_shape(trained_classifier: model.Classifier) -> None:
    with pytest.raises(ValueError, match=r"shape \(n, 3\)"):
        trained_classifier.decide(np.ones((4, 2)) / 2)
    with pytest.raises(ValueError, match="expected 3 probabilities"):
        trained_classifier.decide_one([0.5, 0.5])


def test_decisions_on_real_predictions(trained_classifier: model.Classifier) -> None:
    """Costs move answers towards the costly class and leave the probabilities alone."""
    rng = np.random.default_rng(1)
    X = rng.normal(size=(500, 2)) * 2
    clf = with_costs(trained_classifier, MISS_COSTS)
    P = clf.predict_proba(X)
    np.testing.assert_array_equal(P, trained_classifier.predict_proba(X))
    argmax, costly = trained_classifier.decide(P), clf.decide(P)
    assert np.all(argmax == trained_classifier.predict(X))
    changed = argmax != costly
    assert changed.any()
    assert np.all(costly[changed] == 2)


# --- validation, round trip, version -------------------------------------------------------


@pytest.mark.parametrize(
    ("costs", "message"),
    [
        (np.ones((2, 2)) - np.eye(2), r"shape \(2, 2\), expected \(3, 3\)"),
        (np.ones(3), r"shape \(3,\)"),
        (
            [[0, 1, 1], [1, 0, -1], [1, 1, 0]],
            "answering 'critical' when the truth is 'warning' is negative",
        ),
        (
            [[0, 1, 1], [1, 0, 1], [np.inf, 1, 0]],
            "'normal' when the truth is 'critical' is not finite",
        ),
        ([[0, 1, 1], [1, 0, 1], [np.nan, 1, 0]], "is not finite"),
        ([[0, 1, 1], [1, 2, 1], [1, 1, 0]], "'warning' when the truth is 'warning' is not 0"),
        (
            [[0, 1, 1], [1, 0, 1], [1e13, 1, 0]],
            "'normal' when the truth is 'critical' is more than 1e\\+12",
        ),
    ],
)
def test_construction_rejects_bad_cost_matrices(
    trained_classifier: model.Classifier, costs: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        with_costs(trained_classifier, costs)


def test_costs_up_to_the_bound_are_accepted(trained_classifier: model.Classifier) -> None:
    costs = np.full((3, 3), model.MAX_COST) - np.diag(np.full(3, model.MAX_COST))
    clf = with_costs(trained_classifier, costs)
    P = np.array([[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3]])
    assert np.all(np.isfinite(clf.expected_costs(P)))
    assert clf.decide(P).tolist() == [0, 0]


def test_the_matrix_is_a_private_read_only_copy(trained_classifier: model.Classifier) -> None:
    mine = MISS_COSTS.copy()
    clf = with_costs(trained_classifier, mine)
    version = clf.version
    mine[2, 0] = 0.0
    assert clf.costs is not None and clf.costs[2, 0] == 10.0
    with pytest.raises(ValueError, match="read-only"):
        clf.costs[2, 0] = 0.0
    assert clf.version == version


def test_a_cost_of_minus_zero_is_a_cost_of_zero(trained_classifier: model.Classifier) -> None:
    # -0.0 == 0.0 decides the same answers, but its bytes differ and the version hashes bytes.
    zero = MISS_COSTS.copy()
    zero[2, 0] = 0.0
    minus_zero = zero.copy()
    minus_zero[2, 0] = minus_zero[1, 1] = -0.0
    clf = with_costs(trained_classifier, minus_zero)
    assert clf.costs is not None and not np.signbit(clf.costs).any()
    assert clf.version == with_costs(trained_classifier, zero).version


def test_costs_round_trip_and_change_the_version(
    trained_classifier: model.Classifier, tmp_path: Path
) -> None:
    clf = with_costs(trained_classifier, MISS_COSTS)
    path = tmp_path / "costly.npz"
    clf.save(path)
    loaded = model.load(path)
    assert loaded.costs is not None and loaded.costs.dtype == np.float64
    np.testing.assert_array_equal(loaded.costs, MISS_COSTS)
    assert not loaded.has_default_costs
    assert loaded.version == clf.version != trained_classifier.version
    # Any single entry counts.
    for i, j in itertools.permutations(range(3), 2):
        nudged = MISS_COSTS.copy()
        nudged[i, j] = np.nextafter(nudged[i, j], np.inf)
        assert with_costs(trained_classifier, nudged).version != clf.version


@pytest.mark.parametrize(
    ("costs", "fragments"),
    [
        (np.ones((2, 2)), ("cost matrix has shape (2, 2)",)),
        (np.array([[0, 1, 1], [1, 0, 1], [-3, 1, 0]], dtype=np.float64), ("is negative",)),
        (np.array([[0, 1, 1], [1, 0, 1], [np.nan, 1, 0]]), ("is not finite",)),
        (np.array([[1.0, 1, 1], [1, 0, 1], [1, 1, 0]]), ("is not 0",)),
        (np.zeros((3, 3), dtype=np.int64), ("'costs' must be floating point",)),
        # Finite, but expected costs overflow to inf: decide would answer class 0 for anything.
        (np.array([[0, 1e307, 1e308], [1, 0, 1], [1, 1, 0]]), ("is more than",)),
    ],
)
def test_load_refuses_bad_cost_matrices(
    artifact: Path, costs: NDArray[Any], fragments: tuple[str, ...]
) -> None:
    members = read_members(artifact)
    members["costs"] = costs
    assert_refused(write_members(artifact, members), *fragments)


def test_load_refuses_an_artifact_without_costs(artifact: Path) -> None:
    members = read_members(artifact)
    del members["costs"]
    assert_refused(write_members(artifact, members), "missing key 'costs'")
