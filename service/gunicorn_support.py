"""What `gunicorn.conf.py` needs from the service: CPU quota, JSON access log, start-up model check,
fair turns between a gevent worker's connections, JSON for gunicorn's own errors, and HTTP/1.1's
rules for `100 Continue` and for closing a connection that gunicorn's gevent worker left out."""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import math
import os
import socket
from pathlib import Path
from time import monotonic
from typing import Any

import orjson
from gunicorn.glogging import Logger

CGROUP_ROOT = Path("/sys/fs/cgroup")


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def cgroup_cpu_quota(
    root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")
) -> float | None:
    """CPUs this process's cgroup may use per period (e.g. 1.5), or None when unlimited.

    cgroup v2: `cpu.max` ("max 100000" or "150000 100000") of this process's cgroup and of every
    parent up to the root, the smallest limit winning. cgroup v1: `cpu.cfs_quota_us` over
    `cpu.cfs_period_us` (a quota of -1 means none).
    """
    limits: list[float] = []
    relative = "/"
    for line in (_read(proc_cgroup) or "").splitlines():
        if line.startswith("0::"):
            relative = line[3:] or "/"
    directory = root / relative.lstrip("/")
    while True:
        text = _read(directory / "cpu.max")
        if text:
            quota, _, period = text.partition(" ")
            if quota != "max" and period:
                limits.append(int(quota) / int(period))
        if directory == root or root not in directory.parents:
            break
        directory = directory.parent
    for v1 in (root / "cpu", root / "cpu,cpuacct"):
        quota_text, period_text = _read(v1 / "cpu.cfs_quota_us"), _read(v1 / "cpu.cfs_period_us")
        if quota_text and period_text and int(quota_text) > 0 and int(period_text) > 0:
            limits.append(int(quota_text) / int(period_text))
    return min(limits) if limits else None


def available_cpus(root: Path = CGROUP_ROOT, proc_cgroup: Path = Path("/proc/self/cgroup")) -> int:
    """CPUs this process can really use: the CPU affinity mask, capped by the cgroup quota.

    A quota of 1.5 CPUs counts as 2: a second worker uses the half CPU that one would leave idle.
    `os.cpu_count()` alone is wrong in a container, where it reports every core of the node.
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    quota = cgroup_cpu_quota(root, proc_cgroup)
    if quota is not None:
        cpus = min(cpus, math.ceil(quota))
    return max(1, cpus)


def _status_code(status: Any) -> int | None:
    if isinstance(status, bytes):
        status = status.decode("latin-1")
    if isinstance(status, str):
        status = status.split(None, 1)[0] if status else ""
    try:
        return int(status)
    except (TypeError, ValueError):
        return None


class JsonLogger(Logger):
    """gunicorn's logger with one JSON object per request as the access log line.

    Lines on stdout go out with one `write` each, so lines from several workers never interleave.
    """

    def access(self, resp: Any, req: Any, environ: dict[str, Any], request_time: Any) -> None:
        if not self.cfg.accesslog:
            return
        record = {
            "time": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            "type": "access",
            "remote_addr": environ.get("REMOTE_ADDR"),
            "method": environ.get("REQUEST_METHOD"),
            "path": environ.get("PATH_INFO"),
            "query": environ.get("QUERY_STRING") or None,
            "protocol": environ.get("SERVER_PROTOCOL"),
            "status": _status_code(getattr(resp, "status", None)),
            "bytes": getattr(resp, "sent", None),
            "duration_ms": round(request_time.total_seconds() * 1000.0, 3),
            "user_agent": environ.get("HTTP_USER_AGENT"),
            "pid": os.getpid(),
        }
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        try:
            if self.cfg.accesslog == "-":
                os.write(1, line)
            else:
                self.access_log.info(line[:-1].decode())
        except OSError:
            # A closed or full stdout must not fail the request that was already answered.
            pass


def check_model() -> None:
    """Load the configured artifact once in gunicorn's master; exit non-zero if it is unusable.

    Only the configured file counts here: the first start with no usable model fails fast.

    Without this, every worker would fail to boot on its own and the reason would be buried in
    gunicorn's output; this way there is one log line naming the file, the problem and the fix.
    """
    from service.runtime import ModelLoadError, keep_copy, load_model, startup_message
    from service.settings import Settings

    settings = Settings()
    try:
        loaded = load_model(settings.model_path, settings)
    except ModelLoadError as exc:
        logging.getLogger("gunicorn.error").critical(startup_message(exc, settings.model_path))
        raise SystemExit(1) from None
    # The workers' fallback starts as this model: a first start never falls back to an older one.
    keep_copy(loaded, settings.state_dir)


def take_turns(worker: Any) -> None:
    """After a response: let the worker's other ready connections go first, if this one hogs.

    A gevent greenlet only gives way when it would block. A keep-alive client that sends its next
    request at once finds it already read, so one connection can be served again and again while
    the worker's other connections, and its model watcher, wait: at 16 connections on 2 CPUs p99
    latency was over a second. So when the event loop has not run since this greenlet's previous
    response (`loop.iteration` unchanged: it never blocked), it waits until the loop has served
    every other ready connection and timer (`gevent.idle`). A greenlet that blocked in between
    has already given way and pays nothing. `gevent.sleep(0)` would not do: it does not poll I/O.
    """
    if type(worker).__module__ != "gunicorn.workers.ggevent":
        return
    import gevent

    loop = gevent.get_hub().loop
    greenlet = gevent.getcurrent()
    if getattr(greenlet, "_sensor_served_at", None) == loop.iteration:
        gevent.idle()
    greenlet._sensor_served_at = loop.iteration  # type: ignore[attr-defined]


def renew_connection(worker: Any, req: Any, limit: int) -> None:
    """Before a request: make it the last of its keep-alive connection once that has carried
    ``limit`` (0: never).

    A connection stays with the worker that accepted it. When a worker is replaced (after
    max_requests, or a crash), its clients reconnect at once, while only the other workers
    accept: they all land there and stay. Measured with wrk's 16 keep-alive connections on 2
    workers: after the first replacement one worker held all 16 and the other none, until the
    next replacement moved them all back, and requests/s fell to 0.6x of the same run without
    replacements. Ending each connection after ``limit`` requests lets them spread again. The
    answer says `Connection: close` (gunicorn reads the request's ``must_close``), so a client
    never sends into a connection being closed; one that pipelines sends again what it had
    queued behind that answer, as HTTP/1.1 asks of it (RFC 9112, 9.3.2). Under gevent only,
    where each connection has a greenlet of its own to count on.
    """
    if not limit or type(worker).__module__ != "gunicorn.workers.ggevent":
        return
    import gevent

    greenlet = gevent.getcurrent()
    served = getattr(greenlet, "_sensor_requests", 0) + 1
    greenlet._sensor_requests = served  # type: ignore[attr-defined]
    if served >= limit:
        req.must_close = True


def honour_connection_close() -> None:
    """Make an answer the app marks `Connection: close` end its connection.

    The answers that leave a body unread (408, 413, 503 and a broken chunked body) must close
    the connection: the unread rest would otherwise be taken as the next request. gunicorn drops
    every hop-by-hop header an app sends (PEP 3333 forbids them), then wrote `Connection:
    keep-alive` and kept reading: after a 408 for a body 100 bytes short, the next request lost
    its first 100 bytes to the old body and was refused as a bad request line. The app's header
    now sets the answer's ``must_close``, from which gunicorn writes its own `Connection: close`
    and closes after the answer.
    """
    from gunicorn.http.wsgi import Response

    if getattr(Response.process_headers, "sensor_connection_close", False):
        return
    process_headers = Response.process_headers

    def process_headers_closing(self: Any, headers: Any) -> None:
        process_headers(self, headers)
        for name, value in headers:
            if name.lower() == "connection" and "close" in _tokens(value):
                self.force_close()

    process_headers_closing.sensor_connection_close = True  # type: ignore[attr-defined]
    Response.process_headers = process_headers_closing  # type: ignore[method-assign]


# How long a connection being closed is still read from (gunicorn's own `close_graceful`, which
# its sync and gthread workers use and its gevent worker does not, waits as long).
LINGER_SECONDS = 2.0
# What lingering connections read is discarded: one buffer serves them all, however many.
_DISCARDED = bytearray(256 * 1024)


def linger(sock: Any) -> None:
    """Close ``sock`` after its last answer as RFC 9112 (9.6) asks: half-close it, then read and
    discard what the client still sends until it closes too or LINGER_SECONDS have passed.

    Closed with bytes unread, a socket is reset by the kernel, and a client still sending (the
    body of a request answered 413 or 503 before it was read, requests pipelined behind the last
    one a connection carries) lost the answer: Python's http.client, so urllib3 and requests,
    sends the whole body before it reads, and got ConnectionResetError instead of the 413. Each
    read is followed by a turn of the worker's other connections (`body.give_way`), so a client
    that keeps sending costs the worker at most one read per turn for those seconds.
    """
    from service.body import give_way

    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError:
        return
    deadline = monotonic() + LINGER_SECONDS
    while (left := deadline - monotonic()) > 0:
        try:
            sock.settimeout(left)
            if not sock.recv_into(_DISCARDED):
                return
        except OSError:  # the timeout, a reset
            return
        give_way()


def install_lingering_close() -> None:
    """Make gunicorn's gevent worker close with `linger` each connection an answer ends
    (`Connection: close`); its own error answers linger too (`install_json_errors`)."""
    from gunicorn.workers.base_async import AsyncWorker

    if getattr(AsyncWorker.handle_request, "sensor_linger", False):
        return
    handle_request = AsyncWorker.handle_request

    def handle_request_lingering(
        self: Any, listener_name: Any, req: Any, sock: Any, addr: Any
    ) -> Any:
        try:
            return handle_request(self, listener_name, req, sock, addr)
        except StopIteration:  # the answer ended the connection
            linger(sock)
            raise

    handle_request_lingering.sensor_linger = True  # type: ignore[attr-defined]
    AsyncWorker.handle_request = handle_request_lingering  # type: ignore[method-assign]


_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class _ContinueOnRead:
    """A request's ``wsgi.input`` that tells the client waiting on `Expect: 100-continue` to send
    its body when the app first reads it, and not before (RFC 9110, 10.1.1; PEP 3333)."""

    def __init__(self, body: Any, sock: Any, resp: Any) -> None:
        self._body, self._sock, self._resp = body, sock, resp
        self.pending = True

    def _asked(self) -> None:
        if self.pending:
            self.pending = False
            if not self._resp.headers_sent:  # no 1xx after the final answer has begun
                self._sock.sendall(_CONTINUE)

    def read(self, size: int | None = None) -> bytes:
        self._asked()
        return self._body.read(size)  # type: ignore[no-any-return]

    def readline(self, size: int | None = None) -> bytes:
        self._asked()
        return self._body.readline(size)  # type: ignore[no-any-return]

    def readlines(self, size: int | None = None) -> list[bytes]:
        self._asked()
        return self._body.readlines(size)  # type: ignore[no-any-return]

    def __iter__(self) -> Any:
        self._asked()
        return iter(self._body)


def install_lazy_continue() -> None:
    """Answer `Expect: 100-continue` only once the app reads the body.

    gunicorn sent `100 Continue` as soon as it had read the head, before the app could refuse
    the request, so a client that waits for it (curl, for a body over 1 MiB) sent all of a body
    that was to be refused unread (413, 415, 503, 404): with curl 7.88, 2 MB uploaded for a 413.
    Now a refusal comes first and the body is never sent; the answer then ends the connection,
    since the client may send the body yet or not (RFC 9110, 10.1.1).
    """
    from gunicorn.http import wsgi

    if getattr(wsgi.create, "sensor_lazy_continue", False):
        return
    create = wsgi.create

    def create_continuing_lazily(req: Any, sock: Any, *args: Any, **kwargs: Any) -> Any:
        expected = getattr(req, "_expected_100_continue", False)
        if expected:
            req._expected_100_continue = False
        resp, environ = create(req, sock, *args, **kwargs)
        chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
        if expected and (chunked or environ.get("CONTENT_LENGTH", "0") not in ("", "0")):
            body = _ContinueOnRead(environ["wsgi.input"], sock, resp)
            environ["wsgi.input"] = body
            process_headers = resp.process_headers

            def process_headers_then_close(headers: Any) -> None:
                process_headers(headers)
                if body.pending:  # refused unread: where the next request starts is unknown
                    resp.force_close()

            resp.process_headers = process_headers_then_close
        return resp, environ

    create_continuing_lazily.sensor_lazy_continue = True  # type: ignore[attr-defined]
    wsgi.create = create_continuing_lazily


def _tokens(value: str) -> set[str]:
    return {token.strip() for token in value.lower().split(",")}


def finish_logging() -> None:
    """As a worker exits: flush and close every log handler while gevent still works.

    gevent's monkey-patching turns logging's module lock into one that asks gevent which greenlet
    holds it. Each handler is also listed by a weak reference whose callback takes that lock when
    the handler is freed, and handlers are freed late in interpreter shutdown, after gevent's
    module is gone: every worker that exited (at SIGTERM, or recycled after max_requests) wrote
    an "Exception ignored in: _removeHandlerRef ... TypeError: 'NoneType' object is not callable"
    traceback to stderr (gevent/gevent#2148, open). Shutting logging down here and dropping
    those weak references first leaves nothing to call back. A handler still logs afterwards: a
    closed StreamHandler keeps its stream.
    """
    logging.shutdown()
    # The list `logging.shutdown` walks by default; emptied, its callbacks cannot run.
    logging._handlerList.clear()  # type: ignore[attr-defined]


# The path of the request whose parse error gunicorn is answering, while it answers it. A context
# variable: each gevent greenlet (one per connection) has its own.
_ERROR_PATH: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sensor_error_path", default=None
)


def _request_path(req: Any, exc: BaseException) -> str | None:
    """The path of the request gunicorn failed on, as far as it was read (None: unknown)."""
    for candidate in (req, getattr(exc, "req", None), getattr(exc, "sensor_request", None)):
        path = getattr(candidate, "path", None)
        if isinstance(path, str):
            return path
        if isinstance(candidate, str):  # the request line (or target) gunicorn could not parse
            words = candidate.split()
            target = words[0] if len(words) == 1 else words[1] if len(words) > 1 else ""
            return target.partition("?")[0]
    return None


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answer (a request it cannot parse) in the envelope of its API.

    gunicorn answers such requests before the app sees them, with an HTML page; this replaces
    `gunicorn.util.write_error` so that every error status carries the JSON envelope: the Open
    Inference Protocol's `{"error": "..."}` for its paths, the service's for any other (or for a
    request whose path gunicorn never read).
    """
    from gunicorn import util

    from service.protocol_paths import is_v2_path

    path, message = _ERROR_PATH.get(), mesg or reason
    if path is not None and is_v2_path(path):
        payload: dict[str, Any] = {"error": message}
    else:
        payload = {"error": {"status": status_int, "message": message, "details": []}}
    body = orjson.dumps(payload)
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install_json_errors() -> None:
    """Make gunicorn's parser errors (bad Content-Length, request line, headers) JSON.

    gunicorn's `Worker.handle_error` knows the request (when it got that far) but calls
    `util.write_error` without it, so it is wrapped to make the path known meanwhile; and a
    request that fails after its request line is read (its headers) carries itself on the
    error, as gunicorn already does for some header errors. The connection then closes with
    `linger`, so that a client still sending the request reads the answer.
    """
    from gunicorn import util
    from gunicorn.http.errors import ParseException
    from gunicorn.http.message import Request
    from gunicorn.workers.base import Worker
    from gunicorn.workers.base_async import AsyncWorker

    if getattr(Worker.handle_error, "sensor_protocol_errors", False):
        return
    handle_error = Worker.handle_error
    parse = Request.parse

    def handle_error_knowing_the_path(
        self: Any, req: Any, client: Any, addr: Any, exc: BaseException
    ) -> None:
        token = _ERROR_PATH.set(_request_path(req, exc))
        try:
            handle_error(self, req, client, addr, exc)
        finally:
            _ERROR_PATH.reset(token)
        if isinstance(self, AsyncWorker):  # the rest of a request it could not parse is unread
            linger(client)

    def parse_remembering_the_request(self: Any, unreader: Any) -> Any:
        try:
            return parse(self, unreader)
        except ParseException as exc:
            if self.path is not None:
                exc.sensor_request = self  # type: ignore[attr-defined]
            raise

    handle_error_knowing_the_path.sensor_protocol_errors = True  # type: ignore[attr-defined]
    Worker.handle_error = handle_error_knowing_the_path  # type: ignore[method-assign]
    Request.parse = parse_remembering_the_request  # type: ignore[method-assign]
    util.write_error = write_json_error
