"""Open Inference Protocol (KServe V2) REST endpoints: they translate HTTP to the data plane and back."""

from __future__ import annotations

from flask import Blueprint, Response, request
from pydantic import NonNegativeInt

from service.body import body_deadline, parse_json, read_body
from service.dataplane import DataPlane
from service.errors import JSON, json_response
from service.inference_protocol import (
    BINARY,
    INFERENCE_HEADER,
    InferenceResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    ServerMetadata,
    inference_request_model,
    split_body,
)
from service.openapi import Answer, documented
from service.protocol_paths import V2_ROOT
from service.schemas import code
from service.settings import Settings

TAGS = ("Open Inference Protocol (KServe V2)",)


def _infer_description(loaded, settings: Settings) -> str:  # type: ignore[no-untyped-def]
    features, classes = loaded.requests.features, loaded.classes
    return (
        f"One FP32 input of shape [N, {len(features)}] (columns {', '.join(map(code, features))}),"
        f" 1 <= N <= {settings.max_batch}; outputs `probabilities` (FP32 [N, {len(classes)}],"
        f" columns {', '.join(map(code, classes))}), `label` (BYTES [N]) and `novel` (BOOL [N]). `data` must hold exactly N rows"
        " (or N x n_features values, flat), which JSON Schema cannot express: a mismatch is a 400."
        " The request schema is the JSON form; a request in the binary tensor data extension (a"
        f" JSON header of `{INFERENCE_HEADER}` bytes followed by the tensors' bytes) is described"
        " in the README, its answer below (200)."
    )


# The inference answer in both its forms: no schema describes the binary one's bytes.
_INFER_ANSWER = (
    "The output tensors, as JSON; or, when any output is asked for as binary (the request's"
    " `binary_data_output` parameter, or an output's `binary_data: true`), as"
    f" `{BINARY}`: a JSON header of `{INFERENCE_HEADER}` bytes, an InferenceResponse in which"
    ' each binary output has `parameters: {"binary_data_size": bytes}` instead of `data`,'
    " followed by the binary outputs' bytes in output order: FP32 little-endian, 4 bytes a"
    " value, row-major; BOOL one byte a value, 0 or 1; BYTES each a 4-byte little-endian"
    " length, then that many bytes of UTF-8."
)


def _model_name(loaded, settings: Settings) -> str:  # type: ignore[no-untyped-def]
    return f"The served model's name: `{settings.model_name}`."


def _model_version(loaded, settings: Settings) -> str:  # type: ignore[no-untyped-def]
    return f"The served model's version: `{loaded.version}`; any other is a 404."


def create_v2(dataplane: DataPlane, settings: Settings) -> Blueprint:
    """The protocol's health, metadata and inference endpoints for the one served model."""
    v2 = Blueprint("v2", __name__, url_prefix=V2_ROOT)
    deadline = body_deadline()
    parameters = {"model_name": _model_name, "model_version": _model_version}
    # Each operation is served at `/models/{name}` and at `/models/{name}/versions/{version}`.
    versioned = "/versions/<model_version>"

    def readiness(ready: dict[str, object]) -> Response:
        state = dataplane.ready()
        if state.ready:
            return json_response(ready)
        return json_response({"error": f"not ready: {state.detail}"}, 503)

    @v2.get("")
    @documented(
        summary="Open Inference Protocol: server metadata",
        responses={200: (ServerMetadata, "Name, version and the extensions implemented.")},
        tags=TAGS,
    )
    def v2_server_metadata() -> Response:
        return json_response(dataplane.server_metadata())

    @v2.get("/health/live")
    @documented(
        summary="Open Inference Protocol: server live",
        responses={200: (Live, "The server is live.")},
        tags=TAGS,
    )
    def v2_live() -> Response:
        return json_response({"live": True})

    @v2.get("/health/ready")
    @documented(
        summary="Open Inference Protocol: server ready",
        responses={200: (Ready, "The model is ready.")},
        errors={503: "Not ready."},
        tags=TAGS,
    )
    def v2_ready() -> Response:
        return readiness({"ready": True})

    @v2.get("/models/<model_name>", defaults={"model_version": None})
    @v2.get(f"/models/<model_name>{versioned}", endpoint="v2_model_version_metadata")
    @documented(
        summary="Open Inference Protocol: model metadata",
        responses={200: (ModelMetadata, "Inputs and outputs of the model.")},
        errors={404: "No model of that name (or version)."},
        parameters=parameters,
        tags=TAGS,
    )
    def v2_model_metadata(model_name: str, model_version: str | None) -> Response:
        return json_response(dataplane.model_metadata(model_name, model_version))

    @v2.get("/models/<model_name>/ready", defaults={"model_version": None})
    @v2.get(f"/models/<model_name>{versioned}/ready", endpoint="v2_model_version_ready")
    @documented(
        summary="Open Inference Protocol: model ready",
        responses={200: (ModelReady, "The model is ready.")},
        errors={404: "No model of that name (or version).", 503: "Not ready."},
        parameters=parameters,
        tags=TAGS,
    )
    def v2_model_ready(model_name: str, model_version: str | None) -> Response:
        dataplane.served(model_name, model_version)
        return readiness({"name": settings.model_name, "ready": True})

    @v2.post("/models/<model_name>/infer", defaults={"model_version": None})
    @v2.post(f"/models/<model_name>{versioned}/infer", endpoint="v2_model_version_infer")
    @documented(
        summary="Open Inference Protocol: inference",
        description=_infer_description,
        request=lambda m: inference_request_model(len(m.requests.features), settings.max_batch),
        responses={
            200: Answer(
                InferenceResponse,
                _INFER_ANSWER,
                media=(BINARY,),
                headers={
                    INFERENCE_HEADER: (
                        NonNegativeInt,
                        f"Only with `{BINARY}`: the length in bytes of the JSON header that"
                        " starts the body.",
                    )
                },
            )
        },
        errors={
            400: "Malformed JSON, an invalid inference request, a reading outside a feature's"
            " physical limits (as for /classify), JSON nested deeper than SENSOR_MAX_JSON_DEPTH,"
            " or binary tensor data that disagrees with the shapes.",
            404: "No model of that name (or version).",
            415: f"A Content-Type other than {JSON}; none counts as JSON, and with binary"
            f" tensor data {BINARY} is accepted too. Or a Content-Encoding other than gzip or"
            " deflate.",
            500: "A fault of the service (never caused by the request).",
        },
        parameters=parameters,
        tags=TAGS,
    )
    def v2_infer(model_name: str, model_version: str | None) -> Response:
        dataplane.served(model_name, model_version)
        header_length = request.headers.get(INFERENCE_HEADER)
        body = read_body(
            request.environ,
            settings,
            deadline,
            untyped_is_json=True,
            media_types=(JSON,) if header_length is None else (BINARY, JSON),
        )
        header, tensor_data = split_body(body, header_length)
        document = parse_json(header, settings.max_json_depth)
        answer = dataplane.infer(model_name, document, model_version, tensor_data)
        return Response(answer.body, content_type=answer.content_type, headers=answer.headers)

    return v2
