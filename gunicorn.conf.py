"""gunicorn settings for the sensor classifier: `gunicorn -c gunicorn.conf.py service.wsgi:app`.

Every value comes from `service.settings.ServerSettings` (environment variables `SENSOR_*`);
command-line flags such as `--bind` still take precedence over this file.
"""

import os
import tempfile
from pathlib import Path

# One BLAS/OpenMP thread per worker: the workers already use every CPU, and each spawning a thread
# per core would thrash them. Set before anything imports numpy; workers inherit it.
for _variable in (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
):
    os.environ[_variable] = "1"

# prometheus_client's multiprocess mode keeps each worker's metrics in files in this directory and
# must see it before it is imported; without a directory from the environment, use a fresh one.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sensor-prometheus-")
_metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
_metrics_dir.mkdir(parents=True, exist_ok=True)
# Where the workers keep the last artifact that loaded (service.runtime), shared by this server's
# master and workers; without one from the environment, a fresh one.
if not os.environ.get("SENSOR_STATE_DIR"):
    os.environ["SENSOR_STATE_DIR"] = tempfile.mkdtemp(prefix="sensor-state-")

from service.gunicorn_support import available_cpus  # noqa: E402
from service.settings import ServerSettings  # noqa: E402

_server = ServerSettings()

bind = [_server.bind]
workers = _server.workers or available_cpus()
# The model answers in microseconds, so a worker is CPU-bound and needs no threads, but must never
# block on a slow client. gevent gives each connection a greenlet (keep-alive, slow clients cost a
# greenlet, not a worker). gevent_pywsgi costs about 40 µs less CPU per request (README,
# "Benchmarks") but parses HTTP itself: malformed requests would get its bare 400s instead of
# gunicorn's limits and the service's JSON error envelope.
worker_class = "gevent"
worker_connections = _server.worker_connections
keepalive = _server.keepalive
timeout = _server.timeout
graceful_timeout = _server.graceful_timeout
max_requests = _server.max_requests
max_requests_jitter = _server.max_requests_jitter
# The app loads its model in each worker, after gevent has patched the worker.
preload_app = False
# Nothing here is managed through gunicorn's control socket; several servers (tests, replicas
# sharing a home directory) would otherwise fight over one socket path.
control_socket_disable = True

logger_class = "service.gunicorn_support.JsonLogger"
accesslog = "-" if _server.access_log else None
errorlog = "-"
loglevel = _server.log_level.lower()
# The app's own log lines go to stderr through the root logger (configured in service.wsgi).
capture_output = False


def on_starting(server):
    """Before any worker: start from an empty metrics directory, and refuse a bad model.

    Not emptied by a master that a binary upgrade (USR2) started: the old master's workers are
    still serving and counting into those files, and their counts must outlive them.
    """
    if not server.master_pid:
        for stale in _metrics_dir.glob("*.db"):
            stale.unlink(missing_ok=True)
    from service.gunicorn_support import (
        check_model,
        honour_connection_close,
        install_json_errors,
        install_lazy_continue,
        install_lingering_close,
    )

    check_model()
    # Workers are forked from this process and inherit the patched error writer, headers, 100
    # Continue and close.
    install_json_errors()
    honour_connection_close()
    install_lazy_continue()
    install_lingering_close()


def pre_exec(server):
    """A binary upgrade (USR2) starts the new master with the environment gunicorn started with:
    the directories made above go with it, so that both masters count into one metrics directory
    and fall back on one last good copy."""
    for variable in ("PROMETHEUS_MULTIPROC_DIR", "SENSOR_STATE_DIR"):
        server.cfg.env_orig[variable] = os.environ[variable]


def child_exit(server, worker):
    """A worker is gone: its live gauges leave the metrics, its counts go to the archive."""
    from service.metric_files import process_gone

    process_gone(worker.pid)


def post_fork(server, worker):
    """Until the worker installs its own handlers, let a stop signal end it at once.

    A forked worker inherits the arbiter's handlers, which only queue the signal for the arbiter's
    loop, and no such loop runs in the worker: a SIGTERM arriving while a gevent worker is still
    patching (before it has accepted anything) was swallowed, and shutdown then waited the whole
    graceful_timeout (measured: 25 s instead of 0.5 s).
    """
    import signal

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT):
        signal.signal(signum, signal.SIG_DFL)


def post_worker_init(worker):
    """The app is loaded: its objects leave the cyclic garbage collector's generations.

    A worker holds about 60,000 objects after start-up (the model, numpy, pydantic's schemas,
    Flask), and a full collection walked them all: its first one under load stopped the worker
    for 47-63 ms, and every connection it served waited that long. After `gc.freeze()` a full
    collection takes under 1 ms; maximum latency at 16 connections went from 59-76 ms to 23 ms
    (wrk, 20 s runs; p99 unchanged). Frozen objects are never collected: whatever of the first
    model only a reference cycle holds (its pydantic schema classes) outlives a rollout until
    the worker is replaced (max_requests); everything loaded later is collected as before.
    """
    import gc

    gc.freeze()


def worker_exit(server, worker):
    """The worker is leaving: its logging ends now, not during interpreter shutdown."""
    # gunicorn also calls this in the master, for a worker found already gone.
    if os.getpid() != worker.pid:
        return
    from service.gunicorn_support import finish_logging

    finish_logging()


def pre_request(worker, req):
    """Before each request: a keep-alive connection that has carried enough ends with this one."""
    from service.gunicorn_support import renew_connection

    renew_connection(worker, req, _server.keepalive_requests)


def post_request(worker, req, environ, resp):
    """After each response (already sent), a connection that hogs its worker lets the others go."""
    from service.gunicorn_support import take_turns

    take_turns(worker)
