"""What `gunicorn.conf.py` needs from the service: CPU quota, JSON access log, start-up model check,
and fair turns between a gevent worker's connections."""

from __future__ import annotations

import datetime as dt
import logging
import math
import os
from pathlib import Path
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

    Without this, every worker would fail to boot on its own and the reason would be buried in
    gunicorn's output; this way there is one log line naming the file, the problem and the fix.
    """
    from service.runtime import ModelLoadError, load_model, startup_message
    from service.settings import Settings

    settings = Settings()
    try:
        load_model(settings.model_path, settings)
    except ModelLoadError as exc:
        logging.getLogger("gunicorn.error").critical(startup_message(exc, settings.model_path))
        raise SystemExit(1) from None


def write_json_error(sock: Any, status_int: int, reason: str, mesg: str) -> None:
    """gunicorn's own error answer (a request it cannot parse) in the service's JSON envelope.

    gunicorn answers such requests before the app sees them, with an HTML page; this replaces
    `gunicorn.util.write_error` so that every error status carries the one envelope.
    """
    from gunicorn import util

    body = orjson.dumps({"error": {"status": status_int, "message": mesg or reason, "details": []}})
    head = (
        f"HTTP/1.1 {status_int} {reason}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    util.write_nonblock(sock, head.encode("latin-1") + body)


def install_json_errors() -> None:
    """Make gunicorn's parser errors (bad Content-Length, request line, headers) JSON."""
    from gunicorn import util

    util.write_error = write_json_error


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
