"""The request schema comes from the loaded model: other features and classes need no code change."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

import model
from service.app import create_app
from service.runtime import ModelLoadError
from service.settings import Settings
from tests.support.artifacts import write_artifact

HYDRAULIC = {
    "features": ("oil_temp", "vib_rms"),
    "units": ("°C", "mm/s"),
    "classes": ("optimal", "slightly_reduced", "severely_reduced", "near_failure"),
    "feature_min": (35.0, 0.5),
    "feature_max": (60.0, 0.7),
}


def client_for(path: Path, **settings: object):
    return create_app(Settings(model_path=path, **settings)).test_client()


def test_a_model_with_other_features_and_classes_is_served_as_is(tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "hydraulic.npz", **HYDRAULIC)
    classifier = model.load(path)
    client = client_for(path)

    answer = client.post("/classify", json={"oil_temp": 45.0, "vib_rms": 0.6}).get_json()
    assert list(answer["probabilities"]) == list(HYDRAULIC["classes"])
    np.testing.assert_allclose(
        list(answer["probabilities"].values()),
        classifier.predict_proba([[45.0, 0.6]])[0],
        atol=1e-6,
    )
    assert answer["label"] in HYDRAULIC["classes"]

    # The default model's fields are now unknown, and the new ones required.
    response = client.post("/classify", json={"temperature": 45.0, "vibration": 0.6})
    assert response.status_code == 422
    locs = [d["loc"] for d in response.get_json()["error"]["details"]]
    assert ["temperature"] in locs and ["oil_temp"] in locs

    batch = client.post(
        "/classify", json={"readings": [{"oil_temp": 40.0, "vib_rms": 0.55}] * 3}
    ).get_json()
    assert len(batch["results"]) == 3

    info = client.get("/model").get_json()
    assert [f["name"] for f in info["features"]] == list(HYDRAULIC["features"])
    assert info["classes"] == list(HYDRAULIC["classes"])
    doc = client.get("/openapi.json").get_json()
    reading = doc["components"]["schemas"]["Reading"]
    assert set(reading["required"]) == {"oil_temp", "vib_rms"}
    label = doc["components"]["schemas"]["Classification"]["properties"]["label"]
    assert label["enum"] == list(HYDRAULIC["classes"])


def test_the_limits_the_artifact_states_are_enforced_and_nothing_else(tmp_path: Path) -> None:
    # The artifact says what each feature allows; the service knows no feature names.
    client = client_for(write_artifact(tmp_path / "m.npz", **HYDRAULIC))
    assert client.post("/classify", json={"oil_temp": -500.0, "vib_rms": -1.0}).status_code == 200
    limited = write_artifact(
        tmp_path / "p.npz",
        features=("pressure", "speed"),
        classes=("ok", "bad"),
        limits=[(0.0, 10.0), (-math.inf, 3000.0)],
    )
    client = client_for(limited)
    for reading, status in (
        ({"pressure": 0.0, "speed": -1e9}, 200),
        ({"pressure": 10.0, "speed": 3000.0}, 200),
        ({"pressure": -1e-9, "speed": 1.0}, 422),
        ({"pressure": 10.5, "speed": 1.0}, 422),
        ({"pressure": 1.0, "speed": 3000.5}, 422),
    ):
        response = client.post("/classify", json=reading)
        assert response.status_code == status, (reading, response.get_json())
        batch = client.post("/classify", json={"readings": [reading, reading]})
        assert batch.status_code == status, (reading, batch.get_json())
    info = client.get("/model").get_json()["features"]
    assert [(f["lower_limit"], f["upper_limit"]) for f in info] == [(0.0, 10.0), (None, 3000.0)]
    schema = client.get("/openapi.json").get_json()["components"]["schemas"]["Reading"]
    assert schema["properties"]["pressure"]["minimum"] == 0.0
    assert schema["properties"]["pressure"]["maximum"] == 10.0
    assert "minimum" not in schema["properties"]["speed"]


def test_the_default_models_limits_are_physical(tmp_path: Path) -> None:
    default = client_for(write_artifact(tmp_path / "d.npz"))
    assert (
        default.post("/classify", json={"temperature": -273.15, "vibration": 0}).status_code == 200
    )
    assert default.post("/classify", json={"temperature": -274, "vibration": 0}).status_code == 422
    assert (
        default.post("/classify", json={"temperature": 20, "vibration": -1e-9}).status_code == 422
    )


def test_feature_names_need_not_be_python_identifiers(tmp_path: Path) -> None:
    features = ("vib-rms", "model_config", "class", "température 1")
    path = write_artifact(tmp_path / "odd.npz", features=features, classes=("a", "b"))
    client = client_for(path)
    reading = dict.fromkeys(features, 0.5)
    assert client.post("/classify", json=reading).status_code == 200
    assert client.post("/classify", json={**reading, "f0": 1.0}).status_code == 422


def test_a_single_feature_model(tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "one.npz", features=("pressure",), classes=("ok", "bad"))
    client = client_for(path)
    answer = client.post("/classify", json={"pressure": 0.3}).get_json()
    assert set(answer["probabilities"]) == {"ok", "bad"}
    batch = client.post("/classify", json={"readings": [{"pressure": 0.1}, {"pressure": 0.9}]})
    assert len(batch.get_json()["results"]) == 2


@pytest.mark.parametrize("reserved", ["id", "readings"])
def test_a_feature_named_like_a_request_key_is_refused(tmp_path: Path, reserved: str) -> None:
    path = write_artifact(tmp_path / "bad.npz", features=(reserved, "x"), classes=("a", "b"))
    with pytest.raises(ModelLoadError, match=f"'{reserved}' is reserved"):
        create_app(Settings(model_path=path))
