"""`/healthz`, `/readyz` and `/model`."""

from __future__ import annotations

import datetime as dt

import numpy as np
from flask import Flask
from flask.testing import FlaskClient

import model
from service.schemas import Health, ModelInfo


def test_healthz_is_200_while_up(client: FlaskClient, classifier: model.Classifier) -> None:
    response = client.get("/healthz")
    assert response.status_code == 200
    assert Health.model_validate(response.get_json()).status == "ok"


def test_readyz_is_200_with_a_model_that_answers(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.get_json() == {"status": "ok", "model_version": classifier.version}


def test_readyz_is_503_when_the_self_test_prediction_fails(
    app: Flask, client: FlaskClient, monkeypatch
) -> None:
    def broken(self: object, values: object) -> list[float]:
        raise FloatingPointError("simulated fault")

    # A valid artifact cannot produce this; the fault is injected into the model's prediction.
    monkeypatch.setattr(model.Classifier, "predict_proba_one", broken)
    response = client.get("/readyz")
    assert response.status_code == 503
    body = Health.model_validate(response.get_json())
    assert body.status == "unavailable" and "simulated fault" in (body.detail or "")
    assert client.get("/healthz").status_code == 200
    assert client.get("/v2/health/ready").status_code == 503


def test_readyz_is_503_when_the_prediction_is_not_a_distribution(
    app: Flask, client: FlaskClient, monkeypatch
) -> None:
    monkeypatch.setattr(model.Classifier, "predict_proba_one", lambda self, values: [0.7] * 3)
    assert client.get("/readyz").status_code == 503


def test_model_describes_the_loaded_artifact(
    client: FlaskClient, classifier: model.Classifier, settings
) -> None:
    info = client.get("/model").get_json()
    ModelInfo.model_validate(info)
    assert info["model_version"] == classifier.version
    assert info["model_name"] == "sensor-classifier"
    assert info["artifact"] == str(settings.model_path)
    assert info["classes"] == list(classifier.classes)
    assert [f["name"] for f in info["features"]] == list(classifier.features)
    assert [f["unit"] for f in info["features"]] == list(classifier.units)
    np.testing.assert_allclose([f["mean"] for f in info["features"]], classifier.standardizer.mean)
    np.testing.assert_allclose([f["std"] for f in info["features"]], classifier.standardizer.scale)
    np.testing.assert_allclose([f["min"] for f in info["features"]], classifier.feature_min)
    np.testing.assert_allclose([f["max"] for f in info["features"]], classifier.feature_max)
    assert info["calibration_temperature"] == classifier.temperature
    assert info["novelty"] == {
        "method": classifier.novelty_model.method,
        "threshold": classifier.novelty_model.threshold,
        "target_false_alarm_rate": classifier.novelty_model.target_rate,
        "false_alarm_rate": classifier.metadata["metrics"]["test"]["novelty"]["false_alarm_rate"],
    }
    assert [(f["lower_limit"], f["upper_limit"]) for f in info["features"]] == [
        (-273.15, None),
        (0.0, None),
    ]
    assert info["trained_at"] == classifier.metadata["created_at"]
    assert info["metrics"] == classifier.metadata["metrics"]
    assert info["training"]["config"] == classifier.metadata["config"]
    assert info["training"]["data"] == classifier.metadata["data"]
    dt.datetime.fromisoformat(info["loaded_at"])


def test_model_with_unknown_units_and_no_metadata(tmp_path) -> None:
    from service.app import create_app
    from service.settings import Settings
    from tests.support.artifacts import write_artifact

    path = write_artifact(tmp_path / "m.npz", features=("a", "b"), metadata={})
    info = create_app(Settings(model_path=path)).test_client().get("/model").get_json()
    ModelInfo.model_validate(info)
    assert [f["unit"] for f in info["features"]] == [None, None]
    assert info["trained_at"] is None and info["metrics"] == {} and info["training"] == {}
