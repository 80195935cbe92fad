"""Request bodies: read within the size and time limits, then parsed as JSON once; both APIs use it."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable
from typing import Any

from service.errors import (
    JSON,
    MalformedRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    ValidationFailed,
)
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


def server_parse_errors() -> tuple[type[BaseException], ...]:
    """What the server we run in raises reading a body it cannot parse (gunicorn: a bad chunk)."""
    errors = sys.modules.get("gunicorn.http.errors")
    return (errors.ParseException,) if errors is not None else ()


def media_type(environ: dict[str, Any]) -> str:
    """The request's Content-Type without parameters, lower case ("" when absent)."""
    return str(environ.get("CONTENT_TYPE", "")).partition(";")[0].strip().lower()


def read_body(
    environ: dict[str, Any],
    settings: Settings,
    deadline: Deadline,
    *,
    untyped_is_json: bool = False,
    media_types: tuple[str, ...] = (JSON,),
) -> bytes:
    """The request body, within the size and time limits; raises 415, 413, 408 or 400.

    ``media_types``: the Content-Types accepted (JSON by default). ``untyped_is_json``: a body
    sent without any Content-Type is accepted too (what the Open Inference Protocol's clients
    send); a wrong Content-Type is always a 415.
    """
    mimetype = media_type(environ)
    if mimetype not in media_types and (mimetype or not untyped_is_json):
        shown = mimetype or "no Content-Type"
        if media_types == (JSON,):
            expected = f"JSON (Content-Type: {JSON})"
        else:
            expected = "Content-Type " + " or ".join(media_types)
        raise UnsupportedMediaType(f"the body must be {expected}, got {shown}")
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
        try:
            if length is not None:
                data = stream.read(length) if length else b""
            elif "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
                data = stream.read(limit + 1)
            else:
                data = b""
        except server_parse_errors() as exc:
            # The client's framing is broken (a bad chunk): its fault, and the connection's
            # position in the stream is lost.
            raise MalformedRequest(
                f"malformed request body: {exc}", headers={"Connection": "close"}
            ) from None
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


class DuplicateKey(ValidationFailed):
    """A JSON object names one key twice: which value was meant is ambiguous (RFC 8259)."""

    def __init__(self, key: str) -> None:
        shown = printable(key)
        super().__init__(
            f"duplicate key {shown!r} in a JSON object",
            details=[{"loc": [shown], "message": "duplicate key"}],
        )


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise DuplicateKey(key)
            seen.add(key)
    return document


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys)


def too_deep(max_depth: int) -> MalformedRequest:
    return MalformedRequest(
        f"JSON nesting is deeper than the limit of {max_depth} levels (SENSOR_MAX_JSON_DEPTH)"
    )


def parse_json(body: bytes, max_depth: int) -> Any:
    """The document in ``body`` (UTF-8 JSON); raises MalformedRequest (400) or DuplicateKey (422).

    Python's own parser, because it can refuse duplicate keys (orjson and pydantic keep the
    last value silently). NaN and Infinity literals parse, to be refused by validation as
    non-finite numbers. A document nested deeper than the parser's recursion limit is refused
    here; a shallower one too deep for ``max_depth`` fails validation and is then judged by
    ``nesting_exceeds``.
    """
    try:
        text = body.decode("utf-8")
        return _DECODER.decode(text)
    except RecursionError:
        raise too_deep(max_depth) from None
    except UnicodeDecodeError as exc:
        raise MalformedRequest(
            f"malformed JSON: not UTF-8 ({exc.reason} at byte {exc.start})"
        ) from None
    except json.JSONDecodeError as exc:
        raise MalformedRequest(
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise MalformedRequest(f"malformed JSON: {exc}") from None


def nesting_exceeds(document: Any, limit: int) -> bool:
    """Whether the parsed ``document`` nests arrays/objects deeper than ``limit`` levels.

    `{"a": 1}` is one level, `[[]]` two. Walks at most ``limit`` + 1 levels, breadth first.
    """
    level = [document] if isinstance(document, dict | list) else []
    for _ in range(limit):
        level = [
            child
            for node in level
            for child in (node.values() if isinstance(node, dict) else node)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return bool(level)


def utf8_text(text: str) -> str:
    """``text`` itself, if it can be written as UTF-8; a pydantic validator for echoed strings.

    A JSON escape can spell a lone surrogate, which no UTF-8 answer could echo back.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (it holds a lone surrogate)") from None
    return text


def printable(text: str) -> str:
    """``text`` with lone surrogates (valid in a JSON escape, not in UTF-8) escaped."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
