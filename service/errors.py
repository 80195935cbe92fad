"""Errors the service answers with, each carrying its HTTP status, and the one handler rendering them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import orjson
from flask import Flask, Response, request
from werkzeug.exceptions import HTTPException

# Open Inference Protocol (KServe V2) clients expect that protocol's own error body.
from service.protocol_paths import is_v2_path

logger = logging.getLogger(__name__)

JSON = "application/json"


class ServiceError(Exception):
    """An error with an HTTP status; ``details`` locate problems inside the request body.

    details : sequence of {"loc": [str | int, ...], "message": str}
    """

    status = 500

    def __init__(
        self,
        message: str,
        details: Sequence[dict[str, Any]] = (),
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.details = list(details)
        self.headers = headers or {}


class MalformedRequest(ServiceError):
    """The body is not parseable JSON, or nests deeper than allowed."""

    status = 400


class NotFound(ServiceError):
    status = 404


class RequestTimeout(ServiceError):
    """The client did not deliver its body in time; the connection cannot be reused."""

    status = 408

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class PayloadTooLarge(ServiceError):
    """The body is larger than allowed; the connection is closed rather than drained."""

    status = 413

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"Connection": "close"})


class Busy(ServiceError):
    """The worker holds as many request bodies as it may; the client should come back soon.

    The body is left unread, so the connection is closed rather than drained.
    """

    status = 503

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message, headers={"Retry-After": str(retry_after), "Connection": "close"})


class MetricsUnavailable(ServiceError):
    """The workers' metrics cannot be read (or this worker's were never written)."""

    status = 503


class UnsupportedMediaType(ServiceError):
    status = 415


class ValidationFailed(ServiceError):
    """Well-formed JSON that does not match the request schema."""

    status = 422


def json_response(
    payload: Any, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    """A Response with ``payload`` serialized by orjson (numpy scalars and arrays included)."""
    body = orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY)
    return Response(body, status=status, headers=headers, content_type=JSON)


def error_response(
    status: int,
    message: str,
    details: Sequence[dict[str, Any]] = (),
    headers: dict[str, str] | None = None,
) -> Response:
    """The error envelope: ``{"error": {"status", "message", "details"}}``; V2 paths get theirs."""
    if request and is_v2_path(request.path):
        return json_response({"error": message}, status, headers)
    envelope = {"error": {"status": status, "message": message, "details": list(details)}}
    return json_response(envelope, status, headers)


def _service_error(error: ServiceError) -> Response:
    return error_response(error.status, error.message, error.details, error.headers)


def _http_exception(error: HTTPException) -> Response:
    status = error.code or 500
    # Keep the protocol headers Werkzeug computed (e.g. `Allow` on a 405), not its HTML type.
    headers = {
        name: value
        for name, value in error.get_headers()
        if name.lower() not in {"content-type", "content-length"}
    }
    message = error.description or error.name
    if status == 404:
        message = f"no such endpoint: {request.method} {request.path}"
    elif status == 405:
        message = f"method {request.method} is not allowed on {request.path}"
    return error_response(status, message, headers=headers)


def _unexpected(error: Exception) -> Response:
    # The client sees a bare 500; the log gets everything.
    logger.exception("unhandled error answering %s %s", request.method, request.path)
    return error_response(500, "internal server error")


def register_error_handlers(app: Flask) -> None:
    """Route every error, expected or not, through the one envelope."""
    app.register_error_handler(ServiceError, _service_error)
    app.register_error_handler(HTTPException, _http_exception)
    app.register_error_handler(Exception, _unexpected)
