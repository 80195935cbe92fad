"""Starting the image's command as a real gunicorn on 127.0.0.1 and checking that it serves."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import model
from tests.support.artifacts import middle_reading

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent
STARTUP_SECONDS = 60.0
STOP_SECONDS = 15.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def host_environment() -> dict[str, str]:
    """This process's environment without the service's settings, the venv first on PATH."""
    env = {
        key: value
        for key, value in os.environ.items()
        # Settings from the developer's shell would not exist in the container.
        if not key.startswith(("SENSOR_", "PROMETHEUS_", "GUNICORN_"))
    }
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    return env


def wait_until_ready(client: httpx.Client, process: subprocess.Popen[bytes], log: Path) -> None:
    """Poll /readyz until 200; fail with the server's log if it exits or takes too long."""
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            if client.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"/readyz not 200 within {STARTUP_SECONDS}s:\n{log.read_text()}")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group until it exits, SIGKILL if it outlives the bound.

    SIGTERM is repeated because a gunicorn worker that is still booting (before it installs its
    own handlers) swallows the first one in the handler it inherited from the arbiter, and
    would otherwise only go at the arbiter's graceful timeout.
    """
    deadline = time.monotonic() + STOP_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=STOP_SECONDS)


@contextlib.contextmanager
def running_server(argv: list[str], env: dict[str, str], log: Path) -> Iterator[httpx.Client]:
    """``argv`` started from the repository root (the image's /app); a client once /readyz is 200.

    The server gets its own session, so stopping it reaches gunicorn's workers too.
    """
    port = env["SENSOR_BIND"].rpartition(":")[2]
    with log.open("wb") as output:
        process = subprocess.Popen(
            argv,
            cwd=REPO_ROOT,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10.0) as client:
            wait_until_ready(client, process, log)
            yield client
    finally:
        stop(process)


def check_classify(client: httpx.Client, artifact: Path) -> None:
    """/readyz, /healthz and one /classify answered by ``artifact``, checked against `model`."""
    classifier = model.load(artifact)
    assert client.get("/readyz").status_code == 200
    assert client.get("/healthz").status_code == 200
    reading = middle_reading(classifier)
    response = client.post("/classify", json=reading)
    assert response.status_code == 200, response.text
    body = response.json()
    X = np.array([list(reading.values())])
    assert body["model_version"] == classifier.version
    assert body["label"] == classifier.classes[int(classifier.predict(X)[0])]
    got = [body["probabilities"][name] for name in classifier.classes]
    np.testing.assert_allclose(got, classifier.predict_proba(X)[0], rtol=1e-5, atol=1e-6)
