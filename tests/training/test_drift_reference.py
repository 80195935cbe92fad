"""The drift reference training writes: bins at training quantiles, labels as the service answers them."""

from __future__ import annotations

import numpy as np

import model
from training import pipeline
from training.fit import FitConfig


def test_training_stores_the_reference_of_its_own_readings_and_decisions() -> None:
    parts = pipeline.synthetic_parts(3000, np.random.default_rng(4))
    # Costs that move answers away from argmax: the reference must count the label answered.
    costs = np.array([[0.0, 1.0, 1.0], [5.0, 0.0, 1.0], [20.0, 5.0, 0.0]])
    result = pipeline.train(parts, FitConfig(epochs=1), np.random.default_rng(5), costs=costs)
    clf = result.classifier
    ref = clf.drift_reference
    assert ref is not None
    X = parts.train.X
    for j in range(clf.n_features):
        edges = ref.edges[j]
        # Ten bins between the training minimum and maximum, at its deciles.
        assert edges.size == 11 and edges[0] == X[:, j].min()
        assert np.allclose(edges[1:-1], np.quantile(X[:, j], np.linspace(0, 1, 11))[1:-1])
        assert ref.feature_shares[j][0] == 0.0 and ref.feature_shares[j][-1] == 0.0
        assert np.allclose(ref.feature_shares[j][1:-1], 0.1, atol=2 / len(X))
    P = clf.predict_proba(parts.validation.X)
    decided = np.bincount(clf.decide(P), minlength=clf.n_classes) / len(P)
    assert np.array_equal(ref.label_shares, decided)
    assert not np.array_equal(decided, np.bincount(P.argmax(axis=1), minlength=3) / len(P))


def test_the_command_line_artifact_carries_the_reference(tiny_classifier: model.Classifier) -> None:
    ref = tiny_classifier.drift_reference
    assert ref is not None and ref.n_features == tiny_classifier.n_features
