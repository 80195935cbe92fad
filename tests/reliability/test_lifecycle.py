"""Graceful shutdown and slow clients on a real gunicorn: accepted requests finish, stalls stay local."""

from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest

from tests.support import rawhttp
from tests.support.loadgen import BackgroundLoad
from tests.support.server import Server

pytestmark = pytest.mark.e2e

BODY = orjson.dumps({"temperature": 55.0, "vibration": 4.0})
JSON = {"Content-Type": "application/json"}


def _half_sent_requests(server: Server, count: int) -> list[socket.socket]:
    """``count`` connections whose request head and half their body have been sent."""
    data = rawhttp.request_bytes("POST", "/classify", BODY)
    cut = len(data) - len(BODY) // 2
    sockets = []
    for _ in range(count):
        sock = rawhttp.connect(server.host, server.port, timeout=30)
        sock.sendall(data[:cut])
        sockets.append(sock)
    return sockets


def test_sigterm_lets_accepted_requests_finish_and_answers_no_5xx(
    server_factory: Callable[..., Server], artifact: Path
) -> None:
    server = server_factory(artifact, workers=2)
    version = httpx.get(f"{server.url}/model", timeout=5).json()["model_version"]
    in_flight = _half_sent_requests(server, 10)
    with BackgroundLoad(
        server.host,
        server.port,
        connections=8,
        seconds=30,
        max_requests=100_000,
        body_for=lambda _: BODY,
        requests_per_connection=50,
    ) as load:
        time.sleep(1.0)  # the half-sent requests are read by now: accepted, waiting for bodies
        terminated_at = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        # The rest of each body arrives after SIGTERM: the request must still be answered.
        rest = rawhttp.request_bytes("POST", "/classify", BODY)[-(len(BODY) // 2) :]
        deadline = time.monotonic() + 20
        answers = []
        for sock in in_flight:
            with sock:
                sock.sendall(rest)
                answers.append(rawhttp.read_response(sock, deadline))
        exit_code = server.process.wait(timeout=30)
    result = load.join()

    assert [a.status for a in answers] == [200] * len(in_flight), [a.body for a in answers]
    assert all(a.json()["model_version"] == version for a in answers)  # type: ignore[index]
    assert exit_code == 0, server.stderr()[-2000:]
    before = [o for o in result.outcomes if o.sent < terminated_at]
    assert len(before) > 100, "too little load before SIGTERM"
    assert all(o.status == 200 for o in before), [o.error for o in before if o.status != 200][:5]
    # After SIGTERM a request that got an answer got a 200. Others found no one accepting:
    # refused, or reset when gunicorn closed its listen queue (connections the kernel had
    # queued but no worker had accepted). Never a 5xx, never a timeout.
    statuses = {o.status for o in result.outcomes}
    assert statuses <= {200, None}, statuses
    kinds = {o.error.partition("(")[0] for o in result.errors if o.error}
    assert kinds <= {"ConnectionRefusedError", "ConnectionResetError"}, kinds
    assert "Shutting down: Master" in server.stderr()


def test_stalled_clients_do_not_keep_others_waiting_and_are_cut_off(
    server_factory: Callable[..., Server], artifact: Path
) -> None:
    """One worker, so that no second worker can hide a blocked one."""
    request_timeout, keepalive = 2.0, 3
    server = server_factory(
        artifact,
        workers=1,
        env={"SENSOR_REQUEST_TIMEOUT": str(request_timeout), "SENSOR_KEEPALIVE": str(keepalive)},
    )
    head_only = []
    for _ in range(20):
        # Half a request head, then nothing: a gateway on a bad link.
        sock = rawhttp.connect(server.host, server.port, timeout=30)
        sock.sendall(b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Ty")
        head_only.append(sock)
    half_body = _half_sent_requests(server, 20)
    # Clients that send a big batch and never read the answer (about 3 MB each).
    batch = b'{"readings":[' + b",".join([BODY] * 10_000) + b"]}"
    non_readers = []
    for _ in range(5):
        sock = rawhttp.connect(server.host, server.port, timeout=30)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(rawhttp.request_bytes("POST", "/classify", batch))
        non_readers.append(sock)
    stalled_at = time.monotonic()
    time.sleep(0.3)

    latencies = []
    with httpx.Client(base_url=server.url, timeout=10) as client:
        for _ in range(20):
            started = time.monotonic()
            response = client.post(
                "/classify", content=BODY, headers={"Content-Type": "application/json"}
            )
            latencies.append(time.monotonic() - started)
            assert response.status_code == 200, response.text
    # Generous for a loaded 2-core machine; a worker blocked by a stalled client would take
    # the stall's full length (seconds) instead.
    assert max(latencies) < 1.0, latencies

    # Every stall is bounded: a stalled body gets its 408, a stalled head is closed.
    deadline = stalled_at + keepalive + request_timeout + 10
    for sock in half_body:
        with sock:
            assert rawhttp.read_response(sock, deadline).status == 408
    for sock in head_only:
        with sock:
            sock.settimeout(max(0.1, deadline - time.monotonic()))
            assert sock.recv(65536) == b"", "a stalled request head got an answer"
    assert time.monotonic() - stalled_at < keepalive + request_timeout + 5
    for sock in non_readers:
        sock.close()
    assert (
        httpx.post(
            f"{server.url}/classify", content=BODY, headers={"Content-Type": "application/json"}
        ).status_code
        == 200
    )


def test_a_keep_alive_connection_ends_after_its_requests_saying_so(
    server_factory: Callable[..., Server], artifact: Path
) -> None:
    server = server_factory(artifact, workers=1, env={"SENSOR_KEEPALIVE_REQUESTS": "3"})
    deadline = time.monotonic() + 20
    with rawhttp.connect(server.host, server.port, timeout=10) as sock:
        answers = []
        for _ in range(3):
            sock.sendall(rawhttp.request_bytes("POST", "/classify", BODY))
            answers.append(rawhttp.read_response(sock, deadline))
        closed = sock.recv(1)
    assert [a.status for a in answers] == [200, 200, 200], [a.body for a in answers]
    connection = [a.headers.get("connection") for a in answers]
    assert connection == ["keep-alive", "keep-alive", "close"], connection
    assert closed == b"", "the server kept the connection open after saying it would close"


def test_requests_pipelined_past_a_connections_last_one_cost_no_answer(
    server_factory: Callable[..., Server], artifact: Path
) -> None:
    """The worker closed with the pipelined requests unread, so the kernel reset the
    connection: the client read `ConnectionResetError`, at times in place of the last answer.
    Now it reads every answer the connection carried, then the end of the stream, and sends
    the rest again on a new connection (RFC 9112, 9.3.2 and 9.6)."""
    server = server_factory(artifact, workers=1, env={"SENSOR_KEEPALIVE_REQUESTS": "3"})
    for _ in range(5):
        deadline = time.monotonic() + 20
        with rawhttp.connect(server.host, server.port, timeout=10) as sock:
            # About 40 KB: more than the worker has read ahead when it closes.
            sock.sendall(rawhttp.request_bytes("POST", "/classify", BODY) * 400)
            answers = [rawhttp.read_response(sock, deadline) for _ in range(3)]
            closed = sock.recv(1)
        assert [a.status for a in answers] == [200, 200, 200], [a.body for a in answers]
        assert answers[-1].headers.get("connection") == "close"
        assert closed == b""


def test_keep_alive_connections_spread_over_the_workers_again_after_one_is_replaced(
    server_factory: Callable[..., Server], artifact: Path
) -> None:
    """Clients that never close their connections, as a plant's gateway: when a worker is
    replaced they all reconnect to the other one, and must not stay there."""
    server = server_factory(
        artifact,
        workers=2,
        # Renewed after 100 requests rather than the default 1,000: this load is slower than wrk's.
        env={"SENSOR_KEEPALIVE_REQUESTS": "100", "SENSOR_MAX_REQUESTS": "0"},
    )
    first = server.worker_pids()
    # Connections that are never closed by the client (no requests_per_connection).
    load_settings = {"connections": 8, "seconds": 30, "max_requests": 1_000_000}
    with BackgroundLoad(server.host, server.port, body_for=lambda _: BODY, **load_settings) as load:
        time.sleep(1.0)
        os.kill(min(first), signal.SIGTERM)
        deadline = time.monotonic() + 15
        while server.stderr().count("serving model") < 3:
            assert time.monotonic() < deadline, server.stderr()[-2000:]
            time.sleep(0.05)
        replaced_at = time.monotonic()
        time.sleep(5.0)
    result = load.join()

    assert not result.errors, [o.error for o in result.errors[:5]]
    workers = server.worker_pids()
    assert len(workers) == 2 and workers != first
    late = [o.tag for o in result.outcomes if o.sent > replaced_at + 2.0]
    assert len(late) > 500, f"only {len(late)} requests in the last 3 s"
    by_tag = server.workers_by_tag(late, timeout=10)
    assert all(tag in by_tag for tag in late), "the access log lacks answered requests"
    shares = {pid: sum(by_tag[tag] == pid for tag in late) / len(late) for pid in workers}
    # An even spread is 0.5 each; before connections were renewed the replacement got none.
    assert min(shares.values()) > 0.25, shares


CLASSIFIED = (
    "sensor_http_requests_total",
    (("endpoint", "/classify"), ("method", "POST"), ("status", "200")),
)


def _classified(server: Server, expected: float) -> float:
    """The /classify count of /metrics once it reaches ``expected`` (or after the flush bound)."""
    from prometheus_client.parser import text_string_to_metric_families

    deadline = time.monotonic() + 5.0
    while True:
        text = httpx.get(f"{server.url}/metrics", timeout=10).text
        count = sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if (s.name, tuple(sorted(s.labels.items()))) == CLASSIFIED
        )
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


@pytest.mark.parametrize("directories", ["from the environment", "made by gunicorn.conf.py"])
def test_a_binary_upgrade_keeps_every_count_in_one_metrics_directory(
    server_factory: Callable[..., Server], artifact: Path, tmp_path: Path, directories: str
) -> None:
    """gunicorn's USR2 starts a new master beside the old one, which then gets TERM: the old
    workers' counts must survive both (the new master wiped them), and both masters must share
    one metrics directory and one state directory (gunicorn re-executes with the environment it
    started with, which lacks the directories gunicorn.conf.py made)."""
    import psutil

    env = {}
    if directories == "made by gunicorn.conf.py":
        (tmp_path / "tmp").mkdir()
        env = {
            "PROMETHEUS_MULTIPROC_DIR": "",
            "SENSOR_STATE_DIR": "",
            "TMPDIR": str(tmp_path / "tmp"),
        }
    server = server_factory(artifact, workers=1, env=env)
    with server.client() as client:
        for _ in range(30):
            assert client.post("/classify", content=BODY, headers=JSON).status_code == 200
    assert _classified(server, 30) == 30

    old_workers = server.worker_pids()
    os.kill(server.pid, signal.SIGUSR2)
    deadline = time.monotonic() + 30
    new_master = None
    try:
        while server.stderr().count("serving model ") < 2:
            assert time.monotonic() < deadline, server.stderr()[-3000:]
            time.sleep(0.05)
        (new_master,) = (psutil.Process(pid) for pid in server.worker_pids() - old_workers)
        assert new_master.children(), "the new master has no worker"
        # Both generations serve now, each counting into the same files.
        assert _classified(server, 30) == 30, "the new master wiped the old workers' counts"
        os.kill(server.pid, signal.SIGTERM)  # the old master leaves, as after any upgrade
        assert server.process.wait(timeout=30) == 0
        with server.client() as client:
            for _ in range(20):
                assert client.post("/classify", content=BODY, headers=JSON).status_code == 200
        assert _classified(server, 50) == 50
        if directories == "made by gunicorn.conf.py":
            made = sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "tmp").iterdir())
            assert made == ["sensor-prometheus", "sensor-state"], made
    finally:
        if new_master is not None and new_master.is_running():
            new_master.terminate()
            new_master.wait(timeout=30)
