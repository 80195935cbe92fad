"""Child processes measured from the outside: wall time, peak memory, bounded in time."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]

# Linux counts the memory a process had before exec() in its peak RSS (ru_maxrss), and a child
# spawned straight from this process starts as a copy of it: hundreds of MB of benchmark data
# that the measured command never touched. So a minimal interpreter (a few MB) forks and execs
# the command, and measures its peak RSS and wall time with wait4 itself.
_LAUNCHER = """\
import json, os, sys, time
report, argv = sys.argv[1], sys.argv[2:]
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
_, status, usage = os.wait4(pid, 0)
wall = time.perf_counter() - started
with open(report, "w") as f:
    json.dump({"status": os.waitstatus_to_exitcode(status), "maxrss_kib": usage.ru_maxrss,
               "wall_seconds": wall}, f)
"""


class BenchError(Exception):
    """A benchmark could not run (a command failed, timed out or gave output we cannot read)."""


@dataclass(frozen=True)
class Measured:
    """What one child process did: exit status, output, wall seconds and peak resident memory."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    wall_seconds: float
    peak_rss_bytes: int

    def check(self) -> Measured:
        """Raise BenchError with the tail of stderr unless the command succeeded."""
        if self.returncode != 0:
            tail = "\n".join(self.stderr.strip().splitlines()[-15:])
            raise BenchError(
                f"`{' '.join(self.command)}` exited with status {self.returncode}:\n{tail}"
            )
        return self


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def run_measured(
    command: Sequence[str],
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path = REPO_ROOT,
) -> Measured:
    """Run ``command`` to completion (killed after ``timeout`` seconds) and measure it.

    The wall time runs from the fork to the reaping of the command, so it includes interpreter
    start-up; the peak RSS is the command's own (see ``_LAUNCHER``).
    """
    command = [str(part) for part in command]
    logger.debug("running %s", " ".join(command))
    timed_out = threading.Event()
    # Files, not pipes: a chatty child can never block on a full pipe while we wait.
    with (
        tempfile.TemporaryFile() as out,
        tempfile.TemporaryFile() as err,
        tempfile.TemporaryDirectory() as tmp,
    ):
        report = Path(tmp) / "report.json"
        # Its own process group: on a timeout or Ctrl-C the launcher and the command both go.
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(report), *command],
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )

        def kill() -> None:
            timed_out.set()
            _kill_group(process)

        timer = threading.Timer(timeout, kill)
        timer.start()
        try:
            process.wait()
        except BaseException:
            _kill_group(process)
            process.wait()
            raise
        finally:
            timer.cancel()
        if timed_out.is_set():
            raise BenchError(f"`{' '.join(command)}` did not finish within {timeout:g} s")
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
        try:
            measured = json.loads(report.read_text())
        except (OSError, json.JSONDecodeError):
            raise BenchError(
                f"could not measure `{' '.join(command)}` (launcher status {process.returncode}):"
                f"\n{stderr[-2000:]}"
            ) from None
    return Measured(
        command=command,
        returncode=int(measured["status"]),
        stdout=stdout,
        stderr=stderr,
        wall_seconds=float(measured["wall_seconds"]),
        # Linux reports ru_maxrss in KiB.
        peak_rss_bytes=int(measured["maxrss_kib"]) * 1024,
    )


_PAGE = os.sysconf("SC_PAGE_SIZE")
_PRESENT = 1 << 63
_FRAME = (1 << 55) - 1


def distinct_resident_bytes(pids: Sequence[int]) -> int | None:
    """The memory that processes ``pids`` hold, each resident page counted once however many of
    them map it: what their container's memory counts, and what freeing them would free.

    Summing RSS counts a page that a gunicorn master shares with its forked workers once per
    process, and PSS splits it with any other process mapping it (the benchmark itself maps the
    same numpy). Only the kernel's page-frame numbers (``/proc/PID/pagemap``, which psutil does
    not read) tell shared pages apart; they are shown to root only. None where they are not
    readable here (not Linux, not root).
    """
    import numpy as np

    frames: list[Any] = []
    try:
        for pid in pids:
            with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
                for line in maps:
                    low, _, high = line.split(None, 1)[0].partition("-")
                    first, last = int(low, 16) // _PAGE, int(high, 16) // _PAGE
                    if line.rstrip().endswith("[vsyscall]"):
                        continue  # the kernel's, outside the process's page table
                    pagemap.seek(first * 8)
                    entries = np.frombuffer(pagemap.read((last - first) * 8), dtype=np.uint64)
                    resident = entries[(entries & np.uint64(_PRESENT)) != 0]
                    frames.append(resident & np.uint64(_FRAME))
    except OSError:
        return None
    if not frames:
        return None
    every = np.concatenate(frames)
    if every.size and not every.any():  # frame numbers hidden: not root
        return None
    return int(np.unique(every).size) * _PAGE
