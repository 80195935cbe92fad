"""Starting the image's command as a real gunicorn on 127.0.0.1 and checking that it serves."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

import model
from tests.support.artifacts import middle_reading
from tests.support.server import (
    STOP_SECONDS,
    Server,
    stop_process,
    wait_until_ready,
    with_group,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


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


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group until it exits, SIGKILL if it outlives the bound.

    SIGTERM is repeated because a gunicorn gevent worker that is still booting (monkey-patching,
    before it installs its own handlers) swallows the first one in the handler it inherited from
    the arbiter, and would otherwise only go at the arbiter's graceful timeout.
    """
    deadline = time.monotonic() + STOP_SECONDS
    while process.poll() is None and time.monotonic() < deadline:
        with_group(process, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=1.0)
    stop_process(process, timeout=STOP_SECONDS)


@contextlib.contextmanager
def running_server(
    argv: list[str], env: dict[str, str], log_dir: Path, metrics_dir: Path
) -> Iterator[Server]:
    """``argv`` started from the repository root (the image's /app), once /readyz is 200.

    Unlike `tests.support.server.start_server`, which always runs the repository's own gunicorn
    command, this runs exactly the argv and environment it is given.
    """
    port = int(env["SENSOR_BIND"].rpartition(":")[2])
    log_dir.mkdir(parents=True, exist_ok=True)
    stdout_path, stderr_path = log_dir / "stdout.log", log_dir / "stderr.log"
    with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
        process = subprocess.Popen(
            argv, cwd=REPO_ROOT, env=env, stdout=out, stderr=err, start_new_session=True
        )
    server = Server(
        url=f"http://127.0.0.1:{port}",
        port=port,
        process=process,
        stdout_path=stdout_path,
        stderr_path=stderr_path,
        metrics_dir=metrics_dir,
    )
    try:
        wait_until_ready(server)
        yield server
    finally:
        stop(process)


def check_classify(server: Server, artifact: Path) -> None:
    """/readyz, /healthz and one /classify answered by ``artifact``, checked against `model`."""
    with server.client() as client:
        check_answers(client, artifact)


def check_answers(client: httpx.Client, artifact: Path) -> None:
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
