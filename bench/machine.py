"""Facts about the machine and the code a benchmark ran on, so that results can be compared."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.procs import REPO_ROOT

_LIBRARIES = (
    "numpy",
    "pandas",
    "scikit-learn",
    "threadpoolctl",
    "flask",
    "gunicorn",
    "gevent",
    "pydantic",
    "orjson",
)


def load_average() -> list[float] | None:
    """1, 5 and 15-minute load averages: how busy the machine was (other users included)."""
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), which can be fewer than the machine's."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=True
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip()


def _blas() -> list[dict[str, Any]]:
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "filepath")
    return [
        {key: (Path(v).name if key == "filepath" else v) for key, v in pool.items() if key in keep}
        for pool in threadpool_info()
    ]


def _wrk_version() -> str | None:
    wrk = shutil.which("wrk")
    if wrk is None:
        return None
    try:
        # `wrk --version` prints its banner and usage, then exits with status 1.
        done = subprocess.run([wrk, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    first = (done.stdout or done.stderr).strip().splitlines()
    return first[0] if first else None


def facts() -> dict[str, Any]:
    """Everything that makes two runs comparable or explains why they differ."""
    # numpy and sklearn are imported before threadpoolctl looks, so their BLAS pools show.
    import numpy  # noqa: F401

    versions: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    status = _git("status", "--porcelain")
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "memory_bytes": _memory_bytes(),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "libraries": versions,
        "blas": _blas(),
        "wrk": _wrk_version(),
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "sensor_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("SENSOR_")},
        "blas_env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.endswith("_NUM_THREADS") or k.startswith("OPENBLAS")
        },
    }
