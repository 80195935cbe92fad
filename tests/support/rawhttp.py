"""HTTP/1.1 over a bare socket, for requests no well-behaved client sends (bad bytes, stalls, huge bodies)."""

from __future__ import annotations

import re
import select
import socket
import time
from dataclasses import dataclass, field

import orjson

_STATUS_LINE = re.compile(rb"HTTP/1\.[01] (\d{3})")


@dataclass
class RawResponse:
    """A parsed response: status, headers (names lower-cased), body."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    def json(self) -> object:
        return orjson.loads(self.body)


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    """A connected TCP socket with ``timeout`` on every operation."""
    return socket.create_connection((host, port), timeout=timeout)


def request_bytes(
    method: str,
    path: str,
    body: bytes = b"",
    *,
    content_type: str | None = "application/json",
    content_length: int | str | None = None,
    headers: dict[str, str] | None = None,
) -> bytes:
    """The bytes of a request; ``content_length`` overrides the true length (may be a lie)."""
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if content_type is not None:
        lines.append(f"Content-Type: {content_type}")
    length = len(body) if content_length is None else content_length
    lines.append(f"Content-Length: {length}")
    lines.extend(f"{name}: {value}" for name, value in (headers or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def read_response(sock: socket.socket, deadline: float) -> RawResponse:
    """Read one response from ``sock``; raises TimeoutError after ``deadline`` (monotonic).

    The body is delimited by Content-Length, or by the connection closing when there is none.
    """
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = _recv(sock, deadline)
        if not chunk:
            raise ConnectionError(f"connection closed before a whole response head: {buffer!r}")
        buffer += chunk
    head, _, body = buffer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.split(b"\r\n")
    match = _STATUS_LINE.match(status_line)
    if match is None:
        raise ConnectionError(f"not an HTTP response: {status_line!r}")
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    status = int(match.group(1))
    if status < 200:  # an interim answer has no body; what follows it is the next answer
        if body:
            raise ConnectionError(f"bytes after an interim {status} read with it: {body!r}")
        return RawResponse(status, headers, b"")
    if "content-length" in headers:
        length = int(headers["content-length"])
        while len(body) < length:
            chunk = _recv(sock, deadline)
            if not chunk:
                raise ConnectionError(f"connection closed after {len(body)} of {length} body bytes")
            body += chunk
        body = body[:length]
    else:
        while chunk := _recv(sock, deadline):
            body += chunk
    return RawResponse(status, headers, body)


def _recv(sock: socket.socket, deadline: float) -> bytes:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise TimeoutError("no complete response before the deadline")
    sock.settimeout(remaining)
    return sock.recv(65536)


def exchange(host: str, port: int, data: bytes, timeout: float = 10.0) -> RawResponse:
    """Send ``data`` on a new connection and read one response within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    with connect(host, port, timeout) as sock:
        sock.sendall(data)
        return read_response(sock, deadline)


def send_until_answered(
    host: str,
    port: int,
    head: bytes,
    body_size: int,
    *,
    chunked: bool = False,
    timeout: float = 30.0,
) -> tuple[RawResponse, int]:
    """Send ``head`` then up to ``body_size`` bytes of body, stopping as soon as an answer arrives.

    For bodies the server should refuse without reading them all. ``chunked`` frames the body
    in 64 KiB chunks (the head must then say `Transfer-Encoding: chunked`). Returns the response
    and how many bytes were sent after the head before it came. The socket's timeout and the
    deadline bound every send, so a server that stops reading cannot hang the test.
    """
    deadline = time.monotonic() + timeout
    payload = b" " * 65536
    chunk = b"10000\r\n" + payload + b"\r\n" if chunked else payload
    sent = 0
    with connect(host, port, timeout) as sock:
        sock.sendall(head)
        while sent < body_size and time.monotonic() < deadline:
            readable, writable, _ = select.select([sock], [sock], [], 0.5)
            if readable:
                break
            if writable:
                try:
                    # Continue where a partial send stopped, so chunk framing stays intact.
                    offset = sent % len(chunk)
                    sent += sock.send(chunk[offset : offset + body_size - sent])
                except (BrokenPipeError, ConnectionResetError):
                    break
        return read_response(sock, deadline), sent
