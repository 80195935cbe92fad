"""The FastAPI comparison answers one reading as the service does, and validates like it."""

from __future__ import annotations

import asyncio
import importlib
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import httpx
import pytest

from service.app import create_app
from service.settings import Settings
from tests.support.artifacts import build_classifier, write_artifact


def post(app: object, reading: dict[str, object]) -> httpx.Response:
    """POST ``reading`` as JSON to the ASGI ``app`` in process (no server, no network)."""

    async def send() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.post("/classify", json=reading)

    return asyncio.run(send())


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    return write_artifact(tmp_path / "model.npz", seed=3)


@pytest.fixture
def fastapi_app(artifact: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModuleType]:
    # The module loads SENSOR_MODEL_PATH when imported, as each uvicorn worker does.
    monkeypatch.setenv("SENSOR_MODEL_PATH", str(artifact))
    sys.modules.pop("bench.fastapi_app", None)
    yield importlib.import_module("bench.fastapi_app")
    sys.modules.pop("bench.fastapi_app", None)


def test_same_answer_as_the_service(fastapi_app: ModuleType, artifact: Path) -> None:
    service = create_app(Settings(model_path=artifact)).test_client()
    for reading in (
        {"temperature": 47.5, "vibration": 2.3},
        {"temperature": 130.0, "vibration": 0.0, "id": "pump-7"},
    ):
        theirs = post(fastapi_app.app, reading)
        ours = service.post("/classify", json=reading)
        assert theirs.status_code == ours.status_code == 200
        assert theirs.json() == ours.get_json()
    assert theirs.json()["in_training_range"] is False
    assert theirs.json()["model_version"] == build_classifier(seed=3).version


@pytest.mark.parametrize(
    "reading",
    [
        {"temperature": 47.5},
        {"temperature": 47.5, "vibration": -1.0},
        {"temperature": -300.0, "vibration": 1.0},
        {"temperature": 47.5, "vibration": 1.0, "pressure": 2.0},
        {"temperature": "hot", "vibration": 1.0},
    ],
)
def test_invalid_readings_are_refused(fastapi_app: ModuleType, reading: dict[str, object]) -> None:
    assert post(fastapi_app.app, reading).status_code == 422
