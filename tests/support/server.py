"""Start the real service (gunicorn with the repository's gunicorn.conf.py) on 127.0.0.1 for tests.

    with running_server(model_path, workers=2) as server:
        httpx.get(f"{server.url}/readyz")

The server gets a free port, its own metrics directory and log files, and is always stopped:
SIGTERM to its process group, then SIGKILL if it outlives the bound.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
GUNICORN_CONF = REPO_ROOT / "gunicorn.conf.py"
STARTUP_SECONDS = 60.0
STOP_SECONDS = 30.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Server:
    """A running gunicorn: where it listens, its process, and where it logs."""

    url: str
    port: int
    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path
    metrics_dir: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def stdout(self) -> str:
        """Everything the server wrote to stdout so far (the JSON access log)."""
        return self.stdout_path.read_text(errors="replace")

    def stderr(self) -> str:
        """Everything the server wrote to stderr so far (gunicorn's and the app's log)."""
        return self.stderr_path.read_text(errors="replace")

    def worker_pids(self) -> list[int]:
        """PIDs of gunicorn's current worker processes (children of the master)."""
        try:
            return [child.pid for child in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

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
        with_group(process, signal.SIGTERM)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with_group(process, signal.SIGKILL)
            process.wait(timeout=timeout)
    return process.returncode


def with_group(process: subprocess.Popen[bytes], sig: int) -> None:
    with suppress(ProcessLookupError):
        os.killpg(process.pid, sig)


def server_environment(
    model_path: Path, port: int, workers: int, metrics_dir: Path, env: Mapping[str, str] | None
) -> dict[str, str]:
    """The developer's environment minus any service settings, plus this server's."""
    base = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("SENSOR_", "PROMETHEUS_", "GUNICORN_"))
    }
    base.update(
        {
            "SENSOR_MODEL_PATH": str(model_path),
            "SENSOR_BIND": f"127.0.0.1:{port}",
            "SENSOR_WORKERS": str(workers),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
            "PYTHONUNBUFFERED": "1",
        }
    )
    base.update(env or {})
    return base


def start_server(
    model_path: Path,
    *,
    workers: int = 2,
    env: Mapping[str, str] | None = None,
    log_dir: Path | None = None,
    wait_ready: bool = True,
    startup_seconds: float = STARTUP_SECONDS,
) -> Server:
    """Start gunicorn and (by default) wait until `/readyz` answers 200; the caller stops it."""
    log_dir = Path(log_dir or tempfile.mkdtemp(prefix="sensor-server-"))
    log_dir.mkdir(parents=True, exist_ok=True)
    metrics_dir = Path(tempfile.mkdtemp(prefix="prometheus-", dir=log_dir))
    port = free_port()
    stdout_path, stderr_path = log_dir / "stdout.log", log_dir / "stderr.log"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", str(GUNICORN_CONF), "service.wsgi:app"],
            cwd=REPO_ROOT,
            env=server_environment(model_path, port, workers, metrics_dir, env),
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
    server = Server(
        url=f"http://127.0.0.1:{port}",
        port=port,
        process=process,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        metrics_dir=metrics_dir,
    )
    if wait_ready:
        try:
            wait_until_ready(server, startup_seconds, workers)
        except BaseException:
            server.stop()
            raise
    return server


def wait_until_ready(server: Server, seconds: float = STARTUP_SECONDS, workers: int = 1) -> None:
    """Until every worker has loaded its model and `/readyz` answers 200; RuntimeError otherwise.

    Each worker logs "serving model <version>" once it has loaded the artifact; waiting for all
    of them matters to tests that replace the artifact right after start-up.
    """
    deadline = time.monotonic() + seconds
    with httpx.Client(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError(
                    f"server exited with {server.process.returncode}:\n{server.stderr()}"
                )
            if server.stderr().count("serving model ") >= workers:
                try:
                    if client.get("/readyz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
            time.sleep(0.05)
    raise RuntimeError(f"/readyz not 200 within {seconds:g}s:\n{server.stderr()}")


@contextmanager
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
