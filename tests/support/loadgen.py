"""A small HTTP/1.1 keep-alive load generator on asyncio, bounded in requests and time.

Python's HTTP clients cost more CPU per request than the service does; on a 2-core machine a
thread per connection with httpx would measure the client. This one writes the request bytes
itself and parses only the status line, Content-Length and the answer's `model_version`.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import orjson


@dataclass(frozen=True)
class Outcome:
    """One request: when it was sent (monotonic), its latency, and what came back.

    ``error`` is None only for a 200 whose JSON body carries a `model_version`.
    """

    sent: float
    latency: float
    status: int | None
    version: str | None
    error: str | None
    tag: str


@dataclass
class LoadResult:
    outcomes: list[Outcome] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def errors(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.error is not None]

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def percentile(self, q: float) -> float:
        """Latency percentile ``q`` (0-100) in seconds, nearest-rank."""
        latencies = sorted(o.latency for o in self.outcomes)
        if not latencies:
            return float("nan")
        rank = max(0, min(len(latencies) - 1, round(q / 100.0 * len(latencies)) - 1))
        return latencies[rank]


def post_request(path: str, body: bytes, tag: str) -> bytes:
    """A keep-alive POST of a JSON body; ``tag`` goes in User-Agent so access logs can be joined."""
    return (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUser-Agent: {tag}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Status, body, and whether the server said it closes the connection."""
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    closing = False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"connection":
            closing = value.strip().lower() == b"close"
    body = await reader.readexactly(length) if length else b""
    return status, body, closing


async def _connection(
    index: int,
    host: str,
    port: int,
    path: str,
    body_for: Callable[[int], bytes],
    result: LoadResult,
    budget: list[int],
    stop_at: float,
    stop: threading.Event,
    request_timeout: float,
    requests_per_connection: int | None,
    pipeline: int,
) -> None:
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    n = on_this_connection = 0
    in_flight: deque[tuple[str, float]] = deque()

    def more() -> bool:
        return time.monotonic() < stop_at and not stop.is_set() and budget[0] > 0

    while more() or in_flight:
        try:
            if writer is None:
                if not more():
                    break
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection(host, port), request_timeout
                )
            assert reader is not None
            # Keep ``pipeline`` requests on the wire: the server finds the next one already
            # there when it has answered one, as from a client that never pauses.
            while (
                more()
                and len(in_flight) < pipeline
                and not (requests_per_connection and on_this_connection >= requests_per_connection)
            ):
                budget[0] -= 1
                tag = f"load-{index}-{n}"
                n += 1
                on_this_connection += 1
                in_flight.append((tag, time.monotonic()))
                writer.write(post_request(path, body_for(index), tag))
            if not in_flight:
                writer.close()
                reader = writer = None
                on_this_connection = 0
                continue
            status, body, closing = await asyncio.wait_for(_read_response(reader), request_timeout)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
            now = time.monotonic()
            for tag, sent in in_flight:
                result.outcomes.append(Outcome(sent, now - sent, None, None, repr(exc), tag))
            in_flight.clear()
            if writer is not None:
                writer.close()
            reader = writer = None
            on_this_connection = 0
            continue
        tag, sent = in_flight.popleft()
        latency = time.monotonic() - sent
        version = error = None
        if status == 200:
            try:
                version = orjson.loads(body)["model_version"]
            except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
                error = f"200 with a body that is no answer: {exc!r}: {body[:200]!r}"
        else:
            error = f"status {status}: {body[:200]!r}"
        result.outcomes.append(Outcome(sent, latency, status, version, error, tag))
        # Like any correct client: no further request on a connection the server is closing;
        # requests already pipelined behind that answer are lost, and counted as failed.
        if closing:
            now = time.monotonic()
            for lost, lost_sent in in_flight:
                result.outcomes.append(
                    Outcome(lost_sent, now - lost_sent, None, None, "closed by the server", lost)
                )
            in_flight.clear()
        if closing or (
            not in_flight
            and requests_per_connection
            and on_this_connection >= requests_per_connection
        ):
            writer.close()
            reader = writer = None
            on_this_connection = 0
    if writer is not None:
        writer.close()


def run_load(
    host: str,
    port: int,
    *,
    connections: int,
    seconds: float,
    max_requests: int,
    body_for: Callable[[int], bytes],
    path: str = "/classify",
    stop: threading.Event | None = None,
    request_timeout: float = 10.0,
    requests_per_connection: int | None = None,
    pipeline: int = 1,
) -> LoadResult:
    """Keep ``connections`` keep-alive connections busy for ``seconds`` or ``max_requests``.

    A failed request is recorded and its connection replaced by a new one; so is a connection
    that has carried ``requests_per_connection`` requests. Each connection keeps ``pipeline``
    requests in flight (HTTP/1.1 pipelining). ``stop`` ends the load early.
    """
    result = LoadResult()
    budget = [max_requests]
    stop = stop or threading.Event()

    async def main() -> None:
        result.started = time.monotonic()
        stop_at = result.started + seconds
        await asyncio.gather(
            *(
                _connection(
                    i,
                    host,
                    port,
                    path,
                    body_for,
                    result,
                    budget,
                    stop_at,
                    stop,
                    request_timeout,
                    requests_per_connection,
                    pipeline,
                )
                for i in range(connections)
            )
        )
        result.finished = time.monotonic()

    asyncio.run(main())
    return result


class BackgroundLoad:
    """`run_load` in a thread, so that a test can act on the server while requests fly."""

    def __init__(self, host: str, port: int, **kwargs: object) -> None:
        self.stop_event = threading.Event()
        self.result: LoadResult | None = None
        self._error: BaseException | None = None

        def target() -> None:
            try:
                self.result = run_load(host, port, stop=self.stop_event, **kwargs)  # type: ignore[arg-type]
            except BaseException as exc:
                self._error = exc

        self._thread = threading.Thread(target=target, name="load", daemon=True)

    def __enter__(self) -> BackgroundLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_event.set()
        self.join()

    def join(self, timeout: float = 60.0) -> LoadResult:
        self._thread.join(timeout)
        if self._thread.is_alive():
            raise TimeoutError("the load generator did not stop")
        if self._error is not None:
            raise self._error
        assert self.result is not None
        return self.result
