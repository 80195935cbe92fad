"""Open Inference Protocol (KServe V2) endpoints."""

from __future__ import annotations

import numpy as np
import pytest
from flask.testing import FlaskClient

import model
from service import inference_protocol as kserve
from service.app import create_app
from service.settings import Settings

NAME = "sensor-classifier"
INFER = f"/v2/models/{NAME}/infer"


def infer_body(data: list, shape: list[int], datatype: str = "FP32", **extra: object) -> dict:
    return {
        "inputs": [{"name": "readings", "shape": shape, "datatype": datatype, "data": data}],
        **extra,
    }


def test_health_and_metadata(client: FlaskClient, classifier: model.Classifier) -> None:
    assert client.get("/v2/health/live").get_json() == {"live": True}
    assert client.get("/v2/health/ready").get_json() == {"ready": True}
    assert client.get(f"/v2/models/{NAME}/ready").get_json() == {"name": NAME, "ready": True}
    metadata = kserve.ModelMetadata.model_validate(client.get(f"/v2/models/{NAME}").get_json())
    assert metadata.name == NAME
    assert metadata.versions == [classifier.version]
    assert [(t.name, t.datatype, t.shape) for t in metadata.inputs] == [
        ("readings", "FP32", [-1, 2])
    ]
    assert [(t.name, t.datatype, t.shape) for t in metadata.outputs] == [
        ("probabilities", "FP32", [-1, 3]),
        ("label", "BYTES", [-1]),
        ("novel", "BOOL", [-1]),
    ]


@pytest.mark.parametrize("nested", [False, True])
def test_infer_returns_probabilities_and_labels(
    client: FlaskClient, classifier: model.Classifier, nested: bool
) -> None:
    X = np.array([[47.5, 2.3], [80.0, 10.0], [150.0, 30.0]])
    data = X.tolist() if nested else X.ravel().tolist()
    response = client.post(INFER, json=infer_body(data, [3, 2], id="req-1"))
    assert response.status_code == 200, response.get_data(as_text=True)
    answer = kserve.InferenceResponse.model_validate(response.get_json())
    assert answer.model_name == NAME and answer.model_version == classifier.version
    assert answer.id == "req-1"
    outputs = {o.name: o for o in answer.outputs}
    P = classifier.predict_proba(X)
    assert outputs["probabilities"].shape == [3, 3] and outputs["probabilities"].datatype == "FP32"
    np.testing.assert_allclose(
        np.array(outputs["probabilities"].data).reshape(3, 3), P.astype(np.float32), atol=1e-6
    )
    assert outputs["label"].shape == [3] and outputs["label"].datatype == "BYTES"
    assert outputs["label"].data == [classifier.classes[i] for i in P.argmax(axis=1)]
    assert outputs["novel"].shape == [3] and outputs["novel"].datatype == "BOOL"
    assert outputs["novel"].data == (classifier.novelty(X) > 1.0).tolist()
    assert outputs["novel"].data == [False, False, True]  # the last is far outside


def test_infer_honours_requested_outputs(client: FlaskClient) -> None:
    body = infer_body([47.5, 2.3], [1, 2], outputs=[{"name": "label"}])
    outputs = client.post(INFER, json=body).get_json()["outputs"]
    assert [o["name"] for o in outputs] == ["label"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (infer_body([1.0, 2.0, 3.0], [1, 3]), "inputs.0.shape.1"),
        (infer_body([1.0, 2.0, 3.0], [2, 2]), "3 values for shape"),
        (infer_body([[1.0, 2.0], [3.0, 4.0]], [3, 2]), "2 rows for shape"),
        (infer_body([[1.0, 2.0], [3.0]], [2, 2]), "inputs.0.data"),
        (infer_body([1.0, 2.0], [1, 2], datatype="INT64"), "inputs.0.datatype"),
        (infer_body(["a", "b"], [1, 2]), "inputs.0.data"),
        (infer_body([True, 1.0], [1, 2]), "inputs.0.data"),
        (infer_body([1.0, 2.0], [0, 2]), "inputs.0.shape.0"),
        (infer_body([1.0, 2.0], [1, 2, 1]), "inputs.0.shape"),
        ({"inputs": []}, "inputs"),
        ({"inputs": [{"name": "x"}]}, "inputs.0"),
        ({"inputs": infer_body([1.0, 2.0], [1, 2])["inputs"] * 2}, "inputs"),
        (infer_body([1.0, 2.0], [1, 2], outputs=[{"name": "logits"}]), "outputs.0.name"),
        ({**infer_body([1.0, 2.0], [1, 2]), "surprise": 1}, "surprise"),
    ],
)
def test_invalid_inference_requests_are_400_with_a_v2_error(
    client: FlaskClient, body: dict, fragment: str
) -> None:
    response = client.post(INFER, json=body)
    assert response.status_code == 400, response.get_data(as_text=True)
    error = kserve.V2Error.model_validate(response.get_json()).error
    assert fragment in error


def test_non_finite_and_malformed_inputs_are_400(client: FlaskClient) -> None:
    for raw in (
        b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [NaN, 1]}]}',
        b'{"inputs": [{"name": "x", "shape": [1, 2]',
        b"[" * 1000 + b"]" * 1000,
    ):
        response = client.post(INFER, data=raw, content_type="application/json")
        assert response.status_code == 400
        assert set(response.get_json()) == {"error"}


def test_too_many_rows_is_400(artifact) -> None:
    client = create_app(Settings(model_path=artifact, max_batch=2)).test_client()
    response = client.post(INFER, json=infer_body([1.0] * 6, [3, 2]))
    assert response.status_code == 400 and "inputs.0.shape.0" in response.get_json()["error"]
    assert client.post(INFER, json=infer_body([1.0] * 4, [2, 2])).status_code == 200


def test_unknown_model_is_404_in_the_v2_shape(client: FlaskClient) -> None:
    for response in (
        client.get("/v2/models/other"),
        client.get("/v2/models/other/ready"),
        client.post("/v2/models/other/infer", json=infer_body([1.0, 2.0], [1, 2])),
        client.get("/v2/models/a/b/c"),
    ):
        assert response.status_code == 404
        assert set(response.get_json()) == {"error"}


def test_v2_body_errors_keep_the_v2_shape(client: FlaskClient) -> None:
    response = client.post(INFER, data=b"x", content_type="text/plain")
    assert response.status_code == 415 and set(response.get_json()) == {"error"}


def test_model_name_comes_from_settings(artifact) -> None:
    client = create_app(Settings(model_path=artifact, model_name="pump-a")).test_client()
    assert client.get("/v2/models/pump-a/ready").status_code == 200
    assert client.get(f"/v2/models/{NAME}/ready").status_code == 404
