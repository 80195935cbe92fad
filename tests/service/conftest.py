"""Fixtures for the service tests: a tiny real artifact, settings pointing at it, an app, a client."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

import model
from service.app import create_app
from service.settings import Settings
from tests.support.artifacts import write_artifact


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A tiny artifact with the default features (temperature °C, vibration mm/s)."""
    return write_artifact(tmp_path / "models" / "model.npz", seed=0)


@pytest.fixture
def classifier(artifact: Path) -> model.Classifier:
    """The artifact as the model package loads it: the oracle the answers are checked against."""
    return model.load(artifact)


@pytest.fixture
def settings(artifact: Path) -> Settings:
    # Checking the file on every request makes reload tests deterministic.
    return Settings(model_path=artifact, reload_interval=0)


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()
