"""`gunicorn.conf.py` as gunicorn executes it: settings, the JSON access log, signals and fair turns."""

from __future__ import annotations

import datetime as dt
import json
import os
import runpy
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from service.gunicorn_support import JsonLogger, available_cpus

REPO = Path(__file__).resolve().parents[2]


CONFIG_SETS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "PROMETHEUS_MULTIPROC_DIR",
    "SENSOR_STATE_DIR",
)


def load_config(env: dict[str, str], monkeypatch) -> dict:
    """Execute gunicorn.conf.py as gunicorn does; every variable it sets is restored afterwards."""
    for key in list(os.environ):
        if key.startswith("SENSOR_"):
            monkeypatch.delenv(key)
    for key in CONFIG_SETS:
        # Registers the current state (set or unset) with monkeypatch, so the test undoes it.
        monkeypatch.setenv(key, "placeholder")
        monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return runpy.run_path(str(REPO / "gunicorn.conf.py"))


def test_gunicorn_conf_reads_the_environment(monkeypatch, tmp_path: Path) -> None:
    config = load_config(
        {
            "SENSOR_BIND": "0.0.0.0:9000",
            "SENSOR_WORKERS": "3",
            "SENSOR_MAX_REQUESTS": "500",
            "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
        },
        monkeypatch,
    )
    assert config["bind"] == ["0.0.0.0:9000"]
    assert config["workers"] == 3
    assert config["worker_class"] == "gevent"
    assert config["max_requests"] == 500 and config["max_requests_jitter"] > 0
    assert config["graceful_timeout"] > 0 and config["keepalive"] > 0
    assert config["accesslog"] == "-"
    assert config["logger_class"] == "service.gunicorn_support.JsonLogger"
    assert callable(config["child_exit"]) and callable(config["on_starting"])
    assert (tmp_path / "metrics").is_dir()
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        assert os.environ[variable] == "1"


def test_gunicorn_conf_defaults_workers_to_the_cpus_and_makes_a_metrics_dir(monkeypatch) -> None:
    config = load_config({}, monkeypatch)
    assert config["workers"] == available_cpus()
    assert config["bind"] == ["127.0.0.1:8000"]
    metrics_dir = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    assert metrics_dir.is_dir() and metrics_dir.name.startswith("sensor-prometheus-")
    metrics_dir.rmdir()
    assert load_config({"SENSOR_ACCESS_LOG": "false"}, monkeypatch)["accesslog"] is None


def test_access_log_lines_are_json_objects(monkeypatch) -> None:
    written: list[bytes] = []
    monkeypatch.setattr(os, "write", lambda fd, data: written.append(data) or len(data))
    logger = JsonLogger.__new__(JsonLogger)
    logger.cfg = SimpleNamespace(accesslog="-")
    environ = {
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/classify",
        "QUERY_STRING": "",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_USER_AGENT": 'evil "agent"\n{',
    }
    response = SimpleNamespace(status="422 UNPROCESSABLE ENTITY", sent=123)
    logger.access(response, None, environ, dt.timedelta(microseconds=1500))
    assert len(written) == 1 and written[0].endswith(b"\n") and written[0].count(b"\n") == 1
    record = json.loads(written[0])
    assert record["type"] == "access" and record["status"] == 422 and record["bytes"] == 123
    assert record["path"] == "/classify" and record["method"] == "POST"
    assert record["duration_ms"] == 1.5 and record["user_agent"] == 'evil "agent"\n{'
    dt.datetime.fromisoformat(record["time"])


def test_no_access_log_when_disabled(monkeypatch) -> None:
    written: list[bytes] = []
    monkeypatch.setattr(os, "write", lambda fd, data: written.append(data) or len(data))
    logger = JsonLogger.__new__(JsonLogger)
    logger.cfg = SimpleNamespace(accesslog=None)
    logger.access(SimpleNamespace(status="200 OK", sent=1), None, {}, dt.timedelta(0))
    assert written == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGQUIT])
def test_a_stop_signal_ends_a_worker_that_has_not_installed_its_handlers(
    signum: int, tmp_path: Path
) -> None:
    # A forked worker starts with the arbiter's handlers, which only queue the signal for a loop
    # that never runs in the worker; post_fork must put the default action back.
    code = (
        "import os, runpy, signal, sys\n"
        "queued = []\n"
        f"signal.signal({int(signum)}, lambda *args: queued.append(args))  # the arbiter's kind\n"
        "config = runpy.run_path('gunicorn.conf.py')\n"
        "config['post_fork'](None, None)\n"
        f"os.kill(os.getpid(), {int(signum)})\n"
        "sys.exit(f'still running; the signal was queued: {queued}')\n"
    )
    done = run_with_config(code, tmp_path)
    assert done.returncode == -signum, done.stderr.decode()[-2000:]


def test_a_worker_freezes_what_the_loaded_app_holds(artifact: Path, tmp_path: Path) -> None:
    # A full collection must not walk the app's long-lived objects (README: a 47-63 ms stop of
    # the worker under load); gc.freeze moves them out of the collector's generations.
    code = (
        "import gc, os, runpy, sys\n"
        "config = runpy.run_path('gunicorn.conf.py')\n"
        "from service.wsgi import app\n"
        "tracked = len(gc.get_objects())\n"
        "config['post_worker_init'](None)\n"
        "print(tracked, gc.get_freeze_count(), len(gc.get_objects()))\n"
        "sys.stdout.flush()\n"
        "os._exit(0)  # the app's watcher and flusher threads would keep it alive\n"
    )
    state = tmp_path / "state"
    state.mkdir()
    done = run_with_config(
        code, tmp_path / "metrics", model_path=str(artifact), state_dir=str(state)
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    tracked, frozen, left = map(int, done.stdout.split())
    assert tracked > 10_000
    assert frozen >= tracked
    assert left < tracked / 100


def run_with_config(
    code: str, metrics_dir: Path, **settings: str
) -> subprocess.CompletedProcess[bytes]:
    """Run ``code`` in a fresh interpreter at the repository root (where gunicorn.conf.py is),
    with only the given ``SENSOR_*`` settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENSOR_")}
    env |= {f"SENSOR_{name.upper()}": value for name, value in settings.items()}
    env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, timeout=60
    )


TURN = (
    "from gevent import monkey\n"
    "monkey.patch_all()\n"
    "import gevent, runpy, socket\n"
    "from gunicorn.workers.ggevent import GeventWorker\n"
    "config = runpy.run_path('gunicorn.conf.py')\n"
    "worker = GeventWorker.__new__(GeventWorker)\n"
    "served = []\n"
    "server_side, client_side = socket.socketpair()\n"
    "def other_connection():\n"
    "    server_side.recv(100)\n"
    "    served.append('the other connection')\n"
    "gevent.spawn(other_connection)\n"
    "gevent.sleep(0.05)  # it now waits for its socket\n"
    "client_side.sendall(b'POST /classify HTTP/1.1')  # its request arrives\n"
)


def test_a_connection_served_twice_without_blocking_lets_the_waiting_one_go_first(
    tmp_path: Path,
) -> None:
    code = TURN + (
        "config['post_request'](worker, None, {}, None)  # a response; it never blocked since\n"
        "served.append('this connection again')\n"
        "config['post_request'](worker, None, {}, None)  # and another: now it hogs\n"
        "served.append('this connection once more')\n"
        "print(served)\n"
    )
    done = run_with_config(code, tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == str(
        ["this connection again", "the other connection", "this connection once more"]
    )


def test_a_connection_that_blocked_between_responses_does_not_wait(tmp_path: Path) -> None:
    code = TURN + (
        "idled = []\n"
        "gevent.idle = lambda *args: idled.append(args)\n"
        "config['post_request'](worker, None, {}, None)\n"
        "gevent.sleep(0.01)  # blocked: the loop ran (and served the other connection)\n"
        "config['post_request'](worker, None, {}, None)\n"
        "print(served, idled)\n"
    )
    done = run_with_config(code, tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == "['the other connection'] []"


def test_other_worker_classes_do_not_touch_gevent(tmp_path: Path) -> None:
    code = (
        "import runpy, sys\n"
        "from gunicorn.workers.gthread import ThreadWorker\n"
        "config = runpy.run_path('gunicorn.conf.py')\n"
        "config['post_request'](ThreadWorker.__new__(ThreadWorker), None, {}, None)\n"
        "config['pre_request'](ThreadWorker.__new__(ThreadWorker), None)\n"
        "assert 'gevent' not in sys.modules, 'gevent imported by a thread worker'\n"
    )
    done = run_with_config(code, tmp_path)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
