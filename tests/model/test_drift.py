"""The drift reference: bins at training quantiles, PSI against an independent formula, artifact round trip."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import model
from model.drift import PSI_EPSILON, DriftReference, psi
from tests.support.artifacts import build_classifier


def reference_of(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, DriftReference]:
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.normal(50.0, 10.0, n), rng.exponential(2.0, n)])
    labels = rng.integers(0, 3, size=400)
    return X, DriftReference.fit(X, labels, 3)


def test_bins_hold_equal_shares_of_training_readings_and_empty_tails() -> None:
    X, ref = reference_of()
    for j, s in enumerate(ref.feature_shares):
        assert s.size == 12  # 10 quantile bins, underflow, overflow
        assert s[0] == 0.0 and s[-1] == 0.0
        assert np.allclose(s[1:-1], 0.1, atol=1 / len(X))
        assert ref.edges[j][0] == X[:, j].min()
        # The maximum falls in the last inner bin, anything above it in the overflow bin.
        top = X[:, j].max()
        assert ref.bin_one([top, 0.0] if j == 0 else [0.0, top])[j] == 11 - 1
        assert ref.bin_one([math.nextafter(top, math.inf)] * 2)[j] == 11


def test_one_reading_and_batch_bin_alike() -> None:
    _, ref = reference_of()
    rng = np.random.default_rng(1)
    probe = np.column_stack([rng.normal(50, 30, 300), rng.normal(2, 5, 300)])
    counts = ref.bin_counts(probe)
    by_one = [np.zeros(e.size + 1, int) for e in ref.edges]
    for row in probe.tolist():
        for j, b in enumerate(ref.bin_one(row)):
            by_one[j][b] += 1
    for a, b in zip(counts, by_one, strict=True):
        assert a.tolist() == b.tolist()


def test_discrete_and_constant_features_merge_tied_bins() -> None:
    X = np.column_stack([np.repeat([0.0, 1.0, 2.0], 100), np.full(300, 7.0)])
    ref = DriftReference.fit(X, np.zeros(10, int), 2)
    assert ref.edges[0].size == 3 and ref.edges[1].size == 2
    assert ref.feature_shares[1].tolist() == [0.0, 1.0, 0.0]
    assert ref.bin_one([1.0, 7.0]) == [2, 1]


def test_psi_matches_the_formula_written_out() -> None:
    o, r = [0.5, 0.3, 0.2, 0.0], [0.25, 0.25, 0.25, 0.25]
    expected = sum(
        (max(a, PSI_EPSILON) - max(b, PSI_EPSILON))
        * math.log(max(a, PSI_EPSILON) / max(b, PSI_EPSILON))
        for a, b in zip(o, r, strict=True)
    )
    assert psi(o, r) == pytest.approx(expected, rel=1e-12)
    assert psi(r, r) == 0.0


@given(st.lists(st.floats(0, 1), min_size=2, max_size=12), st.integers(0, 2**32 - 1))
def test_psi_is_never_negative_and_symmetric(raw: list[float], seed: int) -> None:
    o = np.asarray(raw)
    r = np.random.default_rng(seed).dirichlet(np.ones(o.size))
    assert psi(o, r) >= 0.0
    assert psi(o, r) == pytest.approx(psi(r, o), rel=1e-9, abs=1e-12)


def test_the_reference_survives_the_artifact_round_trip(tmp_path) -> None:
    _, ref = reference_of()
    clf = build_classifier(drift_reference=ref)
    clf.save(tmp_path / "m.npz")
    loaded = model.load(tmp_path / "m.npz").drift_reference
    assert loaded is not None
    for a, b in zip(
        ref.edges + ref.feature_shares, loaded.edges + loaded.feature_shares, strict=True
    ):
        assert np.array_equal(a, b)
    assert np.array_equal(ref.label_shares, loaded.label_shares)


def test_the_reference_is_not_part_of_the_version() -> None:
    # It decides no answer; a rollout's baseline follows the version all the same.
    clf = build_classifier()
    assert dataclasses.replace(clf, drift_reference=reference_of()[1]).version == clf.version


def test_an_artifact_without_a_reference_loads_without_one(tmp_path) -> None:
    dataclasses.replace(build_classifier(), drift_reference=None).save(tmp_path / "m.npz")
    assert model.load(tmp_path / "m.npz").drift_reference is None


def _rewrite(path, change) -> None:
    with np.load(path) as npz:
        arrays = dict(npz)
    change(arrays)
    np.savez(path, **arrays)


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda a: a.pop("drift_label_shares"), "incomplete drift reference"),
        (lambda a: a.update(drift_label_shares=np.array([0.5, 0.6, 0.1])), "label shares sum"),
        (lambda a: a.update(drift_label_shares=np.array([0.5, 0.5])), "covers 2 features and 2"),
        (lambda a: a.update(drift_edges=a["drift_edges"][::-1].copy()), "not strictly increasing"),
        (lambda a: a.update(drift_edge_counts=np.array([11, 10])), "do not fit"),
        (lambda a: a.update(drift_feature_shares=-a["drift_feature_shares"]), "non-negative"),
        (lambda a: a.update(drift_edges=a["drift_edges"].astype(np.int64)), "floating-point"),
    ],
)
def test_the_loader_refuses_a_bad_reference(tmp_path, change, problem) -> None:
    path = tmp_path / "m.npz"
    build_classifier().save(path)
    _rewrite(path, change)
    with pytest.raises(model.ArtifactError, match=problem):
        model.load(path)


def _with_probabilities(tmp_path) -> Path:
    clf = build_classifier()
    P = np.random.default_rng(2).dirichlet(np.ones(clf.n_classes), size=40)
    reference = dataclasses.replace(clf.drift_reference, probabilities=P)
    path = tmp_path / "m.npz"
    dataclasses.replace(clf, drift_reference=reference).save(path)
    loaded = model.load(path).drift_reference
    np.testing.assert_allclose(loaded.probabilities, P, rtol=1e-6)  # kept as float32
    return path


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (lambda p: p[:, :2], "of shape \\(40, 2\\) for 3 classes"),
        (lambda p: p * 1.01, "do not sum to 1"),
        (lambda p: np.where(p >= p.max(), -p, p), "within \\[0, 1\\]"),
        (lambda p: np.full_like(p, np.nan), "finite"),
        (lambda p: (p > 0.5).astype(np.int64), "must be floating point"),
    ],
)
def test_the_loader_refuses_bad_validation_probabilities(tmp_path, change, problem) -> None:
    path = _with_probabilities(tmp_path)
    _rewrite(
        path,
        lambda a: a.update(
            drift_validation_probabilities=change(a["drift_validation_probabilities"])
        ),
    )
    with pytest.raises(model.ArtifactError, match=problem):
        model.load(path)


def test_answered_counts_the_labels_another_decision_gives(tmp_path) -> None:
    reference = model.load(_with_probabilities(tmp_path)).drift_reference
    labels = np.array([0] * 10 + [2] * 30)
    np.testing.assert_array_equal(reference.answered(labels).label_shares, [0.25, 0.0, 0.75])
    assert reference.answered(labels).edges == reference.edges
