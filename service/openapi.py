"""The OpenAPI 3.1 document, generated from the pydantic models of the loaded model, and its /docs page."""

from __future__ import annotations

from typing import Any

import orjson
from flask import Blueprint, Response, abort, send_from_directory
from pydantic import BaseModel
from pydantic.json_schema import JsonSchemaMode, models_json_schema
from swagger_ui_bundle import swagger_ui_path

from service import kserve
from service.runtime import LoadedModel, ModelRuntime
from service.schemas import ErrorResponse, Health, ModelInfo
from service.settings import Settings

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
# Swagger UI's files, served by the service itself: plants often run without internet access.
DOCS_ASSETS = frozenset(
    {
        "swagger-ui.css",
        "swagger-ui-bundle.js",
        "swagger-ui-standalone-preset.js",
        "favicon-16x16.png",
        "favicon-32x32.png",
    }
)

_DOCS_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Sensor classifier API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
  <link rel="icon" type="image/png" href="/docs/favicon-32x32.png" sizes="32x32">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script src="/docs/swagger-ui-standalone-preset.js"></script>
  <script src="/docs/init.js"></script>
</body>
</html>
"""

# validatorUrl null: the UI would otherwise send the document to swagger.io to be checked.
_DOCS_INIT_JS = """window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    layout: "BaseLayout"
  });
};
"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(statuses: dict[int, str], schema: str = "ErrorResponse") -> dict[str, Any]:
    return {str(status): _json(_ref(schema), text) for status, text in statuses.items()}


def openapi_document(loaded: LoadedModel, settings: Settings) -> dict[str, Any]:
    """The whole document for the model being served; schemas come from pydantic."""
    req, resp = loaded.requests, loaded.responses
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (req.reading, "validation"),
        (req.batch, "validation"),
        (resp.answer, "serialization"),
        (resp.batch_answer, "serialization"),
        (ErrorResponse, "serialization"),
        (Health, "serialization"),
        (ModelInfo, "serialization"),
        (kserve.inference_request_model(len(req.features), req.max_batch), "validation"),
        (kserve.InferenceResponse, "serialization"),
        (kserve.ModelMetadata, "serialization"),
        (kserve.Live, "serialization"),
        (kserve.Ready, "serialization"),
        (kserve.ModelReady, "serialization"),
        (kserve.V2Error, "serialization"),
    ]
    _, definitions = models_json_schema(models, ref_template="#/components/schemas/{model}")
    name = settings.model_name
    limits = (
        f"at most {settings.max_body_bytes} bytes (SENSOR_MAX_BODY_BYTES), nested at most"
        f" {settings.max_json_depth} levels (SENSOR_MAX_JSON_DEPTH), delivered within"
        f" {settings.request_timeout:g} s (SENSOR_REQUEST_TIMEOUT)"
    )
    body_errors = {
        400: "Malformed JSON, or nested too deeply.",
        408: "The body did not arrive in time.",
        413: "The body is too large.",
        415: "The body is not JSON (Content-Type must be application/json).",
    }
    model_name_parameter = {
        "name": "model_name",
        "in": "path",
        "required": True,
        "schema": {"type": "string"},
        "description": f"The served model's name: `{name}`.",
    }
    paths: dict[str, Any] = {
        "/classify": {
            "post": {
                "summary": "Classify one reading or a batch of readings",
                "description": (
                    f"Features: {', '.join(req.features)}. Classes: {', '.join(loaded.classes)}."
                    f" A batch holds 1 to {req.max_batch} readings (SENSOR_MAX_BATCH). The body"
                    f" is {limits}."
                ),
                "operationId": "classify",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {"oneOf": [_ref("Reading"), _ref("ReadingBatch")]}
                        }
                    },
                },
                "responses": {
                    "200": _json(
                        {"oneOf": [_ref("ClassificationAnswer"), _ref("BatchAnswer")]},
                        "The answer to a reading (ClassificationAnswer) or a batch (BatchAnswer).",
                    ),
                    **_errors(
                        {
                            **body_errors,
                            422: "Valid JSON that does not fit the schema; `details` say where.",
                            500: "A fault of the service (never caused by the request).",
                            503: "No model can answer.",
                        }
                    ),
                },
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: 200 while the process is up",
                "operationId": "healthz",
                "responses": {"200": _json(_ref("Health"), "The process is up.")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: a model is loaded and a self-test prediction succeeds",
                "operationId": "readyz",
                "responses": {
                    "200": _json(_ref("Health"), "Ready to classify."),
                    "503": _json(_ref("Health"), "Not ready; `detail` says why."),
                },
            }
        },
        "/model": {
            "get": {
                "summary": "The model being served: version, features, classes, training",
                "operationId": "model",
                "responses": {"200": _json(_ref("ModelInfo"), "The loaded model.")},
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics, summed over all workers",
                "operationId": "metrics",
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "responses": {"200": _json({"type": "object"}, "The OpenAPI document.")},
            }
        },
        "/v2/health/live": {
            "get": {
                "summary": "Open Inference Protocol: server live",
                "operationId": "v2_live",
                "tags": ["Open Inference Protocol (KServe V2)"],
                "responses": {"200": _json(_ref("Live"), "The server is live.")},
            }
        },
        "/v2/health/ready": {
            "get": {
                "summary": "Open Inference Protocol: server ready",
                "operationId": "v2_ready",
                "tags": ["Open Inference Protocol (KServe V2)"],
                "responses": {
                    "200": _json(_ref("Ready"), "The model is ready."),
                    **_errors({503: "Not ready."}, "V2Error"),
                },
            }
        },
        "/v2/models/{model_name}": {
            "get": {
                "summary": "Open Inference Protocol: model metadata",
                "operationId": "v2_model_metadata",
                "tags": ["Open Inference Protocol (KServe V2)"],
                "parameters": [model_name_parameter],
                "responses": {
                    "200": _json(_ref("ModelMetadata"), "Inputs and outputs of the model."),
                    **_errors({404: "No model of that name."}, "V2Error"),
                },
            }
        },
        "/v2/models/{model_name}/ready": {
            "get": {
                "summary": "Open Inference Protocol: model ready",
                "operationId": "v2_model_ready",
                "tags": ["Open Inference Protocol (KServe V2)"],
                "parameters": [model_name_parameter],
                "responses": {
                    "200": _json(_ref("ModelReady"), "The model is ready."),
                    **_errors({404: "No model of that name.", 503: "Not ready."}, "V2Error"),
                },
            }
        },
        "/v2/models/{model_name}/infer": {
            "post": {
                "summary": "Open Inference Protocol: inference",
                "description": (
                    f"One FP32 input of shape [N, {len(req.features)}] (columns"
                    f" {', '.join(req.features)}), 1 <= N <= {req.max_batch}; outputs"
                    f" `probabilities` (FP32 [N, {len(loaded.classes)}], columns"
                    f" {', '.join(loaded.classes)}) and `label` (BYTES [N]). `data` must hold"
                    " exactly N rows (or N x n_features values, flat), which JSON Schema cannot"
                    f" express: a mismatch is a 400. The body is {limits}."
                ),
                "operationId": "v2_infer",
                "tags": ["Open Inference Protocol (KServe V2)"],
                "parameters": [model_name_parameter],
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("InferenceRequest")}},
                },
                "responses": {
                    "200": _json(_ref("InferenceResponse"), "The output tensors."),
                    **_errors(
                        {
                            **body_errors,
                            400: "Malformed JSON or an invalid inference request.",
                            404: "No model of that name.",
                            500: "A fault of the service (never caused by the request).",
                        },
                        "V2Error",
                    ),
                },
            }
        },
    }
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Sensor classifier",
            "version": API_VERSION,
            "description": (
                "Tells whether a machine's sensor reading is "
                + ", ".join(loaded.classes)
                + f". Serving model `{name}` version {loaded.version}."
            ),
        },
        "paths": paths,
        "components": {"schemas": definitions["$defs"]},
    }


def create_docs(runtime: ModelRuntime, settings: Settings) -> Blueprint:
    """`/openapi.json` and `/docs` (Swagger UI with local assets)."""
    docs = Blueprint("docs", __name__)
    cache: dict[str, bytes] = {}

    @docs.get("/openapi.json")
    def openapi_json() -> Response:
        loaded = runtime.current()
        body = cache.get(loaded.version)
        if body is None:
            # One model at a time, so one cached document at a time.
            cache.clear()
            body = cache[loaded.version] = orjson.dumps(openapi_document(loaded, settings))
        return Response(body, content_type="application/json")

    @docs.get("/docs")
    def docs_page() -> Response:
        return Response(_DOCS_HTML, content_type="text/html; charset=utf-8")

    @docs.get("/docs/init.js")
    def docs_init() -> Response:
        return Response(_DOCS_INIT_JS, content_type="text/javascript; charset=utf-8")

    @docs.get("/docs/<asset>")
    def docs_asset(asset: str) -> Response:
        if asset not in DOCS_ASSETS:
            abort(404)
        return send_from_directory(str(swagger_ui_path), asset, max_age=86400)

    return docs
