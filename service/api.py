"""The HTTP routes of the service's own API: they translate HTTP to the runtime and back."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable
from typing import Any

import orjson
from flask import Blueprint, Response, request

from service.errors import (
    JSON,
    MalformedRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    json_response,
)
from service.metrics import Metrics
from service.runtime import ModelRuntime
from service.schemas import SingleRequest
from service.settings import Settings

Deadline = Callable[[float], contextlib.AbstractContextManager[Any]]


def body_deadline() -> Deadline:
    """How to bound the time spent reading a body, for the server we run in.

    Under gevent workers a `gevent.Timeout` cuts a stalled read off at the deadline (and only the
    greenlet of that client was waiting). Other servers bring their own socket timeouts.
    """
    gevent = sys.modules.get("gevent")
    if gevent is not None:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            return lambda seconds: gevent.Timeout(seconds, False)
    return lambda seconds: contextlib.nullcontext()


def read_json_body(settings: Settings, deadline: Deadline) -> bytes:
    """The request body as bytes, within the size and time limits; raises 413, 415, 408, 400."""
    environ = request.environ
    mimetype = environ.get("CONTENT_TYPE", "").partition(";")[0].strip().lower()
    if mimetype != JSON:
        shown = mimetype or "no Content-Type"
        raise UnsupportedMediaType(f"the body must be JSON (Content-Type: {JSON}), got {shown}")
    limit = settings.max_body_bytes
    length_header = environ.get("CONTENT_LENGTH")
    length: int | None = None
    if length_header:
        try:
            length = int(length_header)
        except ValueError:
            raise MalformedRequest(f"invalid Content-Length: {length_header!r}") from None
        if length > limit:
            raise PayloadTooLarge(
                f"the body is {length} bytes; the limit is {limit} (SENSOR_MAX_BODY_BYTES)"
            )
    stream = environ["wsgi.input"]
    data: bytes | None = None
    with deadline(settings.request_timeout):
        if length is not None:
            data = stream.read(length) if length else b""
        elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
            data = stream.read(limit + 1)
        else:
            data = b""
    if data is None:
        raise RequestTimeout(
            f"the body did not arrive within {settings.request_timeout:g} s"
            " (SENSOR_REQUEST_TIMEOUT)"
        )
    if len(data) > limit:
        raise PayloadTooLarge(
            f"the body is larger than the limit of {limit} bytes (SENSOR_MAX_BODY_BYTES)"
        )
    if length is not None and len(data) < length:
        raise MalformedRequest(f"the body ended after {len(data)} of {length} bytes")
    return data


def create_api(runtime: ModelRuntime, settings: Settings, metrics: Metrics) -> Blueprint:
    """`/classify`, `/healthz`, `/readyz`, `/model` and `/metrics`."""
    api = Blueprint("api", __name__)
    deadline = body_deadline()

    @api.post("/classify")
    def classify() -> Response:
        body = read_json_body(settings, deadline)
        loaded = runtime.current()
        parsed = loaded.requests.parse(body)
        if isinstance(parsed, SingleRequest):
            body = orjson.dumps(runtime.classify_one(loaded, parsed))
        else:
            body = runtime.classify_batch(loaded, parsed)
        return Response(body, content_type=JSON)

    @api.get("/healthz")
    def healthz() -> Response:
        loaded = runtime.loaded
        return json_response({"status": "ok", "model_version": loaded.version if loaded else None})

    @api.get("/readyz")
    def readyz() -> Response:
        if runtime.loaded is not None:
            runtime.current()
        ok, detail = runtime.self_test()
        loaded = runtime.loaded
        version = loaded.version if loaded else None
        if ok:
            return json_response({"status": "ok", "model_version": version})
        return json_response(
            {"status": "unavailable", "model_version": version, "detail": detail}, 503
        )

    @api.get("/model")
    def model_info() -> Response:
        return json_response(describe_model(runtime, settings))

    @api.get("/metrics")
    def metrics_text() -> Response:
        text, content_type = metrics.exposition()
        return Response(text, content_type=content_type)

    return api


def describe_model(runtime: ModelRuntime, settings: Settings) -> dict[str, Any]:
    """What `GET /model` answers (see `schemas.ModelInfo`)."""
    loaded = runtime.current()
    clf = loaded.classifier
    metadata = dict(clf.metadata)
    trained_at = metadata.pop("created_at", None)
    metrics = metadata.pop("metrics", {})
    features = [
        {"name": name, "unit": unit or None, "mean": mean, "std": std, "min": lo, "max": hi}
        for name, unit, mean, std, lo, hi in zip(
            clf.features,
            clf.units,
            clf.standardizer.mean.tolist(),
            clf.standardizer.scale.tolist(),
            clf.feature_min.tolist(),
            clf.feature_max.tolist(),
            strict=True,
        )
    ]
    return {
        "model_name": settings.model_name,
        "model_version": loaded.version,
        "artifact": str(loaded.path),
        "loaded_at": loaded.loaded_at.isoformat(timespec="seconds"),
        "features": features,
        "classes": list(clf.classes),
        "calibration_temperature": clf.temperature,
        "trained_at": trained_at if isinstance(trained_at, str) else None,
        "metrics": metrics if isinstance(metrics, dict) else {"value": metrics},
        "training": metadata,
    }
