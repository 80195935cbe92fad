"""Drift counting and `/drift`: every API counts each reading into its bin, PSI agrees with the counters."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from flask.testing import FlaskClient

import model
from service.app import create_app
from service.schemas import DriftReport
from service.settings import Settings
from tests.support.artifacts import uniform_readings
from tests.support.drift import Samples, hand_psi, samples, series, v2_body


def scrape(client: FlaskClient) -> Samples:
    return samples(client.get("/metrics").get_data(as_text=True))


def bin_of(edges: list[float], value: float) -> int:
    """The oracle: bin 0 below the first edge, i for edges[i-1] <= value < edges[i]."""
    return sum(1 for edge in edges if value >= edge)


def send_everywhere(client: FlaskClient, X: np.ndarray, features: tuple[str, ...]) -> None:
    """The first third one by one, the second as a batch, the rest through V2."""
    rows = [dict(zip(features, row, strict=True)) for row in X.tolist()]
    third = len(rows) // 3
    for row in rows[:third]:
        assert client.post("/classify", json=row).status_code == 200
    assert client.post("/classify", json={"readings": rows[third : 2 * third]}).status_code == 200
    rest = X[2 * third :]
    assert client.post("/v2/models/sensor-classifier/infer", json=v2_body(rest)).status_code == 200


def test_every_reading_is_counted_into_its_bin_from_every_api(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    rng = np.random.default_rng(0)
    X = uniform_readings(classifier, 90, rng)
    X[:5, 0] = [classifier.feature_min[0] - 1, classifier.feature_max[0] + 1, 20.0, 90.0, 55.0]
    send_everywhere(client, X, classifier.features)
    reference = classifier.drift_reference
    assert reference is not None
    got = scrape(client)["sensor_feature_bin_readings_total"]
    for j, feature in enumerate(classifier.features):
        expected = [0] * (reference.edges[j].size + 1)
        for v in X[:, j].tolist():
            expected[bin_of(reference.edges[j].tolist(), v)] += 1
        counted = [0.0] * len(expected)
        for labels, value in got:
            if labels["feature"] == feature and labels["model_version"] == classifier.version:
                counted[int(labels["bin"])] = value
        assert counted == expected, feature


def test_drift_agrees_with_psi_computed_by_hand_from_the_counters(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    rng = np.random.default_rng(1)
    X = uniform_readings(classifier, 300, rng)
    X[:, 0] += 8.0  # a temperature sensor reading 8 °C high
    send_everywhere(client, X, classifier.features)
    drift = client.get("/drift").get_json()
    metrics = scrape(client)
    version = classifier.version
    assert drift["model_version"] == version
    for feature in drift["features"]:
        name = feature["name"]
        counts = series(metrics, "sensor_feature_bin_readings_total", version, "bin", feature=name)
        reference = series(
            metrics, "sensor_feature_bin_reference_ratio", version, "bin", feature=name
        )
        assert feature["readings"] == 300
        assert feature["psi"] == pytest.approx(hand_psi(counts, reference), rel=1e-9)
        assert [b["count"] for b in feature["bins"]] == [counts[b["bin"]] for b in feature["bins"]]
    DriftReport.model_validate(drift)  # the documented schema, with numbers in it
    by_name = {f["name"]: f["psi"] for f in drift["features"]}
    # The shifted feature drifted well past the alert threshold, the other did not.
    assert by_name["temperature"] > 0.25 > by_name["vibration"]
    labels = series(metrics, "sensor_readings_classified_total", version, "label")
    label_reference = series(metrics, "sensor_label_reference_ratio", version, "label")
    assert drift["labels"]["readings"] == 300
    assert drift["labels"]["psi"] == pytest.approx(hand_psi(labels, label_reference), rel=1e-9)


def test_drift_before_any_reading_has_no_psi(client: FlaskClient) -> None:
    drift = client.get("/drift").get_json()
    assert all(f["psi"] is None and f["readings"] == 0 for f in drift["features"])
    assert drift["labels"]["psi"] is None


def test_a_model_without_a_reference_serves_and_says_so_at_drift(tmp_path: Path) -> None:
    from tests.support.artifacts import build_classifier

    path = tmp_path / "old.npz"
    dataclasses.replace(build_classifier(), drift_reference=None).save(path)
    client = create_app(Settings(model_path=path)).test_client()
    assert client.post("/classify", json={"temperature": 40.0, "vibration": 1.0}).status_code == 200
    response = client.get("/drift")
    assert response.status_code == 404
    assert "no drift reference" in response.get_json()["error"]["message"]
    assert "sensor_feature_bin_readings_total" not in scrape(client)


def test_counts_wait_in_memory_until_the_flush_interval(artifact: Path) -> None:
    app = create_app(Settings(model_path=artifact, metrics_flush_interval=60))
    metrics = app.extensions["sensor"]["metrics"]
    client = app.test_client()
    client.post("/classify", json={"temperature": 40.0, "vibration": 1.0})
    version = model.load(artifact).version
    counter = metrics.readings
    # Not yet in the counters (a multiprocess file write per reading is what is avoided) ...
    assert (
        sum(counter.labels(version, c)._value.get() for c in ("normal", "warning", "critical")) == 0
    )
    # ... but a scrape flushes first.
    assert sum(v for labels, v in scrape(client)["sensor_readings_classified_total"]) == 1


def test_an_idle_worker_flushes_on_its_timer(artifact: Path) -> None:
    import time

    from service.metrics import Metrics

    clf = model.load(artifact)
    metrics = Metrics(flush_interval=0.3)
    metrics.serving(clf)
    metrics.flush()  # the interval starts now: the next reading stays in memory
    metrics.reading(clf, (40.0, 1.0), 0, True)
    child = metrics.novel_readings.labels(clf.version)
    assert child._value.get() == 0
    stop = metrics.flush_every()
    try:
        deadline = time.monotonic() + 5.0
        while child._value.get() == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
    assert child._value.get() == 1
    assert metrics.readings.labels(clf.version, clf.classes[0])._value.get() == 1


def test_a_new_model_version_starts_a_new_baseline(
    client: FlaskClient, artifact: Path, classifier: model.Classifier
) -> None:
    from tests.support.artifacts import write_artifact

    client.post("/classify", json={"temperature": 40.0, "vibration": 1.0})
    assert client.get("/drift").get_json()["labels"]["readings"] == 1
    new = model.load(write_artifact(artifact.parent / "next.npz", seed=9))
    (artifact.parent / "next.npz").replace(artifact)
    client.post("/classify", json={"temperature": 40.0, "vibration": 1.0})
    drift = client.get("/drift").get_json()
    assert drift["model_version"] == new.version != classifier.version
    assert drift["labels"]["readings"] == 1
    versions = {
        labels["model_version"] for labels, _ in scrape(client)["sensor_feature_bin_readings_total"]
    }
    assert versions == {classifier.version, new.version}
