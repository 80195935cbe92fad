"""Settings from the environment, the gunicorn configuration file and its helpers."""

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

import pydantic
import pytest

from service.gunicorn_support import JsonLogger, available_cpus, cgroup_cpu_quota
from service.settings import API_JSON_DEPTH, ServerSettings, Settings

REPO = Path(__file__).resolve().parents[2]


def test_settings_come_from_sensor_prefixed_environment(monkeypatch) -> None:
    monkeypatch.setenv("SENSOR_MODEL_PATH", "/srv/m.npz")
    monkeypatch.setenv("SENSOR_MAX_BATCH", "50")
    monkeypatch.setenv("SENSOR_MODEL_NAME", "pump")
    settings = Settings()
    assert settings.model_path == Path("/srv/m.npz")
    assert settings.max_batch == 50 and settings.model_name == "pump"
    # Explicit arguments win over the environment.
    assert Settings(max_batch=7).max_batch == 7


def test_defaults(monkeypatch) -> None:
    for key in list(os.environ):
        if key.startswith("SENSOR_"):
            monkeypatch.delenv(key)
    settings, server = Settings(), ServerSettings()
    assert settings.model_path == Path("models/model.npz")
    assert settings.model_name == "sensor-classifier"
    assert settings.max_batch == 10_000
    assert server.bind == "127.0.0.1:8000" and server.workers is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SENSOR_MAX_BATCH", "0"),
        ("SENSOR_MAX_JSON_DEPTH", str(API_JSON_DEPTH - 1)),
        ("SENSOR_REQUEST_TIMEOUT", "0"),
        ("SENSOR_MODEL_NAME", "a/b"),
        ("SENSOR_MAX_BODY_BYTES", "lots"),
    ],
)
def test_invalid_settings_are_refused(monkeypatch, name: str, value: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(pydantic.ValidationError):
        Settings()


def test_every_setting_is_documented() -> None:
    for cls in (Settings, ServerSettings):
        for name, field in cls.model_fields.items():
            assert field.description, f"{cls.__name__}.{name} has no docstring"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_takes_the_tightest_limit_up_the_tree(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu.max", "max 100000\n")
    write(root / "kubepods" / "cpu.max", "300000 100000\n")
    write(root / "kubepods" / "pod1" / "cpu.max", "150000 100000\n")
    proc = tmp_path / "proc_cgroup"
    write(proc, "0::/kubepods/pod1\n")
    assert cgroup_cpu_quota(root, proc) == 1.5
    write(root / "kubepods" / "pod1" / "cpu.max", "max 100000\n")
    assert cgroup_cpu_quota(root, proc) == 3.0


def test_cgroup_v1_quota(tmp_path: Path) -> None:
    root = tmp_path / "cgroup"
    write(root / "cpu" / "cpu.cfs_quota_us", "50000\n")
    write(root / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_quota(root, tmp_path / "none") == 0.5
    write(root / "cpu" / "cpu.cfs_quota_us", "-1\n")
    assert cgroup_cpu_quota(root, tmp_path / "none") is None


def test_no_cgroup_means_no_quota(tmp_path: Path) -> None:
    assert cgroup_cpu_quota(tmp_path / "missing", tmp_path / "none") is None


def test_available_cpus_is_capped_by_quota_and_affinity(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    root = tmp_path / "cgroup"
    proc = tmp_path / "none"
    assert available_cpus(root, proc) == 4
    write(root / "cpu.max", "150000 100000\n")
    assert available_cpus(root, proc) == 2  # 1.5 CPUs: the second worker uses the half
    write(root / "cpu.max", "20000 100000\n")
    assert available_cpus(root, proc) == 1
    write(root / "cpu.max", "1600000 100000\n")
    assert available_cpus(root, proc) == 4  # the affinity mask is the smaller bound


CONFIG_SETS = (
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "BLIS_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "PROMETHEUS_MULTIPROC_DIR",
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


def test_service_never_imports_training() -> None:
    code = (
        "import sys\n"
        "import service.app, service.gunicorn_support, service.kserve, service.openapi\n"
        "leaked = [m for m in sys.modules if m == 'training' or m.startswith('training.')]\n"
        "assert not leaked, leaked\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True, timeout=60)


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


def test_fair_scheduling_is_off_by_default(monkeypatch) -> None:
    # gunicorn's own post_request hook (which does nothing) applies.
    assert "post_request" not in load_config({}, monkeypatch)
    assert "post_request" not in load_config({"SENSOR_FAIR_SCHEDULING": "false"}, monkeypatch)


def test_with_fair_scheduling_a_gevent_worker_serves_the_waiting_connections_first(
    tmp_path: Path,
) -> None:
    code = (
        "from gevent import monkey\n"
        "monkey.patch_all()\n"
        "import gevent, runpy, socket\n"
        "from gunicorn.workers.ggevent import GeventWorker\n"
        "config = runpy.run_path('gunicorn.conf.py')\n"
        "served = []\n"
        "server_side, client_side = socket.socketpair()\n"
        "def other_connection():\n"
        "    server_side.recv(100)\n"
        "    served.append('the other connection')\n"
        "gevent.spawn(other_connection)\n"
        "gevent.sleep(0.05)  # it now waits for its socket\n"
        "client_side.sendall(b'POST /classify HTTP/1.1')  # its request arrives\n"
        "config['post_request'](GeventWorker.__new__(GeventWorker), None, {}, None)\n"
        "served.append('this connection again')\n"
        "print(served)\n"
    )
    done = run_with_config(code, tmp_path, fair_scheduling="true")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout.decode().strip() == "['the other connection', 'this connection again']"


def test_with_fair_scheduling_other_workers_do_not_touch_gevent(tmp_path: Path) -> None:
    code = (
        "import runpy, sys\n"
        "from gunicorn.workers.gthread import ThreadWorker\n"
        "config = runpy.run_path('gunicorn.conf.py')\n"
        "config['post_request'](ThreadWorker.__new__(ThreadWorker), None, {}, None)\n"
        "assert 'gevent' not in sys.modules, 'gevent imported by a thread worker'\n"
    )
    done = run_with_config(code, tmp_path, fair_scheduling="true")
    assert done.returncode == 0, done.stderr.decode()[-2000:]
