"""`/metrics`: Prometheus text with requests, latency, readings by label and the model version."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

import model
from service.app import create_app
from service.settings import Settings


def samples(client: FlaskClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.mimetype == "text/plain"
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.get_data(as_text=True))
        for sample in family.samples
    }


def value(snapshot: dict, name: str, **labels: str) -> float:
    return snapshot.get((name, tuple(sorted(labels.items()))), 0.0)


def test_requests_are_counted_by_endpoint_method_and_status(client: FlaskClient) -> None:
    before = samples(client)
    for _ in range(3):
        client.post("/classify", json={"temperature": 40.0, "vibration": 1.0})
    client.post("/classify", json={"temperature": "hot", "vibration": 1.0})
    client.get("/no/such/page")
    client.get("/v2/models/whatever")
    # The model card's own files, as a browser loads them with the page.
    client.get("/static/card.css").close()
    client.get("/static/card.js").close()
    # What a server hands over for `POST //classify`: Werkzeug matches it to /classify.
    path = {"PATH_INFO": "//classify"}
    client.post("/classify", json={"temperature": 40.0, "vibration": 1.0}, environ_overrides=path)
    after = samples(client)

    def delta(**labels: str) -> float:
        name = "sensor_http_requests_total"
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(endpoint="/classify", method="POST", status="200") == 4
    assert delta(endpoint="/classify", method="POST", status="422") == 1
    assert delta(endpoint="unmatched", method="GET", status="404") == 1
    assert delta(endpoint="/v2/models/<model_name>", method="GET", status="404") == 1
    assert delta(endpoint="/static/<path:filename>", method="GET", status="200") == 2
    # The latency histogram saw every /classify request.
    count = "sensor_http_request_duration_seconds_count"
    assert (
        value(after, count, endpoint="/classify") - value(before, count, endpoint="/classify") == 5
    )


def test_readings_are_counted_by_predicted_label(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    before = samples(client)
    readings = [{"temperature": 20.0 + i, "vibration": i / 5} for i in range(60)]
    results = client.post("/classify", json={"readings": readings}).get_json()["results"]
    single = client.post("/classify", json=readings[0]).get_json()
    v2 = client.post(
        "/v2/models/sensor-classifier/infer",
        json={"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [20.0, 0.0]}]},
    ).get_json()
    after = samples(client)
    expected = {label: 0 for label in classifier.classes}
    for label in [r["label"] for r in results] + [single["label"], v2["outputs"][1]["data"][0]]:
        expected[label] += 1
    for label, count in expected.items():
        name = "sensor_readings_classified_total"
        labels = {"label": label, "model_version": classifier.version}
        got = value(after, name, **labels) - value(before, name, **labels)
        assert got == count, label


def test_novel_readings_are_counted_from_every_api(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    novel = {"model_version": classifier.version}
    before = value(samples(client), "sensor_novel_readings_total", **novel)
    inside, outside = (
        {"temperature": 50.0, "vibration": 5.0},
        {"temperature": 500.0, "vibration": 50.0},
    )
    assert not client.post("/classify", json=inside).get_json()["novel"]
    assert client.post("/classify", json=outside).get_json()["novel"]
    client.post("/classify", json={"readings": [outside, inside, outside]})
    client.post(
        "/v2/models/sensor-classifier/infer",
        json={
            "inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [500.0, 50.0]}]
        },
    )
    assert value(samples(client), "sensor_novel_readings_total", **novel) - before == 4


def test_the_served_model_version_is_a_gauge(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    assert value(samples(client), "sensor_model_info", version=classifier.version) == 1.0


def test_unknown_methods_do_not_create_label_values(client: FlaskClient) -> None:
    client.open("/classify", method="BREW")
    snapshot = samples(client)
    methods = {
        dict(labels).get("method")
        for (name, labels) in snapshot
        if name == "sensor_http_requests_total"
    }
    assert "BREW" not in methods and "other" in methods


def test_requests_counted_in_bulk_expose_what_observing_each_would() -> None:
    """The worker hands request counts and latencies to prometheus_client in bulk, reaching
    into the histogram's values; the exposition must be what one observe() per request gives."""
    from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

    from service.metrics import LATENCY_BUCKETS, Metrics

    # On a bound, just past one, far beyond the last, and zero.
    seconds = [0.0, 0.0005, 0.00051, 0.003, 0.003, 0.2, 10.0, 99.0, 1e-9]
    metrics = Metrics(flush_interval=3600)
    registry = CollectorRegistry(auto_describe=True)
    requests = Counter(
        "sensor_http_requests", "x", ["endpoint", "method", "status"], registry=registry
    )
    latency = Histogram(
        "sensor_http_request_duration_seconds",
        "x",
        ["endpoint"],
        buckets=LATENCY_BUCKETS,
        registry=registry,
    )
    for i, s in enumerate(seconds):
        endpoint = "/classify" if i % 3 else "/health"
        metrics.observe_request(endpoint, "POST", "200", s)
        requests.labels(endpoint, "POST", "200").inc()
        latency.labels(endpoint).observe(s)

    def families(text: bytes) -> dict:
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text.decode())
            if family.name.startswith("sensor_http")
            for sample in family.samples
            if not sample.name.endswith("_created")
        }

    expected = families(generate_latest(registry))
    # Nothing reaches the shared values before a flush (a scrape flushes first).
    assert not any(
        v for k, v in families(generate_latest(metrics.registry)).items() if k in expected
    )
    assert families(metrics.exposition()[0]) == expected


@pytest.fixture
def multiprocess(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """prometheus_client's multiprocess mode in this process, as under gunicorn: real files."""
    from prometheus_client import values

    directory = tmp_path / "prometheus"
    directory.mkdir()
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(directory))
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())
    return directory


def test_an_empty_metrics_directory_setting_means_none_and_writes_no_files(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`PROMETHEUS_MULTIPROC_DIR=` (set, empty: a compose file's unset variable) is no directory
    to the service; prometheus_client took it for one and wrote its files into the working
    directory, which a scrape of this process then never read."""
    from prometheus_client import values

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", "")
    monkeypatch.setattr(values, "ValueClass", values.MultiProcessValue())  # its choice at import
    monkeypatch.chdir(tmp_path)
    client = create_app(settings).test_client()
    assert client.post("/classify", json={"temperature": 47.5, "vibration": 2.3}).status_code == 200
    found = samples(client)
    assert (
        found[
            (
                "sensor_http_requests_total",
                (("endpoint", "/classify"), ("method", "POST"), ("status", "200")),
            )
        ]
        == 1
    )
    assert not list(tmp_path.glob("*.db"))


def _spoil(directory: Path) -> None:
    """No directory can be made there again: it is a file (root writes even into a chmod 0)."""
    shutil.rmtree(directory)
    directory.write_text("not a directory")


def _answers_and_says_so(client: FlaskClient, caplog: pytest.LogCaptureFixture, said: str) -> None:
    single = {"temperature": 47.5, "vibration": 2.3}
    v2 = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [47.5, 2.3]}]}
    for _ in range(3):
        assert client.post("/classify", json=single).status_code == 200
        assert client.post("/classify", json={"readings": [single] * 3}).status_code == 200
        assert client.post("/v2/models/sensor-classifier/infer", json=v2).status_code == 200
    assert client.get("/readyz").status_code == 200
    errors = [r for r in caplog.records if "cannot write metrics" in r.getMessage()]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    for path in ("/metrics", "/drift"):
        response = client.get(path)
        assert response.status_code == 503, response.text
        assert said in response.json["error"]["message"]
    card = client.get("/")
    assert card.status_code == 200 and said in card.text


def test_a_metrics_directory_gone_after_start_costs_metrics_not_answers(
    settings: Settings, multiprocess: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Counts handed over at every request: the first hand-over of the latency histogram opens
    # its file inside a request (it answered 500).
    app = create_app(settings.model_copy(update={"metrics_flush_interval": 1e-9}))
    _spoil(multiprocess)
    _answers_and_says_so(app.test_client(), caplog, "metrics cannot be read")


def test_a_worker_started_without_a_metrics_directory_serves_and_says_so(
    settings: Settings, multiprocess: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _spoil(multiprocess)
    app = create_app(settings)  # it raised, and gunicorn then stopped the whole service
    _answers_and_says_so(app.test_client(), caplog, "started unable to export its metrics")


def test_a_dead_workers_counts_are_folded_into_the_archive_but_never_under_a_scrape(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    from prometheus_client.mmap_dict import MmapedDict

    from service import metric_files

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))

    def write(name: str, values: dict[str, float]) -> None:
        file = MmapedDict(str(tmp_path / name))
        for key, value in values.items():
            file.write_value(key, value, 0.0)
        file.close()

    def read(name: str) -> dict[str, float]:
        path = str(tmp_path / name)
        return {k: v for k, v, _, _ in MmapedDict.read_all_values_from_file(path)}

    write("counter_archive.db", {"a": 2.0, "b": 1.0})
    write("counter_41.db", {"a": 3.0, "c": 0.5})
    write("histogram_41.db", {"h": 7.0})
    write("gauge_livemax_41.db", {"g": 1.0})
    with metric_files.reading():
        folding = threading.Thread(target=metric_files.process_gone, args=(41,))
        folding.start()
        folding.join(0.3)
        assert folding.is_alive(), "folded while a scrape was reading"
        assert (tmp_path / "counter_41.db").exists()
    folding.join(10)
    assert not folding.is_alive()
    assert read("counter_archive.db") == {"a": 5.0, "b": 1.0, "c": 0.5}
    assert read("histogram_archive.db") == {"h": 7.0}
    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        "counter_archive.db",
        "histogram_archive.db",
    ]


def test_every_page_of_every_metric_file_has_its_blocks(
    settings: Settings, multiprocess: Path
) -> None:
    """A page without blocks is a SIGBUS on a full filesystem (test_faults): every file the
    metrics write, and every size it grows to, is backed before it is mapped."""
    from service import metric_files

    client = create_app(settings).test_client()
    assert client.post("/classify", json={"temperature": 47.5, "vibration": 2.3}).status_code == 200
    assert client.get("/metrics").status_code == 200
    grown = metric_files.BackedMmapedDict(str(multiprocess / "counter_grown.db"))
    for i in range(1000):  # about 150 KiB of keys: the file doubles twice
        grown.write_value(f"key number {i:04d} " + "x" * 100, float(i), 0.0)
    grown.close()
    files = {p.name: p.stat() for p in multiprocess.glob("*.db")}
    assert {"counter_grown.db", f"counter_{os.getpid()}.db", f"histogram_{os.getpid()}.db"} <= set(
        files
    )
    assert files["counter_grown.db"].st_size == 4 * metric_files.FIRST_BYTES
    unbacked = {name: (s.st_blocks * 512, s.st_size) for name, s in files.items()}
    assert all(blocks >= size for blocks, size in unbacked.values()), unbacked
