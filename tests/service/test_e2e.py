"""End to end: the real gunicorn with gunicorn.conf.py on 127.0.0.1, real HTTP clients, real files."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.artifacts import write_artifact
from tests.support.server import Server, running_server, start_server

pytestmark = pytest.mark.e2e

READING = {"temperature": 47.5, "vibration": 2.3}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One two-worker server shared by the read-only tests of this module."""
    root = tmp_path_factory.mktemp("served")
    artifact = write_artifact(root / "model.npz", seed=3)
    with running_server(artifact, workers=2, log_dir=root / "logs") as server:
        yield server


def fresh_post(server: Server, path: str, payload: object) -> httpx.Response:
    """One request on its own connection, so that requests spread over the workers."""
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        return client.post(path, json=payload)


def raw_exchange(port: int, data: bytes, timeout: float = 10.0) -> bytes:
    """Send ``data`` on a new connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_all(sock)


def read_all(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def read_response(sock: socket.socket) -> bytes:
    """One whole response (headers and Content-Length bytes of body), without waiting for close."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


def metric_samples(server: Server) -> dict[tuple[str, tuple], float]:
    text = httpx.get(f"{server.url}/metrics", timeout=10.0).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_classify_single_and_batch_over_http(served: Server) -> None:
    with served.client() as client:
        single = client.post("/classify", json={**READING, "id": "a"})
        assert single.status_code == 200 and single.headers["content-type"] == "application/json"
        assert single.json()["id"] == "a"
        batch = client.post("/classify", json={"readings": [READING] * 100})
        results = batch.json()["results"]
        assert len(results) == 100 and results[0]["label"] == single.json()["label"]
        assert client.get("/readyz").status_code == 200
        assert client.get("/openapi.json").json()["openapi"].startswith("3.1")


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b'{"temperature": NaN, "vibration": 1}', 422),
        (b'{"temperature": 1, "vibration"', 400),
        (b"\xff\xfe\xfd", 400),
        (b"[" * 1000 + b"]" * 1000, 400),
    ],
)
def test_bad_bodies_get_the_envelope_over_http(
    served: Server, request_bytes: bytes, status: int
) -> None:
    response = httpx.post(
        f"{served.url}/classify",
        content=request_bytes,
        headers={"Content-Type": "application/json"},
        timeout=10.0,
    )
    assert response.status_code == status
    assert response.json()["error"]["status"] == status


def test_not_json_unknown_path_and_wrong_method(served: Server) -> None:
    with served.client() as client:
        assert (
            client.post(
                "/classify", content=b"x", headers={"Content-Type": "text/plain"}
            ).status_code
            == 415
        )
        assert client.get("/nowhere").json()["error"]["status"] == 404
        assert client.put("/classify", json=READING).status_code == 405


def test_chunked_body(served: Server) -> None:
    def body() -> Iterator[bytes]:
        yield b'{"readings": ['
        yield b'{"temperature": 40, "vibration": 1},'
        yield b'{"temperature": 41, "vibration": 2}]}'

    response = httpx.post(
        f"{served.url}/classify",
        content=body(),
        headers={"Content-Type": "application/json"},
        timeout=10.0,
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["results"]) == 2


# Each worker hands its request counts over at most SENSOR_METRICS_FLUSH_INTERVAL (1 s) after
# counting them; 3 s leaves room for a loaded machine.
FLUSH_BOUND_SECONDS = 3.0


def settled_count(server: Server, key: tuple) -> float:
    """The count once every worker has flushed what earlier tests sent it."""
    deadline = time.monotonic() + 3 * FLUSH_BOUND_SECONDS
    previous = metric_samples(server).get(key, 0.0)
    while True:
        time.sleep(FLUSH_BOUND_SECONDS / 2)
        current = metric_samples(server).get(key, 0.0)
        if current == previous:
            return current
        assert time.monotonic() < deadline, "request counts never settled"
        previous = current


def test_metrics_count_every_worker(served: Server) -> None:
    key = (
        "sensor_http_requests_total",
        (("endpoint", "/classify"), ("method", "POST"), ("status", "200")),
    )
    before = settled_count(served, key)
    pids: set[int] = set()
    sent = 0
    # Fresh connections until both workers have answered (bounded).
    while sent < 40 or (len(pids) < 2 and sent < 400):
        response = fresh_post(served, "/classify", READING)
        assert response.status_code == 200
        sent += 1
        if sent % 10 == 0:
            pids = {r["pid"] for r in access_records(served) if r["path"] == "/classify"}
    assert len(pids) == 2, "requests never reached both workers"
    done = time.monotonic()
    # Every scrape, whichever worker answers it, sums the files of all workers: within the
    # flush interval it sees every worker's requests, and then nothing more.
    while metric_samples(served).get(key, 0.0) - before < sent:
        assert time.monotonic() - done < FLUSH_BOUND_SECONDS, "request counts not flushed in time"
        time.sleep(0.05)
    for _ in range(5):
        assert metric_samples(served)[key] - before == sent


def access_records(server: Server) -> list[dict]:
    return [json.loads(line) for line in server.stdout().splitlines() if line.startswith("{")]


def test_access_log_is_json_lines_on_stdout(served: Server) -> None:
    fresh_post(served, "/classify", {"temperature": "x", "vibration": 1})
    records = access_records(served)
    assert records and all(r["type"] == "access" for r in records)
    assert any(r["path"] == "/classify" and r["status"] == 422 for r in records)
    assert all(isinstance(r["duration_ms"], float) for r in records)


def test_workers_are_replaced_after_max_requests_without_failures(tmp_path: Path) -> None:
    """And every worker's exit, recycled or at SIGTERM, is clean: no traceback in the log."""
    artifact = write_artifact(tmp_path / "model.npz")
    env = {"SENSOR_MAX_REQUESTS": "25", "SENSOR_MAX_REQUESTS_JITTER": "5"}
    with running_server(artifact, workers=2, env=env, log_dir=tmp_path / "logs") as server:
        first = set(server.worker_pids())
        with server.client() as client:
            for _ in range(150):
                assert client.post("/classify", json=READING).status_code == 200
        assert "Autorestarting worker" in server.stderr()
        deadline = time.monotonic() + 15.0
        while not set(server.worker_pids()) - first and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set(server.worker_pids()) - first, "no replacement worker appeared"
        assert fresh_post(server, "/classify", READING).status_code == 200
    log = server.stderr()
    # The first workers: replaced, or stopped with the server (a replacement still booting is
    # killed outright and says nothing).
    assert log.count("Worker exiting") >= 2, log[-2000:]
    # gevent/gevent#2148: without `worker_exit` each exit wrote "Exception ignored in:
    # _removeHandlerRef ... TypeError" during interpreter shutdown.
    assert "Traceback" not in log and "Exception ignored" not in log, log[-3000:]


@pytest.mark.parametrize("content", [None, b"garbage", b""])
def test_startup_with_a_missing_or_corrupt_model_fails_with_one_clear_line(
    tmp_path: Path, content: bytes | None
) -> None:
    artifact = tmp_path / "models" / "model.npz"
    if content is not None:
        artifact.parent.mkdir(parents=True)
        artifact.write_bytes(content)
    server = start_server(artifact, workers=2, log_dir=tmp_path / "logs", wait_ready=False)
    try:
        assert server.process.wait(timeout=60) != 0
    finally:
        server.stop()
    log = server.stderr()
    lines = [line for line in log.splitlines() if "cannot start" in line]
    assert len(lines) == 1, log
    assert str(artifact) in lines[0] and "python -m training" in lines[0]
    assert ("does not exist" if content is None else "artifact") in lines[0]
    assert "Traceback" not in log


def test_replaced_workers_leave_their_counts_in_one_archive_and_none_is_lost(
    tmp_path: Path,
) -> None:
    """prometheus_client leaves every dead worker's files behind, and every scrape reads them
    all; the master folds them into one archive as it reaps the worker."""
    artifact = write_artifact(tmp_path / "model.npz")
    env = {"SENSOR_MAX_REQUESTS": "15", "SENSOR_MAX_REQUESTS_JITTER": "0"}
    key = (
        "sensor_http_requests_total",
        (("endpoint", "/classify"), ("method", "POST"), ("status", "200")),
    )
    with running_server(artifact, workers=2, env=env, log_dir=tmp_path / "logs") as server:
        seen = [0.0]
        for sent in range(1, 301):
            assert fresh_post(server, "/classify", READING).status_code == 200
            if sent % 10 == 0:
                # Never a count going backwards (Prometheus: a reset), whatever is folded.
                count = metric_samples(server).get(key, 0.0)
                assert count >= seen[-1], seen
                seen.append(count)
        replaced = server.stderr().count("Autorestarting worker")
        assert replaced >= 10, replaced
        done = time.monotonic()
        while metric_samples(server).get(key, 0.0) < 300:
            assert time.monotonic() - done < FLUSH_BOUND_SECONDS, "request counts not flushed"
            time.sleep(0.05)
        samples = metric_samples(server)
        assert samples[key] == 300
        latency = ("sensor_http_request_duration_seconds_count", (("endpoint", "/classify"),))
        assert samples[latency] == 300
        directory = tmp_path / "logs" / "prometheus"
        for kind in ("counter", "histogram"):
            files = sorted(p.name for p in directory.glob(f"{kind}_*.db"))
            # The archive, and the live workers' files: two, or up to four while both are
            # replaced (an old one not yet reaped beside its successor).
            assert f"{kind}_archive.db" in files and len(files) <= 1 + 4, files
