"""The Open Inference Protocol as NVIDIA's `tritonclient.http` speaks it, against the real gunicorn.

Answers are checked against `/classify` for the same readings: the V2 endpoints must tell a
Triton or KServe user exactly what the service's own API tells everybody else.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.utils import InferenceServerException

import model
from tests.support.artifacts import write_artifact
from tests.support.server import Server, running_server

pytestmark = pytest.mark.e2e

NAME = "sensor-classifier"
MAX_BATCH = 50
# Room for a JSON batch of MAX_BATCH readings, not for a binary one of 1000.
MAX_BODY_BYTES = 4096


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_artifact(tmp_path_factory.mktemp("triton") / "model.npz", seed=3)


@pytest.fixture(scope="module")
def served(artifact: Path) -> Iterator[Server]:
    env = {"SENSOR_MAX_BATCH": str(MAX_BATCH), "SENSOR_MAX_BODY_BYTES": str(MAX_BODY_BYTES)}
    with running_server(artifact, workers=1, env=env, log_dir=artifact.parent / "logs") as server:
        yield server


@pytest.fixture
def client(served: Server) -> Iterator[triton.InferenceServerClient]:
    client = triton.InferenceServerClient(f"127.0.0.1:{served.port}")
    try:
        yield client
    finally:
        client.close()


@pytest.fixture(scope="module")
def classifier(artifact: Path) -> model.Classifier:
    return model.load(artifact)


def readings(n: int, seed: int = 0) -> np.ndarray:
    """``n`` readings that float32 holds exactly, so FP32 tensors and `/classify` agree on them."""
    rng = np.random.default_rng(seed)
    X = np.column_stack([rng.uniform(20.0, 120.0, n), rng.uniform(0.0, 20.0, n)])
    return X.astype(np.float32).astype(np.float64)


def classify(served: Server, classifier: model.Classifier, X: np.ndarray) -> dict:
    """`/classify`'s answer for the readings ``X``: probabilities (N, k), labels, novel."""
    batch = {"readings": [dict(zip(classifier.features, row, strict=True)) for row in X.tolist()]}
    response = httpx.post(f"{served.url}/classify", json=batch, timeout=10.0)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    return {
        "probabilities": np.array(
            [[r["probabilities"][c] for c in classifier.classes] for r in results]
        ),
        "label": [r["label"] for r in results],
        "novel": [r["novel"] for r in results],
    }


def readings_input(X: np.ndarray, datatype: str = "FP32", binary: bool = True) -> triton.InferInput:
    tensor = triton.InferInput("readings", list(X.shape), datatype)
    tensor.set_data_from_numpy(X.astype(np.float32 if datatype == "FP32" else X.dtype), binary)
    return tensor


def assert_same_answers(result: triton.InferResult, expected: dict, names: list[str]) -> None:
    outputs = result.get_response()["outputs"]
    assert [o["name"] for o in outputs] == names
    if "probabilities" in names:
        P = result.as_numpy("probabilities")
        assert P.dtype == np.float32
        np.testing.assert_array_equal(P, expected["probabilities"].astype(np.float32))
    if "label" in names:
        # tritonclient gives BYTES as bytes when they came binary, as str when they came as JSON.
        labels = [
            label.decode() if isinstance(label, bytes) else label
            for label in result.as_numpy("label").tolist()
        ]
        assert labels == expected["label"]
    if "novel" in names:
        assert result.as_numpy("novel").tolist() == expected["novel"]


def test_health_and_both_metadata_calls(
    client: triton.InferenceServerClient, classifier: model.Classifier
) -> None:
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready(NAME)
    assert client.is_model_ready(NAME, classifier.version)
    assert not client.is_model_ready(NAME, "0")
    assert not client.is_model_ready("other")
    server = client.get_server_metadata()
    assert server["name"] == NAME and server["version"]
    assert server["extensions"] == ["binary_tensor_data"]
    for metadata in (
        client.get_model_metadata(NAME),
        client.get_model_metadata(NAME, classifier.version),
    ):
        assert metadata["name"] == NAME and metadata["versions"] == [classifier.version]
        assert [(t["name"], t["datatype"], t["shape"]) for t in metadata["inputs"]] == [
            ("readings", "FP32", [-1, 2])
        ]
        assert [t["name"] for t in metadata["outputs"]] == ["probabilities", "label", "novel"]


ALL = ["probabilities", "label", "novel"]


@pytest.mark.parametrize(
    ("datatype", "binary_input", "binary_outputs"),
    [
        ("FP32", False, [False, False, False]),  # all JSON
        ("FP32", True, None),  # the client's defaults: binary in, binary_data_output
        ("FP32", True, [True, True, True]),
        ("FP64", True, [True, True, True]),
        ("FP32", False, [True, False, True]),  # mixed
        ("FP32", True, [False, True, False]),  # mixed
    ],
)
def test_infer_answers_what_classify_answers(
    served: Server,
    client: triton.InferenceServerClient,
    classifier: model.Classifier,
    datatype: str,
    binary_input: bool,
    binary_outputs: list[bool] | None,
) -> None:
    X = readings(7)
    outputs = None
    if binary_outputs is not None:
        outputs = [
            triton.InferRequestedOutput(name, binary_data=binary)
            for name, binary in zip(ALL, binary_outputs, strict=True)
        ]
    result = client.infer(
        NAME, [readings_input(X, datatype, binary_input)], outputs=outputs, request_id="r-1"
    )
    response = result.get_response()
    assert response["model_version"] == classifier.version and response["id"] == "r-1"
    for output, binary in zip(response["outputs"], binary_outputs or [True] * 3, strict=True):
        assert ("data" in output) is not binary
        assert ("binary_data_size" in output.get("parameters", {})) is binary
    assert_same_answers(result, classify(served, classifier, X), ALL)


def test_a_versioned_infer(
    served: Server, client: triton.InferenceServerClient, classifier: model.Classifier
) -> None:
    X = readings(3, seed=1)
    result = client.infer(NAME, [readings_input(X)], model_version=classifier.version)
    assert_same_answers(result, classify(served, classifier, X), ALL)


@pytest.mark.parametrize("algorithm", ["gzip", "deflate"])
@pytest.mark.parametrize("binary", [False, True])
def test_a_compressed_infer(
    served: Server,
    client: triton.InferenceServerClient,
    classifier: model.Classifier,
    algorithm: str,
    binary: bool,
) -> None:
    X = readings(MAX_BATCH, seed=4)
    result = client.infer(
        NAME,
        [readings_input(X, binary=binary)],
        request_compression_algorithm=algorithm,
        response_compression_algorithm=algorithm,
    )
    assert_same_answers(result, classify(served, classifier, X), ALL)


@pytest.mark.parametrize("names", [["label"], ["novel", "probabilities"]])
def test_only_the_requested_outputs(
    served: Server,
    client: triton.InferenceServerClient,
    classifier: model.Classifier,
    names: list[str],
) -> None:
    X = readings(4, seed=2)
    outputs = [triton.InferRequestedOutput(name) for name in names]
    result = client.infer(NAME, [readings_input(X)], outputs=outputs)
    assert_same_answers(result, classify(served, classifier, X), names)
    for other in set(ALL) - set(names):
        assert result.as_numpy(other) is None


def test_class_count_none_asks_for_no_classification(
    served: Server, client: triton.InferenceServerClient, classifier: model.Classifier
) -> None:
    # The client sends "classification": null for class_count=None (it leaves out only 0).
    X = readings(2, seed=4)
    outputs = [triton.InferRequestedOutput("label", class_count=None)]
    result = client.infer(NAME, [readings_input(X)], outputs=outputs)
    assert_same_answers(result, classify(served, classifier, X), ["label"])


@pytest.mark.parametrize("binary", [False, True])
def test_a_batch_at_the_maximum(
    served: Server, client: triton.InferenceServerClient, classifier: model.Classifier, binary: bool
) -> None:
    X = readings(MAX_BATCH, seed=3)
    result = client.infer(NAME, [readings_input(X, binary=binary)])
    assert_same_answers(result, classify(served, classifier, X), ALL)
    with pytest.raises(InferenceServerException) as raised:
        client.infer(NAME, [readings_input(readings(MAX_BATCH + 1), binary=binary)])
    assert raised.value.status() == "400"
    assert "invalid inference request at inputs.0.shape.0" in raised.value.message()


def service_error(served: Server, method: str, path: str, **kwargs: object) -> tuple[str, str]:
    """The status and `error` the service itself answers (read without tritonclient)."""
    response = httpx.request(method, f"{served.url}{path}", timeout=10.0, **kwargs)  # type: ignore[arg-type]
    body = response.json()
    assert set(body) == {"error"} and isinstance(body["error"], str)
    return str(response.status_code), body["error"]


def test_unknown_model_and_version(
    served: Server, client: triton.InferenceServerClient, classifier: model.Classifier
) -> None:
    X = readings(2)
    calls = [
        (lambda: client.get_model_metadata("other"), "GET", "/v2/models/other"),
        (lambda: client.infer("other", [readings_input(X)]), "POST", "/v2/models/other/infer"),
        (
            lambda: client.get_model_metadata(NAME, "0"),
            "GET",
            f"/v2/models/{NAME}/versions/0",
        ),
        (
            lambda: client.infer(NAME, [readings_input(X)], model_version="0"),
            "POST",
            f"/v2/models/{NAME}/versions/0/infer",
        ),
    ]
    messages = []
    for call, method, path in calls:
        with pytest.raises(InferenceServerException) as raised:
            call()
        status, message = service_error(served, method, path)
        assert (raised.value.status(), raised.value.message()) == (status, message)
        assert status == "404"
        messages.append(message)
    assert messages[0] == messages[1] == f"unknown model 'other'; this server serves {NAME!r}"
    assert messages[2] == messages[3]
    assert messages[2] == (
        f"model {NAME!r} has no version '0'; it serves version {classifier.version!r}"
    )


def test_errors_the_client_can_provoke_carry_the_services_message(
    served: Server, client: triton.InferenceServerClient
) -> None:
    wrong_type = triton.InferInput("readings", [1, 2], "INT64")
    wrong_type.set_data_from_numpy(np.array([[40, 2]], dtype=np.int64))
    wrong_type_json = triton.InferInput("readings", [1, 2], "INT64")
    wrong_type_json.set_data_from_numpy(np.array([[40, 2]], dtype=np.int64), binary_data=False)
    wrong_shape = triton.InferInput("readings", [1, 3], "FP32")
    wrong_shape.set_data_from_numpy(np.array([[40.0, 2.0, 1.0]], dtype=np.float32))
    too_long = readings_input(readings(1000))
    cases = [
        (
            [wrong_type],
            "400",
            "invalid inference request at inputs.0.datatype: binary data must be FP32 or FP64,"
            " got 'INT64'",
        ),
        ([wrong_type_json], "400", "invalid inference request at inputs.0.datatype"),
        ([wrong_shape], "400", "invalid inference request at inputs.0.shape.1"),
        ([too_long], "413", f"the limit is {MAX_BODY_BYTES} (SENSOR_MAX_BODY_BYTES)"),
    ]
    for inputs, status, fragment in cases:
        fresh = triton.InferenceServerClient(f"127.0.0.1:{served.port}")
        try:
            with pytest.raises(InferenceServerException) as raised:
                fresh.infer(NAME, inputs)
        finally:
            fresh.close()
        assert raised.value.status() == status
        assert fragment in raised.value.message(), raised.value.message()
    with pytest.raises(InferenceServerException) as raised:
        client.infer(
            NAME,
            [readings_input(readings(1))],
            outputs=[triton.InferRequestedOutput("probabilities", class_count=2)],
        )
    assert raised.value.status() == "400"
    assert raised.value.message() == (
        "invalid inference request at outputs.0.parameters.classification:"
        " Value error, the classification extension is not implemented (see GET /v2)"
    )
    # An output or input the client expects in its shared memory region: refused, not
    # answered inline into a region nothing writes.
    in_region = triton.InferRequestedOutput("probabilities")
    in_region.set_shared_memory("region-0", 12)
    from_region = triton.InferInput("readings", [1, 2], "FP32")
    from_region.set_shared_memory("region-0", 8)
    for inputs, outputs, where in (
        ([readings_input(readings(1))], [in_region], "outputs.0.parameters"),
        ([from_region], None, "inputs.0.parameters"),
    ):
        with pytest.raises(InferenceServerException) as raised:
            client.infer(NAME, inputs, outputs=outputs)
        assert raised.value.status() == "400"
        assert raised.value.message().startswith(f"invalid inference request at {where}: ")
        assert "the shared memory extension is not implemented" in raised.value.message()


def test_the_same_error_over_plain_http(served: Server) -> None:
    # What tritonclient reported above is the service's own answer, byte for byte.
    status, message = service_error(
        served,
        "POST",
        f"/v2/models/{NAME}/infer",
        json={
            "inputs": [{"name": "readings", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]
        },
    )
    assert status == "400" and message.startswith("invalid inference request at inputs.0.shape.1")


def raw_exchange(port: int, data: bytes) -> tuple[int, bytes]:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split()[1]), body


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST /v2/models/x/infer HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", 400),
        (b"GET /v2/health/live HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400),
        (b"GET /v2 HTTP/1.1\r\nHost: a\r\nX: " + b"y" * 9000 + b"\r\n\r\n", 431),
        (b"GET /v2/health/live?a=\x01 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
    ],
)
def test_gunicorns_own_errors_under_v2_are_v2_errors(
    served: Server, request_bytes: bytes, status: int
) -> None:
    got, body = raw_exchange(served.port, request_bytes)
    assert got == status
    error = httpx.Response(200, content=body).json()
    assert set(error) == {"error"} and isinstance(error["error"], str), error


def test_gunicorns_own_errors_elsewhere_keep_the_service_envelope(served: Server) -> None:
    got, body = raw_exchange(
        served.port, b"POST /classify HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n"
    )
    error = httpx.Response(200, content=body).json()["error"]
    assert got == 400 and error["status"] == 400 and error["message"]


@pytest.mark.parametrize("path", ["/v2/models/sensor-classifier/infer", "/classify"])
def test_a_malformed_chunked_body_is_400_in_each_apis_envelope(served: Server, path: str) -> None:
    # gunicorn parses chunks as the app reads the body; its error used to surface as a 500.
    got, body = raw_exchange(
        served.port,
        f"POST {path} HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n".encode()
        + b"Transfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
    )
    error = httpx.Response(200, content=body).json()["error"]
    assert got == 400
    message = error if path.startswith("/v2") else error["message"]
    assert isinstance(message, str) and message.startswith("malformed request body: ")
