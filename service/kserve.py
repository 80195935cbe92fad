"""Open Inference Protocol (KServe V2) REST endpoints: they translate HTTP to the data plane and back."""

from __future__ import annotations

from flask import Blueprint, Response, request

from service.body import body_deadline, parse_json, read_body
from service.dataplane import DataPlane
from service.errors import json_response
from service.inference_protocol import (
    InferenceResponse,
    Live,
    ModelMetadata,
    ModelReady,
    Ready,
    inference_request_model,
)
from service.openapi import documented
from service.settings import Settings

TAGS = ("Open Inference Protocol (KServe V2)",)


def _infer_description(loaded, settings: Settings) -> str:  # type: ignore[no-untyped-def]
    features, classes = loaded.requests.features, loaded.classes
    return (
        f"One FP32 input of shape [N, {len(features)}] (columns {', '.join(features)}),"
        f" 1 <= N <= {settings.max_batch}; outputs `probabilities` (FP32 [N, {len(classes)}],"
        f" columns {', '.join(classes)}), `label` (BYTES [N]) and `novel` (BOOL [N]). `data` must hold exactly N rows"
        " (or N x n_features values, flat), which JSON Schema cannot express: a mismatch is a 400."
    )


def _model_name(loaded, settings: Settings) -> str:  # type: ignore[no-untyped-def]
    return f"The served model's name: `{settings.model_name}`."


def create_v2(dataplane: DataPlane, settings: Settings) -> Blueprint:
    """The protocol's health, metadata and inference endpoints for the one served model."""
    v2 = Blueprint("v2", __name__, url_prefix="/v2")
    deadline = body_deadline()
    name_parameter = {"model_name": _model_name}

    def readiness(ready: dict[str, object]) -> Response:
        state = dataplane.ready()
        if state.ready:
            return json_response(ready)
        return json_response({"error": f"not ready: {state.detail}"}, 503)

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

    @v2.get("/models/<model_name>")
    @documented(
        summary="Open Inference Protocol: model metadata",
        responses={200: (ModelMetadata, "Inputs and outputs of the model.")},
        errors={404: "No model of that name."},
        parameters=name_parameter,
        tags=TAGS,
    )
    def v2_model_metadata(model_name: str) -> Response:
        return json_response(dataplane.model_metadata(model_name))

    @v2.get("/models/<model_name>/ready")
    @documented(
        summary="Open Inference Protocol: model ready",
        responses={200: (ModelReady, "The model is ready.")},
        errors={404: "No model of that name.", 503: "Not ready."},
        parameters=name_parameter,
        tags=TAGS,
    )
    def v2_model_ready(model_name: str) -> Response:
        dataplane.served(model_name)
        return readiness({"name": settings.model_name, "ready": True})

    @v2.post("/models/<model_name>/infer")
    @documented(
        summary="Open Inference Protocol: inference",
        description=_infer_description,
        request=lambda m: inference_request_model(len(m.requests.features), settings.max_batch),
        responses={200: (InferenceResponse, "The output tensors.")},
        errors={
            400: "Malformed JSON or an invalid inference request.",
            404: "No model of that name.",
            500: "A fault of the service (never caused by the request).",
        },
        parameters=name_parameter,
        tags=TAGS,
    )
    def v2_infer(model_name: str) -> Response:
        dataplane.served(model_name)
        document = parse_json(
            read_body(request.environ, settings, deadline), settings.max_json_depth
        )
        return json_response(dataplane.infer(model_name, document))

    return v2
