"""The one launcher of real servers on 127.0.0.1, for the tests and the benchmark alike.

    with running_server(model_path, workers=2) as server:
        httpx.get(f"{server.url}/readyz")

`launch` starts any command (the service's gunicorn, the image's CMD, the bench's peers) in its
own session with its output in log files; `start_server` runs the repository's gunicorn command
on a free port with its own metrics directory and waits until every worker serves. A server is
always stopped: SIGTERM to its process group, then SIGKILL if it outlives the bound.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx
import orjson
import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO_ROOT / "gunicorn.conf.py"
SERVICE_TARGET = "service.wsgi:app"
STARTUP_SECONDS = 60.0
STOP_SECONDS = 30.0
# The rollout promise: within this long of an atomic replace of the artifact, every worker answers
# with the new model (each checks the file at moments of its own, so not all at the same instant).
ROLLOUT_SECONDS = 2.0
HOST = "127.0.0.1"
# Settings of the developer's shell would leak into a server that must run on its own.
FOREIGN_SETTINGS = ("SENSOR_", "PROMETHEUS_", "GUNICORN_")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A running server: where it listens, its process (group leader), and where it logs."""

    port: int
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    host: str = HOST

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        """Everything the server wrote to stdout so far (gunicorn's JSON access log)."""
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far (gunicorn's and the app's log lines)."""
        return self.stderr_path.read_text(errors="replace")

    def access_records(self) -> list[dict[str, object]]:
        """The JSON access-log lines written so far; their `pid` says which worker answered."""
        records = []
        for line in self.stdout_path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                record = orjson.loads(line)
                if isinstance(record, dict) and record.get("type") == "access":
                    records.append(record)
        return records

    def workers_by_tag(self, tags: Iterable[str] = (), timeout: float = 10.0) -> dict[str, int]:
        """The worker that answered each load-generator request, by its tag (User-Agent).

        The access log is written after each response: waits up to ``timeout`` seconds until it
        has every one of ``tags``, then answers with what it has.
        """
        wanted = set(tags)
        deadline = time.monotonic() + timeout
        while True:
            pids = {
                str(record["user_agent"]): int(record["pid"])  # type: ignore[call-overload]
                for record in self.access_records()
                if str(record.get("user_agent", "")).startswith("load-")
            }
            if wanted <= pids.keys() or time.monotonic() > deadline:
                return pids
            time.sleep(0.1)

    def worker_pids(self) -> set[int]:
        """PIDs of the server's current worker processes (children of the master)."""
        try:
            return {child.pid for child in psutil.Process(self.pid).children()}
        except psutil.NoSuchProcess:
            return set()

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) of the server and every process under it, reaped ones too."""
        try:
            processes = [psutil.Process(self.pid)]
            processes += processes[0].children(recursive=True)
        except psutil.NoSuchProcess:
            return None
        total = 0.0
        for process in processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                times = process.cpu_times()
                total += times.user + times.system + times.children_user + times.children_system
        return total

    def client(self, **kwargs: object) -> httpx.Client:
        """An httpx client for this server (the caller closes it)."""
        kwargs.setdefault("timeout", 10.0)
        return httpx.Client(base_url=self.url, **kwargs)  # type: ignore[arg-type]

    def stop(self, timeout: float = STOP_SECONDS) -> int:
        """SIGTERM (graceful), then SIGKILL after ``timeout``; returns the exit status."""
        return stop_process(self.process, timeout)


def stop_process(process: subprocess.Popen[bytes], timeout: float = STOP_SECONDS) -> int:
    """Stop a server started in its own session; bounded, never leaves it running."""
    if process.poll() is None:
        signal_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait(timeout=timeout)
    return process.returncode


def signal_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def clean_environment(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any service settings, plus ``env``."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(FOREIGN_SETTINGS)}
    return base | dict(env or {})


def launch(command: Sequence[str], *, port: int, env: Mapping[str, str], log_dir: Path) -> Server:
    """Start ``command`` from the repository root in its own session, logging to ``log_dir``."""
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / "stdout.log", log_dir / "stderr.log"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            list(command),
            cwd=REPO_ROOT,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
            # Its own process group: stopping it can never leave a worker behind.
            start_new_session=True,
        )
    return Server(port=port, process=process, stdout_path=stdout_path, stderr_path=stderr_path)


def gunicorn_command(target: str = SERVICE_TARGET) -> list[str]:
    """The repository's own way to serve ``target``: gunicorn with gunicorn.conf.py.

    The `gunicorn` script, as the image and `make run` start it: a binary upgrade (USR2)
    re-executes the master's argv, and that of `python -m gunicorn` is gunicorn's __main__.py,
    whose directory then shadows the standard library (`http` is gunicorn's own package).
    """
    return [str(Path(sys.executable).with_name("gunicorn")), "-c", str(GUNICORN_CONF), target]


def start_server(
    model_path: Path,
    *,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    wait_ready: bool = True,
    startup_seconds: float = STARTUP_SECONDS,
) -> Server:
    """The service's gunicorn on a free port; by default waits until every worker serves."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="sensor-server-"))
    metrics_dir = log_dir / "prometheus"
    metrics_dir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    settings = {
        "SENSOR_MODEL_PATH": str(model_path),
        "SENSOR_BIND": f"{HOST}:{port}",
        "SENSOR_WORKERS": str(workers),
        "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        # The last good model beside the logs, one directory per server: gunicorn.conf.py would
        # make one in /tmp for every server and leave it there.
        "SENSOR_STATE_DIR": tempfile.mkdtemp(prefix="state-", dir=log_dir),
        "PYTHONUNBUFFERED": "1",
    }
    server = launch(
        gunicorn_command(),
        port=port,
        env=clean_environment(settings | dict(env or {})),
        log_dir=log_dir,
    )
    if wait_ready:
        try:
            wait_until_ready(server, startup_seconds, workers)
        except BaseException:
            server.stop()
            raise
    return server


def wait_until_ready(server: Server, seconds: float = STARTUP_SECONDS, workers: int = 1) -> None:
    """Until ``workers`` workers run, each has loaded its model, and `/readyz` answers 200.

    Each worker logs "serving model <version>" once it has loaded the artifact; waiting for all
    of them matters to tests that replace the artifact right after start-up.
    """
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {server.process.returncode}:\n{server.stderr()[-4000:]}"
                )
            booted = server.stderr().count("serving model ") >= workers
            if booted and len(server.worker_pids()) >= workers:
                with contextlib.suppress(httpx.TransportError):
                    if client.get("/readyz").status_code == 200:
                        return
            time.sleep(0.05)
    raise RuntimeError(f"/readyz not 200 within {seconds:g}s:\n{server.stderr()[-4000:]}")


@contextlib.contextmanager
def running_server(
    model_path: Path,
    *,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
) -> Iterator[Server]:
    """A ready server for the duration of the ``with`` block, always stopped afterwards."""
    server = start_server(model_path, workers=workers, env=env, log_dir=log_dir)
    try:
        yield server
    finally:
        server.stop()
