"""End to end: a real Prometheus scrapes a real two-worker gunicorn with the drift rules loaded.

Readings from the training distribution keep the PSI recording rule below the alert threshold;
readings with temperature 8 °C high push it above. `/drift` agrees with PSI computed by hand from
the counters, and every expression of the Grafana dashboard returns data from this Prometheus.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import model
from tests.support.artifacts import uniform_readings, write_artifact
from tests.support.drift import hand_psi, samples, series, v2_body
from tests.support.prometheus import RULES, alert_threshold, binary, running_prometheus
from tests.support.server import Server, running_server

pytestmark = pytest.mark.e2e

REPO_ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "sensor-classifier.json"
THRESHOLD = alert_threshold("SensorInputDrift")
BATCH = 250
WAIT_SECONDS = 20.0
FLUSH_BOUND_SECONDS = 3.0


def send(server: Server, X: np.ndarray, features: tuple[str, ...]) -> None:
    """Batches on fresh connections (so both workers get some), a few single readings, one V2."""
    rows = [dict(zip(features, row, strict=True)) for row in X.tolist()]
    singles, v2, rest = rows[:10], X[10:20], rows[20:]
    for start in range(0, len(rest), BATCH):
        with server.client() as client:
            answer = client.post("/classify", json={"readings": rest[start : start + BATCH]})
            assert answer.status_code == 200
    with server.client() as client:
        for row in singles:
            assert client.post("/classify", json=row).status_code == 200
        assert (
            client.post("/v2/models/sensor-classifier/infer", json=v2_body(v2)).status_code == 200
        )


def counted_by_service(server: Server, version: str) -> float:
    """Temperature readings counted, as a scrape of whichever worker answers sees them."""
    with server.client() as client:
        found = samples(client.get("/metrics").text)
    counts = series(
        found, "sensor_feature_bin_readings_total", version, "bin", feature="temperature"
    )
    return sum(counts.values())


def wait_for_first_scrape(prometheus: Any, version: str) -> None:
    """Until Prometheus holds the counters at zero: increase() counts from its first sample on."""
    wait_for_counts(prometheus, version, 0)


def wait_for_counts(prometheus: Any, version: str, total: int) -> None:
    """Until Prometheus has scraped every worker's ``total`` readings, then one more evaluation."""
    expr = (
        f'sum(sensor_feature_bin_readings_total{{model_version="{version}",feature="temperature"}})'
    )
    deadline = time.monotonic() + WAIT_SECONDS
    while time.monotonic() < deadline:
        result = prometheus.query(expr)
        if result and float(result[0]["value"][1]) == total:
            time.sleep(2.5)  # the recording rules run every second, after the scrape
            return
        time.sleep(0.25)
    raise AssertionError(f"Prometheus did not see {total} readings: {prometheus.query(expr)}")


def psi_by_feature(prometheus: Any, version: str) -> dict[str, float]:
    result = prometheus.query(f'sensor:feature_psi:1h{{model_version="{version}"}}')
    return {r["metric"]["feature"]: float(r["value"][1]) for r in result}


def hand_psi_from_metrics(text: str, version: str, features: tuple[str, ...]) -> dict[str, float]:
    found = samples(text)
    return {
        feature: hand_psi(
            series(found, "sensor_feature_bin_readings_total", version, "bin", feature=feature),
            series(found, "sensor_feature_bin_reference_ratio", version, "bin", feature=feature),
        )
        for feature in features
    }


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]


def test_psi_in_prometheus_crosses_the_threshold_when_temperature_shifts(tmp_path: Path) -> None:
    binary("prometheus")
    artifact = write_artifact(tmp_path / "model.npz", seed=3)
    clf = model.load(artifact)
    version = clf.version
    rng = np.random.default_rng(16)
    with (
        running_server(artifact, workers=2, log_dir=tmp_path / "server") as server,
        running_prometheus(
            tmp_path / "prometheus", targets=[f"127.0.0.1:{server.port}"], rule_files=[RULES]
        ) as prometheus,
    ):
        wait_for_first_scrape(prometheus, version)
        send(server, uniform_readings(clf, 3000, rng), clf.features)
        sent = time.monotonic()
        # Each worker hands its counts over at most SENSOR_METRICS_FLUSH_INTERVAL (1 s) after
        # counting them; 3 s leaves room for a loaded machine.
        while counted_by_service(server, version) < 3000:
            assert time.monotonic() - sent < FLUSH_BOUND_SECONDS, "counts not flushed in time"
            time.sleep(0.05)
        with server.client() as client:  # one refused reading, for the dashboard's error panel
            assert client.post("/classify", json={"temperature": "hot"}).status_code == 422
        wait_for_counts(prometheus, version, 3000)
        before = psi_by_feature(prometheus, version)
        assert set(before) == set(clf.features)
        assert max(before.values()) < THRESHOLD, before

        shifted = uniform_readings(clf, 6000, rng)
        shifted[:, 0] += 8.0
        send(server, shifted, clf.features)
        wait_for_counts(prometheus, version, 9000)
        after = psi_by_feature(prometheus, version)
        assert after["temperature"] > THRESHOLD > after["vibration"], after

        # Both workers classified readings, so the sums below really are across workers.
        classifying = {
            line["pid"]
            for line in map(json.loads, server.stdout().splitlines())
            if line.get("path") == "/classify" and line.get("status") == 200
        }
        assert len(classifying) == 2, classifying
        # /drift (whichever worker answers) agrees with the counters of every worker, by hand.
        with server.client() as client:
            drift = client.get("/drift").json()
            by_hand = hand_psi_from_metrics(client.get("/metrics").text, version, clf.features)
        served = {f["name"]: f["psi"] for f in drift["features"]}
        assert served == pytest.approx(by_hand, rel=1e-9)
        assert all(f["readings"] == 9000 for f in drift["features"])
        # All readings lie in Prometheus' window, so its PSI is the same one.
        assert after == pytest.approx(served, abs=1e-6)

        for expr in dashboard_expressions():
            assert prometheus.query(expr), f"no data for dashboard expression {expr!r}"
