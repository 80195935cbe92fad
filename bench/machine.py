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
from service.gunicorn_support import available_cpus

LIBRARIES = (
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


def _cpu_model() -> str | None:
    # Neither psutil nor platform knows the CPU's name on Linux.
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def _output(*command: str, check: bool = True) -> str | None:
    """What ``command`` printed (stdout, else stderr), or None when it could not run or failed."""
    try:
        done = subprocess.run(
            command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=10, check=check
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout or done.stderr).strip()


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def facts() -> dict[str, Any]:
    """Everything that makes two runs comparable or explains why they differ."""
    # numpy is imported before threadpoolctl looks, so that its BLAS pools show.
    import numpy  # noqa: F401
    import psutil
    from threadpoolctl import threadpool_info

    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer", "filepath")
    blas = [
        {key: (Path(v).name if key == "filepath" else v) for key, v in pool.items() if key in keep}
        for pool in threadpool_info()
    ]
    wrk = shutil.which("wrk")
    # `wrk --version` prints its banner and usage, then exits with status 1.
    wrk_banner = _output(wrk, "--version", check=False) if wrk else None
    status = _output("git", "status", "--porcelain")
    return {
        "hostname": platform.node(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "usable_cpus": available_cpus(),
        "memory_bytes": int(psutil.virtual_memory().total),
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "libraries": {name: _version(name) for name in LIBRARIES},
        "blas": blas,
        "wrk": wrk_banner.splitlines()[0] if wrk_banner else None,
        "git_commit": _output("git", "rev-parse", "HEAD"),
        "git_dirty": None if status is None else bool(status),
        "sensor_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith("SENSOR_")},
        "blas_env": {
            k: v
            for k, v in sorted(os.environ.items())
            if k.endswith("_NUM_THREADS") or k.startswith("OPENBLAS")
        },
    }
