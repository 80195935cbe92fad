"""Faults and hostile load on a real gunicorn: the last good model survives worker restarts,
memory and CPU stay bounded, slow clients cost a connection slot only, no worker is lost.

Every attack runs beside legitimate clients on their own connections, whose answers are the
measure: none may fail or be reset, and their p99 latency stays under a second. Each test is
bounded in time; the measurements go to the end-of-run summary.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import statistics
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import psutil
import pytest

from service.body import parse_json
from tests.support.artifacts import write_artifact
from tests.support.server import Server

pytestmark = pytest.mark.e2e

READING = {"temperature": 47.5, "vibration": 2.3}
BODY = orjson.dumps(READING)
JSON = {"Content-Type": "application/json"}
MAX_BODY = 1024 * 1024  # the default SENSOR_MAX_BODY_BYTES


def maximal_batch(limit: int = MAX_BODY) -> bytes:
    """A well-formed batch just under ``limit`` bytes: far more readings than SENSOR_MAX_BATCH."""
    one = orjson.dumps(READING)
    n = (limit - 20) // (len(one) + 1)
    return b'{"readings":[' + b",".join([one] * n) + b"]}"


class Legitimate:
    """Well-behaved clients in threads, until stopped: each on its own keep-alive connection,
    or (``fresh``) on a new connection per request, as many a plant's clients do."""

    def __init__(self, url: str, clients: int = 2, fresh: bool = False) -> None:
        self.fresh = fresh
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(url,), daemon=True) for _ in range(clients)
        ]

    def _run(self, url: str) -> None:
        limits = httpx.Limits(max_keepalive_connections=0) if self.fresh else None
        with httpx.Client(
            base_url=url, timeout=10.0, **({"limits": limits} if limits else {})
        ) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post("/classify", content=BODY, headers=JSON)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                    continue
                self.latencies.append(time.monotonic() - started)
                if response.status_code != 200:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")
                time.sleep(0.01)

    def __enter__(self) -> Legitimate:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=20)

    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, round(0.99 * len(ordered)) - 1)] if ordered else float("nan")

    def check(self, what: str) -> str:
        """Assert the promise; returns the line for the summary."""
        assert len(self.latencies) >= 50, f"{what}: only {len(self.latencies)} answers"
        assert not self.failures, f"{what}: {len(self.failures)} failed: {self.failures[:3]}"
        assert self.p99() < 1.0, f"{what}: p99 {self.p99() * 1000:.0f} ms"
        return (
            f"{len(self.latencies)} legitimate answers, none failed, p50"
            f" {statistics.median(self.latencies) * 1000:.1f} ms, p99 {self.p99() * 1000:.1f} ms"
        )


class PeakMemory:
    """Samples the resident memory of the server's whole process tree until stopped."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def total(self) -> int:
        master = psutil.Process(self.server.pid)
        total = 0
        for process in [master, *master.children(recursive=True)]:
            with contextlib.suppress(psutil.NoSuchProcess):
                total += process.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(psutil.NoSuchProcess):
                self.peak = max(self.peak, self.total())
            time.sleep(0.02)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def hostile_bodies(server: Server, body: bytes, clients: int, seconds: float) -> dict[str, int]:
    """``clients`` connections sending ``body`` again and again for ``seconds``; answers by status."""
    head = (
        f"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()
    statuses: dict[str, int] = {}

    async def attacker(stop_at: float) -> None:
        while time.monotonic() < stop_at:
            writer = None
            try:
                reader, writer = await asyncio.open_connection(server.host, server.port)
                writer.write(head + body)
                await asyncio.wait_for(writer.drain(), 10)
                line = await asyncio.wait_for(reader.readline(), 10)
                status = line[9:12].decode() or "closed"
            except (OSError, TimeoutError) as exc:
                status = type(exc).__name__
            finally:
                if writer is not None:
                    writer.close()
            statuses[status] = statuses.get(status, 0) + 1

    async def main() -> None:
        stop_at = time.monotonic() + seconds
        await asyncio.gather(*(attacker(stop_at) for _ in range(clients)))

    asyncio.run(main())
    return statuses


def worker_cpu_seconds(server: Server) -> float:
    total = 0.0
    for pid in server.worker_pids():
        with contextlib.suppress(psutil.NoSuchProcess):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def bodies_beside_legitimate_clients(
    server: Server, body: bytes, clients: int, seconds: float, report: Callable[[str], None]
) -> dict[str, int]:
    """``hostile_bodies`` while legitimate clients are served: their promise, bounded memory, no
    worker lost (asserted); the attackers' answers by status."""
    workers = server.worker_pids()
    with PeakMemory(server) as memory:
        idle = memory.total()
        with Legitimate(server.url) as legitimate:
            statuses = hostile_bodies(server, body, clients=clients, seconds=seconds)
    what = f"{clients} clients x {len(body):,} bytes for {seconds:g} s"
    line = legitimate.check(f"during {what}")
    report(
        f"hostile bodies: {what} ({statuses}); service RSS {idle / 2**20:.0f} MiB idle,"
        f" {memory.peak / 2**20:.0f} MiB peak; {line}"
    )
    assert memory.peak < 400 * 10**6, f"peak RSS {memory.peak / 2**20:.0f} MiB"
    assert server.worker_pids() == workers, "a worker was lost"
    assert "WORKER TIMEOUT" not in server.stderr()
    return statuses


def test_256_clients_sending_maximal_bodies_keep_memory_bounded_and_nobody_waits(
    server_factory: Callable[..., Server], artifact: Path, report: Callable[[str], None]
) -> None:
    server = server_factory(artifact, workers=2)
    statuses = bodies_beside_legitimate_clients(server, maximal_batch(), 256, 8.0, report)
    assert set(statuses) <= {"422", "503", "closed", "ConnectionResetError", "BrokenPipeError"}
    assert statuses.get("422", 0) > 0, statuses  # bodies were parsed and refused, not only shed


def test_64_clients_sending_oversized_bodies_get_413s_and_nobody_waits(
    server_factory: Callable[..., Server], artifact: Path, report: Callable[[str], None]
) -> None:
    """Each is answered 413 before its body is read; the worker then reads and discards the rest
    while it lingers (`gunicorn_support.linger`), taking turns with everyone else."""
    server = server_factory(artifact, workers=2)
    statuses = bodies_beside_legitimate_clients(server, b" " * (8 * MAX_BODY), 64, 6.0, report)
    # A client still sending when the 2 s of lingering are over is reset, as before.
    assert set(statuses) <= {"413", "ConnectionResetError", "BrokenPipeError"}, statuses
    assert statuses.get("413", 0) > 0, statuses


def test_a_refused_maximal_body_costs_about_one_parse(
    server_factory: Callable[..., Server], artifact: Path, report: Callable[[str], None]
) -> None:
    server = server_factory(artifact, workers=1)
    body = maximal_batch()
    started = time.process_time()
    for _ in range(5):
        parse_json(body, 32)
    parse_seconds = (time.process_time() - started) / 5
    n = 20
    with httpx.Client(base_url=server.url, timeout=30) as client:
        client.post("/classify", content=body, headers=JSON)  # warm
        before = worker_cpu_seconds(server)
        for _ in range(n):
            response = client.post("/classify", content=body, headers=JSON)
            assert response.status_code == 422
            assert "SENSOR_MAX_BATCH" in response.json()["error"]["message"]
        per_request = (worker_cpu_seconds(server) - before) / n
    report(
        f"refused maximal body ({len(body):,} bytes): {per_request * 1000:.1f} ms of worker CPU"
        f" each; parsing it alone takes {parse_seconds * 1000:.1f} ms"
    )
    # A parse, plus reading the bytes and answering: never a validation of every reading.
    assert per_request < 3 * parse_seconds + 0.005, (per_request, parse_seconds)


def slow_clients(server: Server, count: int, seconds: float) -> tuple[int, int]:
    """``count`` connections trickling a request head (half) or body (half), a line a second."""
    sockets: list[tuple[socket.socket, bytes]] = []
    for i in range(count):
        sock = socket.create_connection((server.host, server.port), timeout=10)
        sock.setblocking(False)
        if i % 2:
            sock.sendall(b"POST /classify HTTP/1.1\r\n")
            sockets.append((sock, b"X-Trickle: 1\r\n"))
        else:
            sock.sendall(
                b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100000\r\n\r\n["
            )
            sockets.append((sock, b"1,"))
    cut = 0
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        time.sleep(1.0)
        for sock, line in sockets:
            with contextlib.suppress(BlockingIOError):
                try:
                    sock.send(line)
                except OSError:
                    cut += 1
    for sock, _ in sockets:
        sock.close()
    return len(sockets), cut


def test_3000_slow_clients_cost_connection_slots_not_waits(
    server_factory: Callable[..., Server], artifact: Path, report: Callable[[str], None]
) -> None:
    server = server_factory(artifact, workers=2)
    opened: list[tuple[int, int]] = []
    # New connections: they must be accepted, beside thousands that hold theirs.
    with Legitimate(server.url, fresh=True) as legitimate:
        attack = threading.Thread(
            target=lambda: opened.append(slow_clients(server, 3000, seconds=8.0)), daemon=True
        )
        attack.start()
        attack.join(timeout=60)
    assert opened, "the slow clients never finished"
    line = legitimate.check("beside 3,000 slow clients")
    report(f"slow clients: {opened[0][0]} trickling heads and bodies for 8 s; {line}")


def test_a_request_head_has_one_deadline_however_slowly_it_trickles(
    server_factory: Callable[..., Server], artifact: Path
) -> None:
    keepalive = 2
    server = server_factory(artifact, workers=1, env={"SENSOR_KEEPALIVE": str(keepalive)})
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        started = time.monotonic()
        sock.sendall(b"POST /classify HTTP/1.1\r\n")
        closed_after = None
        while time.monotonic() - started < keepalive + 6:
            time.sleep(0.5)  # a header line every half second: never idle for long
            try:
                sock.sendall(b"X-Trickle: 1\r\n")
                sock.settimeout(0.01)
                if sock.recv(1) == b"":
                    closed_after = time.monotonic() - started
                    break
            except TimeoutError:
                continue
            except OSError:
                closed_after = time.monotonic() - started
                break
    assert closed_after is not None, "the trickling head was never cut off"
    assert keepalive - 0.5 <= closed_after < keepalive + 2, closed_after


@pytest.fixture
def served_twice(server_factory: Callable[..., Server], tmp_path: Path) -> Iterator[Server]:
    yield server_factory(write_artifact(tmp_path / "models" / "model.npz", seed=4), workers=2)


def _version(server: Server) -> str:
    return str(httpx.get(f"{server.url}/model", timeout=5).json()["model_version"])


def _replace_worker(server: Server, sig: int) -> int:
    """Send ``sig`` to one worker and wait until its replacement serves; the new PID."""
    before = server.worker_pids()
    victim = min(before)
    os.kill(victim, sig)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        new = server.worker_pids() - before
        for pid in new:
            booted = [line for line in server.stderr().splitlines() if f"[{pid}]" in line]
            if any("serving model" in x or "serving the last good model" in x for x in booted):
                return pid
        time.sleep(0.05)
    raise AssertionError(f"worker {victim} was not replaced:\n{server.stderr()[-3000:]}")


DAMAGE: dict[str, Callable[[Path], None]] = {
    "deleted": lambda path: path.unlink(),
    "corrupt": lambda path: path.write_bytes(b"PK\x03\x04 half an artifact"),
    "a directory": lambda path: (path.unlink(), path.mkdir()),  # type: ignore[func-returns-value]
    "a symlink loop": lambda path: (path.unlink(), path.symlink_to(path.name)),  # type: ignore[func-returns-value]
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_artifact_and_a_worker_restart_leave_the_service_up(
    served_twice: Server, damage: str
) -> None:
    server = served_twice
    path = Path(httpx.get(f"{server.url}/model", timeout=5).json()["artifact"])
    served = _version(server)
    DAMAGE[damage](path)
    time.sleep(1.0)  # every worker has looked at it, refused it and kept its model
    new_worker = _replace_worker(server, signal.SIGKILL)  # as the OOM killer does
    assert server.process.poll() is None, "the master stopped"
    assert new_worker in server.worker_pids()
    # Fresh connections reach both workers: all answer with the same, last good model.
    answered = set()
    for _ in range(40):
        response = httpx.post(f"{server.url}/classify", content=BODY, headers=JSON, timeout=5)
        assert response.status_code == 200, response.text
        answered.add(response.json()["model_version"])
    assert answered == {served}
    ready = httpx.get(f"{server.url}/readyz", timeout=5)
    assert ready.status_code == 200 and "last good model" in ready.json()["detail"]
    info = httpx.get(f"{server.url}/model", timeout=5).json()
    assert str(path) in info["artifact_problem"]
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    assert "sensor_model_artifact_problem 1.0" in metrics
    log = server.stderr()
    assert f"serving the last good model {served}" in log
    # A graceful restart (max_requests recycling) too.
    _replace_worker(server, signal.SIGTERM)
    assert _version(server) == served and server.process.poll() is None


def test_sigkill_of_a_worker_under_load_fails_only_its_requests_in_flight(
    server_factory: Callable[..., Server], artifact: Path, report: Callable[[str], None]
) -> None:
    from tests.support.loadgen import BackgroundLoad

    server = server_factory(artifact, workers=2)
    connections = 8
    with BackgroundLoad(
        server.host,
        server.port,
        connections=connections,
        seconds=30,
        max_requests=200_000,
        body_for=lambda _: BODY,
        requests_per_connection=50,
    ) as load:
        time.sleep(2.0)
        killed_at = time.monotonic()
        _replace_worker(server, signal.SIGKILL)
        time.sleep(3.0)
    result = load.join()
    failed = result.errors
    after = [o for o in result.outcomes if o.sent > killed_at + 2.0]
    report(
        f"SIGKILL of a worker under load: {len(failed)} of {len(result.outcomes)} requests failed"
        f" (at most the {connections} connections in flight), then {len(after)} answered"
    )
    # Only requests in flight on the killed worker: at most one per connection.
    assert len(failed) <= connections, [o.error for o in failed[:5]]
    assert all(o.sent < killed_at + 1.0 for o in failed), [(o.sent - killed_at) for o in failed]
    assert after and all(o.error is None for o in after)


def test_a_metrics_directory_that_is_gone_costs_metrics_not_answers_nor_the_service(
    server_factory: Callable[..., Server], artifact: Path, tmp_path: Path
) -> None:
    server = server_factory(artifact, workers=2)
    metrics_dir = tmp_path / "server-0" / "prometheus"  # start_server's, beside the logs
    assert any(metrics_dir.glob("*.db"))
    for db in metrics_dir.iterdir():
        db.unlink()
    metrics_dir.rmdir()
    metrics_dir.write_text("not a directory")  # none can be made there again
    # A worker restarted now cannot write its metrics; it failed to boot and gunicorn then
    # stopped the whole service.
    _replace_worker(server, signal.SIGKILL)
    assert server.process.poll() is None, server.stderr()[-3000:]
    for _ in range(40):  # fresh connections: both workers answer
        response = httpx.post(f"{server.url}/classify", content=BODY, headers=JSON, timeout=5)
        assert response.status_code == 200, response.text
    scrape = httpx.get(f"{server.url}/metrics", timeout=5)
    assert scrape.status_code == 503, scrape.text
    assert "PROMETHEUS_MULTIPROC_DIR" in scrape.json()["error"]["message"]
    assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200
    assert "cannot write metrics to PROMETHEUS_MULTIPROC_DIR" in server.stderr()
    # Once the directory is back, restarted workers (HUP) export their metrics again.
    metrics_dir.unlink()
    metrics_dir.mkdir()
    booted = server.stderr().count("serving model ")
    os.kill(server.pid, signal.SIGHUP)
    deadline = time.monotonic() + 30
    while server.stderr().count("serving model ") < booted + 2 or len(server.worker_pids()) > 2:
        assert time.monotonic() < deadline, server.stderr()[-3000:]
        time.sleep(0.05)
    for _ in range(10):
        scrape = httpx.get(f"{server.url}/metrics", timeout=5)
        assert scrape.status_code == 200, scrape.text
    assert "sensor_model_info{" in scrape.text


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A real tmpfs of 256 KiB, as a metrics emptyDir (medium: Memory) with a size limit."""
    import subprocess

    path = tmp_path / "tmpfs"
    path.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(path)]
    if os.geteuid() != 0 or subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("mounting a tmpfs needs root (and the right to mount)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def fill(path: Path) -> None:
    """Leave the filesystem of ``path`` no room at all."""
    with contextlib.suppress(OSError), (path / "filler").open("wb") as filler:
        while True:
            filler.write(b"\0" * 4096)
            filler.flush()


def test_a_full_metrics_filesystem_costs_metrics_not_answers(
    server_factory: Callable[..., Server], artifact: Path, tmpfs: Path
) -> None:
    fill(tmpfs)
    # Each worker was killed by SIGBUS at its first write to a page of its metric files that
    # the filesystem could not back, and gunicorn started another, again and again.
    server = server_factory(artifact, workers=2, env={"PROMETHEUS_MULTIPROC_DIR": str(tmpfs)})
    workers = server.worker_pids()
    for _ in range(40):  # fresh connections: both workers answer
        response = httpx.post(f"{server.url}/classify", content=BODY, headers=JSON, timeout=5)
        assert response.status_code == 200, response.text
    time.sleep(1.5)  # a flush interval: every worker has handed its counts over, or tried
    assert server.worker_pids() == workers, server.stderr()[-3000:]
    scrape = httpx.get(f"{server.url}/metrics", timeout=5)
    assert scrape.status_code == 503 and "No space left" in scrape.text, scrape.text
    server.stop()


def test_archiving_a_dead_worker_on_a_full_filesystem_leaves_its_counts_and_the_master_up(
    tmpfs: Path,
) -> None:
    """The master folds a reaped worker's files into the archive (`service.metric_files`): with
    no room for the archive it must keep the files as they are, not die of SIGBUS."""
    import subprocess
    import sys

    from prometheus_client.mmap_dict import MmapedDict

    dead = MmapedDict(str(tmpfs / "counter_41.db"))
    dead.write_value("a key", 3.0, 0.0)
    dead.close()
    fill(tmpfs)
    fold = "from service.metric_files import process_gone; process_gone(41)"
    done = subprocess.run(
        [sys.executable, "-c", fold],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmpfs)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "could not archive the metrics of worker 41" in done.stderr
    values = MmapedDict.read_all_values_from_file(str(tmpfs / "counter_41.db"))
    assert [(key, value) for key, value, _, _ in values] == [("a key", 3.0)]


# A worker whose metrics filesystem fills up: it serves model after model (each rollout adds its
# version's series) until its files must grow past the blocks they were given.
_OUTGROW = """
from service.metrics import Metrics
from tests.support.artifacts import build_classifier
from tests.reliability.test_faults import fill
from pathlib import Path
import os
metrics = Metrics()
for seed in range(40):  # each adds about 8.6 KB of keys: the 7th outgrows the first 64 KiB
    if seed == 4:
        fill(Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    metrics.serving(build_classifier(seed=seed))
    metrics.flush()
print("served 40 models")
"""


def test_metric_files_outgrowing_their_blocks_on_a_full_filesystem_cost_metrics_not_the_worker(
    tmpfs: Path,
) -> None:
    """prometheus_client doubles a full metric file with `truncate` and maps the new pages: on a
    full filesystem the first write to them killed the worker with SIGBUS (exit -7)."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _OUTGROW],
        env={**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmpfs)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    assert "served" in done.stdout
    assert done.stderr.count("cannot write metrics") == 1, done.stderr[-2000:]
    assert "No space left on device" in done.stderr
    # Every file left is whole: a scrape reads it.
    from prometheus_client.mmap_dict import MmapedDict

    for file in tmpfs.glob("*.db"):
        assert file.stat().st_blocks * 512 >= file.stat().st_size, f"{file.name} has unbacked pages"
        list(MmapedDict.read_all_values_from_file(str(file)))
