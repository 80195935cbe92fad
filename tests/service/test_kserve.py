"""Open Inference Protocol (KServe V2) endpoints."""

from __future__ import annotations

import json

import numpy as np
import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

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
        # Each dimension an integer (the protocol's words), not anything that converts to one.
        (infer_body([1.0, 2.0], ["1", 2]), "inputs.0.shape.0"),
        (infer_body([1.0, 2.0], [1.0, 2]), "inputs.0.shape.0"),
        (infer_body([1.0, 2.0], [True, 2]), "inputs.0.shape.0"),
        (infer_body([1.0, 2.0], [1, 2.0]), "inputs.0.shape.1"),
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


def test_one_input_per_feature_is_400_naming_the_one_input_the_model_takes(
    client: FlaskClient,
) -> None:
    """As MLServer's pandas codec sends a table: a tensor per column."""
    columns = [
        {"name": name, "shape": [1], "datatype": "FP32", "data": [value]}
        for name, value in (("temperature", 50.0), ("vibration", 2.0))
    ]
    response = client.post(INFER, json={"inputs": columns})
    assert response.status_code == 400
    error = kserve.V2Error.model_validate(response.get_json()).error
    assert "takes one input, 'readings' (FP32, shape [N, 2]" in error and "not 2" in error


def test_non_finite_and_malformed_inputs_are_400(client: FlaskClient) -> None:
    for raw in (
        b'{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [NaN, 1]}]}',
        b'{"inputs": [{"name": "x", "shape": [1, 2]',
        b"[" * 1000 + b"]" * 1000,
    ):
        response = client.post(INFER, data=raw, content_type="application/json")
        assert response.status_code == 400
        assert set(response.get_json()) == {"error"}


@pytest.mark.parametrize("binary", [False, True])
def test_readings_outside_the_physical_limits_are_400_and_not_counted(
    client: FlaskClient, binary: bool
) -> None:
    # The artifact's limits, as /classify enforces them: temperature >= -273.15, vibration >= 0.
    X = np.array([[47.5, 2.3], [-1000.0, 2.3], [47.5, -5.0]])
    if binary:
        raw = X.astype("<f8").tobytes()
        header = {
            "inputs": [
                {
                    "name": "readings",
                    "shape": [3, 2],
                    "datatype": "FP64",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
        body, headers = binary_body(header, raw)
        response = client.post(INFER, data=body, headers=headers)
    else:
        response = client.post(INFER, json=infer_body(X.ravel().tolist(), [3, 2]))
    assert response.status_code == 400, response.get_data(as_text=True)
    error = kserve.V2Error.model_validate(response.get_json()).error
    assert "row 1" in error and "'temperature'" in error and "-273.15" in error
    metrics = client.get("/metrics").get_data(as_text=True)
    counted = [
        sample.value
        for family in text_string_to_metric_families(metrics)
        for sample in family.samples
        if sample.name == "sensor_readings_classified_total"
    ]
    assert counted and sum(counted) == 0  # nothing of the refused request was classified
    edge = infer_body([-273.15, 0.0], [1, 2])
    assert client.post(INFER, json=edge).status_code == 200


def nested(levels: int) -> dict:
    """An object nesting ``levels`` levels deep: `{"a": {"a": ... {}}}`."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.mark.parametrize("where", ["request", "input", "output"])
def test_parameters_nested_deeper_than_the_limit_are_400(client: FlaskClient, where: str) -> None:
    def body(levels: int) -> dict:
        document = infer_body([47.5, 2.3], [1, 2], outputs=[{"name": "label"}])
        holder = {
            "request": document,
            "input": document["inputs"][0],
            "output": document["outputs"][0],
        }[where]
        holder["parameters"] = nested(levels)
        return document

    # The document is 32 levels deep at most (SENSOR_MAX_JSON_DEPTH's default), as /classify's.
    inside = {"request": 31, "input": 29, "output": 29}[where]
    assert client.post(INFER, json=body(inside)).status_code == 200
    for levels in (inside + 1, 150, 500):
        response = client.post(INFER, json=body(levels))
        assert response.status_code == 400, (levels, response.get_data(as_text=True))
        error = kserve.V2Error.model_validate(response.get_json()).error
        assert "deeper than the limit of 32 levels" in error


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


def binary_body(header: dict, *tensors: bytes) -> tuple[bytes, dict[str, str]]:
    """A binary tensor data request: the JSON header, then the tensors' bytes."""
    head = json.dumps(header).encode()
    return head + b"".join(tensors), {kserve.INFERENCE_HEADER: str(len(head))}


def split_binary(response) -> tuple[dict, bytes]:  # type: ignore[no-untyped-def]
    length = int(response.headers[kserve.INFERENCE_HEADER])
    body = response.get_data()
    return json.loads(body[:length]), body[length:]


def test_server_metadata_lists_only_the_binary_extension(client: FlaskClient) -> None:
    metadata = kserve.ServerMetadata.model_validate(client.get("/v2").get_json())
    assert metadata.name == "sensor-classifier"
    assert metadata.extensions == ["binary_tensor_data"]


def test_a_request_without_content_type_is_json(client: FlaskClient) -> None:
    body = json.dumps(infer_body([47.5, 2.3], [1, 2])).encode()
    response = client.post(INFER, data=body)
    assert "CONTENT_TYPE" not in response.request.environ
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert kserve.INFERENCE_HEADER not in response.headers


@pytest.mark.parametrize("datatype", ["FP32", "FP64"])
def test_binary_inputs_and_outputs(
    client: FlaskClient, classifier: model.Classifier, datatype: str
) -> None:
    X = np.array([[47.5, 2.25], [80.0, 10.0], [150.0, 30.0]])
    raw = X.astype(kserve.INPUT_ELEMENTS[datatype]).tobytes()
    header = {
        "inputs": [
            {
                "name": "readings",
                "shape": [3, 2],
                "datatype": datatype,
                "parameters": {"binary_data_size": len(raw)},
            }
        ],
        "parameters": {"binary_data_output": True},
    }
    body, headers = binary_body(header, raw)
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/octet-stream"
    answer, tail = split_binary(response)
    sizes = [o["parameters"]["binary_data_size"] for o in answer["outputs"]]
    assert [o["name"] for o in answer["outputs"]] == ["probabilities", "label", "novel"]
    assert all("data" not in o for o in answer["outputs"]) and sum(sizes) == len(tail)
    P = np.frombuffer(tail[: sizes[0]], "<f4").reshape(3, 3)
    np.testing.assert_array_equal(P, classifier.predict_proba(X).astype(np.float32))
    labels, rest = [], tail[sizes[0] : sizes[0] + sizes[1]]
    while rest:
        n = int.from_bytes(rest[:4], "little")
        labels.append(rest[4 : 4 + n].decode())
        rest = rest[4 + n :]
    assert labels == [classifier.classes[i] for i in classifier.decide(P.astype(np.float64))]
    assert tail[sizes[0] + sizes[1] :] == bytes([0, 0, 1])


def test_binary_data_per_output_overrides_the_request_default(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    label = classifier.classes[
        int(classifier.decide(classifier.predict_proba(np.array([[47.5, 2.3]])))[0])
    ]
    body = infer_body(
        [47.5, 2.3],
        [1, 2],
        outputs=[{"name": "novel", "parameters": {"binary_data": True}}, {"name": "label"}],
    )
    response = client.post(INFER, json=body)
    answer, tail = split_binary(response)
    assert [o["name"] for o in answer["outputs"]] == ["novel", "label"]
    assert answer["outputs"][0]["parameters"] == {"binary_data_size": 1} and tail == b"\x00"
    assert answer["outputs"][1]["data"] == [label]
    body["parameters"] = {"binary_data_output": True}
    body["outputs"][0]["parameters"]["binary_data"] = False
    answer, tail = split_binary(client.post(INFER, json=body))
    assert answer["outputs"][0]["data"] == [False] and "data" not in answer["outputs"][1]
    assert tail == len(label).to_bytes(4, "little") + label.encode()


def binary_request(shape: list, size: object, **parameters: object) -> dict:
    return {
        "inputs": [
            {
                "name": "readings",
                "shape": shape,
                "datatype": "FP32",
                "parameters": {"binary_data_size": size, **parameters},
            }
        ]
    }


@pytest.mark.parametrize(
    ("header", "tensors", "header_length", "fragment"),
    [
        (binary_request([2, 2], 8), [b"\0" * 8], None, "binary_data_size 8 bytes for shape [2, 2]"),
        (
            binary_request([1, 2], 12),
            [b"\0" * 12],
            None,
            "binary_data_size 12 bytes for shape [1, 2]",
        ),
        (binary_request([1, 2], 8), [b"\0" * 4], None, "4 bytes follow the JSON header"),
        (binary_request([1, 2], 8), [b"\0" * 12], None, "4 bytes of binary data"),
        (binary_request([1, 2], -8), [b"\0" * 8], None, "non-negative integer"),
        (binary_request([1, 2], "8"), [b"\0" * 8], None, "non-negative integer"),
        (binary_request([1, "2"], 6), [b"\0" * 6], None, "whole number of FP32"),
        (
            {
                **binary_request([1, 2], 8),
                "outputs": [{"name": "label", "parameters": {"binary_data": "yes"}}],
            },
            [b"\0" * 8],
            None,
            "binary_data",
        ),
        (infer_body([1.0, 2.0], [1, 2]), [b"\0" * 4], None, "4 bytes of binary data"),
        (infer_body([1.0, 2.0], [1, 2]), [], "x", "invalid Inference-Header-Content-Length"),
        (infer_body([1.0, 2.0], [1, 2]), [], "100000", "the body is only"),
        # More digits than int() converts: refused as too long, not a 500.
        (infer_body([1.0, 2.0], [1, 2]), [], "9" * 5000, "a number of 5000 digits"),
    ],
)
def test_binary_data_that_disagrees_is_400(
    client: FlaskClient,
    header: dict,
    tensors: list[bytes],
    header_length: str | None,
    fragment: str,
) -> None:
    body, headers = binary_body(header, *tensors)
    if header_length is not None:
        headers[kserve.INFERENCE_HEADER] = header_length
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 400, response.get_data(as_text=True)
    assert fragment in kserve.V2Error.model_validate(response.get_json()).error


def test_binary_data_and_data_together_is_400(client: FlaskClient) -> None:
    header = infer_body([1.0, 2.0], [1, 2])
    header["inputs"][0]["parameters"] = {"binary_data_size": 8}
    body, headers = binary_body(header, b"\0" * 8)
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 400 and "exclude each other" in response.get_json()["error"]


def test_binary_input_of_another_datatype_is_400(client: FlaskClient) -> None:
    header = binary_request([1, 2], 16)
    header["inputs"][0]["datatype"] = "INT64"
    body, headers = binary_body(header, b"\0" * 16)
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 400 and "inputs.0.datatype" in response.get_json()["error"]


def test_binary_json_header_refuses_duplicate_keys(client: FlaskClient) -> None:
    head = b'{"inputs": [], "inputs": []}'
    response = client.post(INFER, data=head, headers={kserve.INFERENCE_HEADER: str(len(head))})
    assert response.status_code == 422 and "duplicate key" in response.get_json()["error"]


def test_binary_body_is_bounded_like_json(artifact) -> None:
    client = create_app(Settings(model_path=artifact, max_body_bytes=1024)).test_client()
    raw = np.zeros((200, 2), "<f4").tobytes()
    body, headers = binary_body(binary_request([200, 2], len(raw)), raw)
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 413 and "SENSOR_MAX_BODY_BYTES" in response.get_json()["error"]


@pytest.mark.parametrize(
    ("content_type", "binary", "status"),
    [
        ("application/octet-stream", True, 200),
        ("application/json", True, 200),
        ("application/octet-stream", False, 415),
        ("text/plain", True, 415),
    ],
)
def test_content_types(client: FlaskClient, content_type: str, binary: bool, status: int) -> None:
    raw = np.array([47.5, 2.3], "<f4").tobytes()
    if binary:
        body, headers = binary_body(binary_request([1, 2], 8), raw)
    else:
        body, headers = json.dumps(infer_body([47.5, 2.3], [1, 2])).encode(), {}
    response = client.post(INFER, data=body, headers={**headers, "Content-Type": content_type})
    assert response.status_code == status, response.get_data(as_text=True)
    assert status == 200 or set(response.get_json()) == {"error"}


def test_versioned_paths_serve_only_the_served_version(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    base = f"/v2/models/{NAME}/versions/{classifier.version}"
    assert client.get(base).get_json()["versions"] == [classifier.version]
    assert client.get(f"{base}/ready").get_json() == {"name": NAME, "ready": True}
    response = client.post(f"{base}/infer", json=infer_body([47.5, 2.3], [1, 2]))
    assert response.status_code == 200
    assert response.get_json()["model_version"] == classifier.version
    other = f"/v2/models/{NAME}/versions/0"
    for response in (
        client.get(other),
        client.get(f"{other}/ready"),
        client.post(f"{other}/infer", json=infer_body([47.5, 2.3], [1, 2])),
    ):
        assert response.status_code == 404
        assert "no version '0'" in kserve.V2Error.model_validate(response.get_json()).error


def test_every_error_under_v2_is_a_v2_error(client: FlaskClient) -> None:
    for response in (
        client.get("/v2/nowhere"),
        client.post("/v2"),
        client.delete(INFER),
        client.put(f"/v2/models/{NAME}"),
        client.get(f"/v2//models/{NAME}"),  # not Werkzeug's HTML redirect to the merged path
        client.post(f"/v2/models//{NAME}/infer", json=infer_body([1.0, 2.0], [1, 2])),
    ):
        assert response.status_code in (404, 405)
        kserve.V2Error.model_validate(response.get_json())


def test_the_classification_extension_is_refused(client: FlaskClient) -> None:
    body = infer_body(
        [47.5, 2.3], [1, 2], outputs=[{"name": "label", "parameters": {"classification": 2}}]
    )
    response = client.post(INFER, json=body)
    assert response.status_code == 400
    error = response.get_json()["error"]
    assert "outputs.0.parameters.classification" in error and "not implemented" in error
    assert "classification" not in client.get("/v2").get_json()["extensions"]


def test_a_null_classification_asks_for_none(client: FlaskClient) -> None:
    # null is what a client writes for a field it leaves unset: the answer is as without it.
    asked = {"name": "label", "parameters": {"classification": None}}
    unset = infer_body([47.5, 2.3], [1, 2], outputs=[{"name": "label"}])
    response = client.post(INFER, json={**unset, "outputs": [asked]})
    assert response.status_code == 200, response.get_json()
    assert response.get_json() == client.post(INFER, json=unset).get_json()


def test_a_binary_input_whose_shape_has_huge_dimensions_is_400(client: FlaskClient) -> None:
    # Their product has more digits than Python prints: it must not be computed, let alone shown.
    huge = "1" + "0" * 3000
    head = (
        b'{"inputs": [{"name": "readings", "shape": [' + f"{huge}, {huge}".encode() + b", 2],"
        b' "datatype": "FP32", "parameters": {"binary_data_size": 8}}]}'
    )
    response = client.post(
        INFER, data=head + b"\0" * 8, headers={kserve.INFERENCE_HEADER: str(len(head))}
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    assert "inputs.0.shape" in kserve.V2Error.model_validate(response.get_json()).error


@pytest.mark.parametrize(
    ("header", "fragment"),
    [
        ({"inputs": {"a": 1}}, "at inputs: Input should be a valid list"),
        (["x"], "at body: Input should be a valid dictionary"),
        (
            {"inputs": [{**binary_request([1, 2], 8)["inputs"][0], "parameters": [1]}]},
            "at inputs.0.parameters: Input should be a valid dictionary",
        ),
    ],
)
def test_a_malformed_header_before_binary_data_says_what_is_wrong_with_it(
    client: FlaskClient, header: object, fragment: str
) -> None:
    head = json.dumps(header).encode()
    response = client.post(
        INFER, data=head + b"\0" * 8, headers={kserve.INFERENCE_HEADER: str(len(head))}
    )
    assert response.status_code == 400
    assert fragment in kserve.V2Error.model_validate(response.get_json()).error


def test_the_model_name_in_the_body_as_kserve_clients_send_it(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    # KServe's InferRequest.to_rest() puts the model's name and a request id at the top.
    body = infer_body(
        [47.5, 2.3], [1, 2], model_name=NAME, id="4b9e0c1e-5d0c-4a53-9b8e-0b1c2d3e4f50"
    )
    response = client.post(INFER, json=body)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.get_json()["model_name"] == NAME
    response = client.post(INFER, json=infer_body([47.5, 2.3], [1, 2], model_name="other"))
    assert response.status_code == 400
    assert kserve.V2Error.model_validate(response.get_json()).error == (
        f"the request's model_name 'other' is not the model of its path, {NAME!r}"
    )


def test_an_output_requested_twice_is_400(client: FlaskClient) -> None:
    body = infer_body([47.5, 2.3], [1, 2], outputs=[{"name": "label"}, {"name": "label"}])
    response = client.post(INFER, json=body)
    assert response.status_code == 400
    assert kserve.V2Error.model_validate(response.get_json()).error == (
        "invalid inference request at outputs.1.name: 'label' is requested twice"
    )


@pytest.mark.parametrize("where", ["input", "output"])
def test_the_shared_memory_extension_is_refused(client: FlaskClient, where: str) -> None:
    region = {"shared_memory_region": "region-0", "shared_memory_byte_size": 8}
    if where == "input":
        body = binary_request([1, 2], 8)
        body["inputs"][0]["parameters"] = region
        located = "inputs.0.parameters"
    else:
        body = infer_body([47.5, 2.3], [1, 2], outputs=[{"name": "novel", "parameters": region}])
        located = "outputs.0.parameters"
    response = client.post(INFER, json=body)
    assert response.status_code == 400
    error = kserve.V2Error.model_validate(response.get_json()).error
    assert located in error and "shared memory extension is not implemented" in error
    assert "shared_memory" not in client.get("/v2").get_json()["extensions"]


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (
            b"[[47.5, 2.3], [47.5, NaN]]",
            "at inputs.0.data.rows.1.1: Input should be a finite number",
        ),
        (b"[[47.5, 2.3], [47.5]]", "at inputs.0.data.rows.1: List should have at least 2 items"),
        (
            b"[47.5, 2.3, 47.5, Infinity]",
            "at inputs.0.data.flat.3: Input should be a finite number",
        ),
    ],
)
def test_a_bad_value_is_located_where_it_is(
    client: FlaskClient, data: bytes, fragment: str
) -> None:
    body = (
        b'{"inputs": [{"name": "readings", "shape": [2, 2], "datatype": "FP64", "data": %s}]}'
        % data
    )
    response = client.post(INFER, data=body, content_type="application/json")
    assert response.status_code == 400
    error = kserve.V2Error.model_validate(response.get_json()).error
    assert fragment in error and "more)" not in error, error


def test_a_binary_value_that_is_not_finite_is_400_naming_it(client: FlaskClient) -> None:
    raw = np.array([[47.5, 2.3], [47.5, np.nan]], "<f4").tobytes()
    body, headers = binary_body(binary_request([2, 2], len(raw)), raw)
    response = client.post(INFER, data=body, headers=headers)
    assert response.status_code == 400
    assert kserve.V2Error.model_validate(response.get_json()).error == (
        "input 'readings': binary value 3 (row 1, column 1) is not a finite number"
    )
