"""Starting the image's command as a real gunicorn on 127.0.0.1 and checking that it serves."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np

import model
from tests.support.artifacts import middle_reading
from tests.support.server import (
    Server,
    clean_environment,
    launch,
    stop_process,
    wait_until_ready,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def host_environment() -> dict[str, str]:
    """This process's environment without the service's settings, the venv first on PATH."""
    env = clean_environment()
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    return env


@contextlib.contextmanager
def running_server(argv: list[str], env: dict[str, str], log_dir: Path) -> Iterator[Server]:
    """Exactly ``argv`` and ``env`` (the image's CMD and ENV), from the repository root (the
    image's /app), once /readyz is 200; always stopped afterwards."""
    port = int(env["SENSOR_BIND"].rpartition(":")[2])
    server = launch(argv, port=port, env=env, log_dir=log_dir)
    try:
        wait_until_ready(server)
        yield server
    finally:
        stop_process(server.process)


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
