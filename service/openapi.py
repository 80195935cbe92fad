"""The OpenAPI 3.1 document, built from what each view declares, and its /docs page.

A view states its summary, request and responses where it is defined:

    @api.post("/classify")
    @documented(summary="...", request=lambda m: [m.requests.reading, m.requests.batch], ...)
    def classify(): ...

and `openapi_document` walks the app's URL map, so a route cannot be served undocumented. Schemas
come from pydantic, many of them from the loaded model (its features and classes).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.resources import files
from typing import Any, TypeVar

import orjson
from flask import Blueprint, Flask, Response, abort, current_app, send_from_directory
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from service.inference_protocol import V2Error
from service.protocol_paths import is_v2_path
from service.runtime import LoadedModel, ModelRuntime
from service.schemas import ErrorResponse, code
from service.settings import Settings

OPENAPI_VERSION = "3.1.0"
API_VERSION = "1.0.0"
# Swagger UI's files, served by the service itself: plants often run without internet access.
SWAGGER_UI_DIR = str(files("flask_swagger_ui").joinpath("dist"))
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


Models = Sequence[type[BaseModel]]
# A schema is a model (or several, one of which applies) or what to derive from the loaded model.
Schema = type[BaseModel] | Models | Callable[[LoadedModel], type[BaseModel] | Models]
Text = str | Callable[[LoadedModel, Settings], str]
View = TypeVar("View", bound=Callable[..., Any])

# Response kinds a view may declare instead of a schema: a string of this media type.
TEXT_MEDIA = {"text": "text/plain", "html": "text/html"}

# What every body-reading operation can answer, whichever API it belongs to; an operation
# declares what only it answers (a schema misfit: 422 on /classify, 400 in V2) in its `errors`.
BODY_ERRORS = {
    400: "Malformed JSON, or nested too deeply.",
    408: "The body did not arrive in time.",
    413: "The body is too large.",
    415: "The body is not JSON (Content-Type must be application/json), or is compressed other"
    " than by gzip or deflate (Content-Encoding; `Accept-Encoding` says which are read).",
    422: "A duplicate key: a JSON object names one key twice.",
    503: "The worker holds as many request bodies as it may (SENSOR_MAX_BYTES_IN_FLIGHT);"
    " retry after `Retry-After` seconds.",
}


@dataclass(frozen=True)
class Answer:
    """A response that is more than JSON of one schema: other media types, headers.

    ``schema`` and ``description`` as in `Operation.responses`. ``media``: other media types the
    same status may answer in, whose bytes no schema describes, so ``description`` says what
    they are. ``headers``: name -> (the value's type, description).
    """

    schema: Schema | str
    description: str
    media: tuple[str, ...] = ()
    headers: Mapping[str, tuple[Any, str]] = field(default_factory=dict)


@dataclass(frozen=True)
class Operation:
    """What one view declares about itself for the OpenAPI document."""

    summary: str
    description: Text = ""
    request: Schema | None = None
    # status -> (schema, description), or an Answer; the error statuses take the API's error
    # envelope.
    responses: Mapping[int, tuple[Schema | str, str] | Answer] = field(default_factory=dict)
    errors: Mapping[int, str] = field(default_factory=dict)
    parameters: Mapping[str, Text] = field(default_factory=dict)
    tags: tuple[str, ...] = ()


def documented(**declaration: Any) -> Callable[[View], View]:
    """Attach an `Operation` to a view; the document is built from these."""
    operation = Operation(**declaration)

    def attach(view: View) -> View:
        view.__openapi__ = operation  # type: ignore[attr-defined]
        return view

    return attach


# A Werkzeug rule's variables, `<name>` or `<converter:name>`: OpenAPI's `{name}`.
_RULE_VARIABLE = re.compile(r"<(?:[^:>]+:)?([^>]+)>")


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _models(schema: Schema, loaded: LoadedModel) -> list[type[BaseModel]]:
    if isinstance(schema, type) and issubclass(schema, BaseModel):
        return [schema]
    if callable(schema):
        return _models(schema(loaded), loaded)  # type: ignore[arg-type]
    return list(schema)


def _schema(models: list[type[BaseModel]]) -> dict[str, Any]:
    refs = [_ref(model.model_config.get("title") or model.__name__) for model in models]
    return refs[0] if len(refs) == 1 else {"oneOf": refs}


def _text(text: Text, loaded: LoadedModel, settings: Settings) -> str:
    return text(loaded, settings) if callable(text) else text


def openapi_document(app: Flask, loaded: LoadedModel, settings: Settings) -> dict[str, Any]:
    """The whole document for the model being served, from the views' declarations."""
    paths: dict[str, dict[str, Any]] = {}
    wanted: dict[type[BaseModel], JsonSchemaMode] = {}

    def use(schema: Schema, mode: JsonSchemaMode) -> dict[str, Any]:
        models = _models(schema, loaded)
        for model in models:
            wanted.setdefault(model, mode)
        return _schema(models)

    def content(
        schema: dict[str, Any], description: str, media: str = "application/json"
    ) -> dict[str, Any]:
        return {"description": description, "content": {media: {"schema": schema}}}

    for rule in app.url_map.iter_rules():
        operation: Operation | None = getattr(
            app.view_functions[rule.endpoint], "__openapi__", None
        )
        if operation is None:
            continue
        path = _RULE_VARIABLE.sub(r"{\1}", rule.rule)
        error_schema = V2Error if is_v2_path(rule.rule) else ErrorResponse
        responses: dict[str, Any] = {}
        for status, declared in operation.responses.items():
            answer = declared if isinstance(declared, Answer) else Answer(*declared)
            schema, text = answer.schema, answer.description
            if schema in TEXT_MEDIA:
                response = content({"type": "string"}, text, TEXT_MEDIA[schema])
            elif schema == "object":
                response = content({"type": "object"}, text)
            else:
                response = content(use(schema, "serialization"), text)  # type: ignore[arg-type]
            # OpenAPI 3.1 leaves out the schema of bytes it cannot describe.
            response["content"].update({media: {} for media in answer.media})
            if answer.headers:
                response["headers"] = {
                    name: {"description": about, "schema": TypeAdapter(kind).json_schema()}
                    for name, (kind, about) in answer.headers.items()
                }
            responses[str(status)] = response
        errors = {**(BODY_ERRORS if operation.request else {}), **operation.errors}
        for status, text in sorted(errors.items()):
            responses.setdefault(str(status), content(use(error_schema, "serialization"), text))
        item: dict[str, Any] = {
            "summary": operation.summary,
            "operationId": rule.endpoint.rpartition(".")[2],
            "responses": responses,
        }
        description = _text(operation.description, loaded, settings)
        if operation.request is not None:
            limits = (
                f"at most {settings.max_body_bytes} bytes (SENSOR_MAX_BODY_BYTES), nested at most"
                f" {settings.max_json_depth} levels (SENSOR_MAX_JSON_DEPTH), delivered within"
                f" {settings.request_timeout:g} s (SENSOR_REQUEST_TIMEOUT)"
            )
            description = f"{description} The body is {limits}.".strip()
            item["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": use(operation.request, "validation")}},
            }
        if description:
            item["description"] = description
        # The path's own variables (`rule.arguments` also holds the rule's `defaults`).
        variables = _RULE_VARIABLE.findall(rule.rule)
        if variables:
            item["parameters"] = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": _text(operation.parameters.get(name, ""), loaded, settings),
                }
                for name in sorted(variables)
            ]
        if operation.tags:
            item["tags"] = list(operation.tags)
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = item
    _, definitions = models_json_schema(
        list(wanted.items()), ref_template="#/components/schemas/{model}"
    )
    return {
        "openapi": OPENAPI_VERSION,
        "info": {
            "title": "Sensor classifier",
            "version": API_VERSION,
            "description": (
                "Tells whether a machine's sensor reading is "
                + ", ".join(map(code, loaded.classes))
                + f". Serving model `{settings.model_name}` version {loaded.version}."
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
    @documented(summary="This document", responses={200: ("object", "The OpenAPI document.")})
    def openapi() -> Response:
        loaded = runtime.current()
        body = cache.get(loaded.version)
        if body is None:
            # One model at a time, so one cached document at a time.
            cache.clear()
            document = openapi_document(current_app, loaded, settings)
            body = cache[loaded.version] = orjson.dumps(document)
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
        return send_from_directory(SWAGGER_UI_DIR, asset, max_age=86400)

    return docs
