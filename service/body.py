"""Request bodies: read within the size and time limits, then parsed as JSON once; both APIs use it."""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import zlib
from collections.abc import Callable, Iterable
from typing import Any

import jiter
from werkzeug.wsgi import ClosingIterator

from service.errors import (
    JSON,
    Busy,
    MalformedRequest,
    PayloadTooLarge,
    RequestTimeout,
    UnsupportedMediaType,
    ValidationFailed,
)
from service.settings import Settings

Deadline = Callable[[float], contextlib.AbstractContextManager[Any]]
StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def body_deadline() -> Deadline:
    """How to bound the time spent reading a body, for the server we run in.

    Under gevent workers a `gevent.Timeout` cuts a stalled read off at the deadline (and only the
    greenlet of that client was waiting). Other servers bring their own socket timeouts.
    """
    gevent = _gevent()
    if gevent is not None:
        return lambda seconds: gevent.Timeout(seconds, False)
    return lambda seconds: contextlib.nullcontext()


def _gevent() -> Any:
    """The gevent module when this process serves on gevent's patched sockets, else None."""
    gevent = sys.modules.get("gevent")
    if gevent is not None:
        from gevent import monkey

        if monkey.is_module_patched("socket"):
            return gevent
    return None


# A body this large takes milliseconds to parse, while a gevent worker serves nobody else.
GIVE_WAY_BYTES = 64 * 1024


def give_way() -> None:
    """Under gevent, let the worker serve whatever else is ready first (one turn of its loop).

    Called before an expensive parse: a cheap request that arrived meanwhile is answered first,
    rather than after every large body that happens to be ahead of it (with 256 clients sending
    maximal bodies, legitimate p99 latency was up to 0.4 s without this). A short timer rather
    than `gevent.idle()`: under a flood the loop is never idle, and the large body would starve.
    """
    gevent = _gevent()
    if gevent is not None:
        gevent.sleep(0.001)


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
    coding = content_coding(environ)
    limit = settings.max_body_bytes
    budget: BodyBudget | None = environ.get(BodyBudget.ENVIRON_KEY)
    length_header = environ.get("CONTENT_LENGTH")
    length: int | None = None
    if length_header:
        length = byte_count("Content-Length", length_header, limit)
        if length is None:
            raise PayloadTooLarge(
                f"the body is {shown_number(length_header)} bytes; the limit is {limit}"
                " (SENSOR_MAX_BODY_BYTES)"
            )
    if budget is not None:
        # Before a byte is read: a chunked body may grow to the limit.
        budget.reserve(environ, limit if length is None else length)
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
    if coding is not None:
        data = decompressed(data, coding, limit)
        if budget is not None:
            budget.reserve(environ, len(data))
    return data


# Content codings of a request body (RFC 9110, 8.4.1): their zlib window bits. "deflate" is the
# zlib format, as tritonclient's request_compression_algorithm writes it.
CONTENT_CODINGS = {
    "gzip": 16 + zlib.MAX_WBITS,
    "x-gzip": 16 + zlib.MAX_WBITS,
    "deflate": zlib.MAX_WBITS,
}
ACCEPT_ENCODING = "gzip, deflate"


def content_coding(environ: dict[str, Any]) -> str | None:
    """The request body's Content-Encoding, one of ``CONTENT_CODINGS``, or None when it has none.

    Raises 415 for any other coding, before the body is read, saying in Accept-Encoding which
    are read.
    """
    coding = str(environ.get("HTTP_CONTENT_ENCODING", "")).strip().lower()
    if not coding or coding == "identity":
        return None
    if coding not in CONTENT_CODINGS:
        raise UnsupportedMediaType(
            f"Content-Encoding {coding!r} is not supported; send the body as {ACCEPT_ENCODING}"
            " or uncompressed",
            headers={"Accept-Encoding": ACCEPT_ENCODING},
        )
    return coding


def decompressed(data: bytes, coding: str, limit: int) -> bytes:
    """The body ``data`` sent with Content-Encoding ``coding`` (from ``content_coding``), at most
    ``limit`` bytes of it.

    Raises 400 for data that is not in that coding or is cut short, and 413 as soon as it would
    decompress to more than ``limit``: a small body cannot unpack into a large one.
    """
    wbits = CONTENT_CODINGS[coding]
    name = "gzip" if "gzip" in coding else coding
    parts: list[bytes] = []
    size = 0
    rest = data
    while rest:  # a gzip body may hold several members, one after the other
        stream = zlib.decompressobj(wbits)
        try:
            part = stream.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            raise MalformedRequest(f"malformed {name} body: {exc}") from None
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(
                f"the {name} body decompresses to more than the limit of {limit} bytes"
                " (SENSOR_MAX_BODY_BYTES)"
            )
        if not stream.eof:
            raise MalformedRequest(f"the {name} body is cut short")
        parts.append(part)
        rest = stream.unused_data
        if rest and wbits == zlib.MAX_WBITS:
            raise MalformedRequest(f"data after the end of the {name} body")
    return b"".join(parts)


def byte_count(header: str, value: str, at_most: int) -> int | None:
    """The number of bytes ``value``, the request's ``header``, gives; None if over ``at_most``.

    Raises MalformedRequest (400) unless it is 1*DIGIT (RFC 9110): int() would also take a
    sign, spaces, underscores and other scripts' digits. Compared as text first, since int()
    refuses numbers of more than 4,300 digits.
    """
    if not (value.isascii() and value.isdigit()):
        raise MalformedRequest(f"invalid {header}: {value!r}")
    digits = value.lstrip("0") or "0"
    if len(digits) > len(str(at_most)) or int(digits) > at_most:
        return None
    return int(digits)


def shown_number(digits: str) -> str:
    """A decimal number as a message quotes it: itself, or how long it is when very long."""
    digits = digits.lstrip("0") or "0"
    return digits if len(digits) <= 20 else f"a number of {len(digits)} digits"


class BodyBudget:
    """The bytes of request bodies and unsent answers one worker holds at once, bounded.

    A request reserves its body's length before it is read (`read_body`); its answer's length
    is added once the app has answered; all of it is given back when the answer has been sent
    (the WSGI iterable's `close`). A request that would take the total over ``limit`` gets a
    503 with Retry-After before its body is read. So however many clients send maximal bodies,
    or never read their answers, a worker holds at most about ``limit`` bytes of them (plus one
    answer per request admitted), and its memory stays bounded.
    """

    ENVIRON_KEY = "sensor.body_budget"
    _HELD = "sensor.body_budget.held"

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0
        self._lock = threading.Lock()  # a gevent lock under gevent workers: never contended

    def reserve(self, environ: dict[str, Any], n: int) -> None:
        with self._lock:
            if self.held + n > self.limit:
                raise Busy(
                    f"this worker holds {self.held} bytes of request bodies and answers; another"
                    f" {n} would pass SENSOR_MAX_BYTES_IN_FLIGHT ({self.limit}): retry shortly"
                )
            self.held += n
        environ[self._HELD] = environ.get(self._HELD, 0) + n

    def _release(self, environ: dict[str, Any]) -> None:
        n = environ.pop(self._HELD, 0)
        with self._lock:
            self.held -= n

    def middleware(self, app: WSGIApp) -> WSGIApp:
        """Wrap ``app`` so that every request's bytes are counted until its answer is sent."""

        def counted(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
            environ[self.ENVIRON_KEY] = self
            answer_length = 0

            def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
                nonlocal answer_length
                for name, value in headers:
                    if name.lower() == "content-length" and value.isdigit():
                        answer_length = int(value)
                return start_response(status, headers, exc_info)

            try:
                iterable = app(environ, start)
            except BaseException:
                self._release(environ)
                raise
            if answer_length:
                with self._lock:  # counted, never refused: the answer exists already
                    self.held += answer_length
                environ[self._HELD] = environ.get(self._HELD, 0) + answer_length
            return ClosingIterator(iterable, lambda: self._release(environ))

        return counted


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


def _integer(digits: str) -> int | float:
    """A JSON integer; one of more digits than Python converts is ±inf, for validation to refuse.

    It is well-formed JSON with a value out of any range: a 422, like ``1e999``, not a 400.
    """
    if len(digits.lstrip("-")) > sys.get_int_max_str_digits():
        return float(digits)
    return int(digits)


_DECODER = json.JSONDecoder(object_pairs_hook=_unique_keys, parse_int=_integer)


def too_deep(max_depth: int) -> MalformedRequest:
    return MalformedRequest(
        f"JSON nesting is deeper than the limit of {max_depth} levels (SENSOR_MAX_JSON_DEPTH)"
    )


def parse_json(body: bytes, max_depth: int) -> Any:
    """The document in ``body`` (UTF-8 JSON); raises MalformedRequest (400) or DuplicateKey (422).

    jiter (pydantic's JSON parser) parses it, refusing duplicate keys itself (orjson and
    pydantic's own JSON input keep the last value silently): 33 µs for a batch of 100 readings
    with ids, against 153 µs for Python's parser with a duplicate-key hook (timeit, 2 CPUs). A
    body jiter refuses goes to ``parse_json_in_python``, whose verdict and message stand, so
    that errors read the same whichever parser found them, and what it alone accepts (a lone
    surrogate, nesting deeper than jiter's limit of 200 levels) is judged as before. The tests
    check on generated documents that jiter gives exactly what Python's parser gives.
    """
    if len(body) >= GIVE_WAY_BYTES:
        give_way()
    try:
        return jiter.from_json(body, catch_duplicate_keys=True, cache_mode="keys")
    except ValueError:
        return parse_json_in_python(body, max_depth)


def parse_json_in_python(body: bytes, max_depth: int) -> Any:
    """``parse_json`` with Python's own parser: the reference, and the verdict on what jiter refuses.

    NaN and Infinity literals parse, to be refused by validation as non-finite numbers. A
    document nested deeper than the parser's recursion limit is refused here; a shallower one
    too deep for ``max_depth`` fails validation and is then judged by ``nesting_exceeds``.
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
