"""Child processes measured from the outside: wall time, peak memory, bounded in time."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.server import REPO_ROOT, signal_group

logger = logging.getLogger(__name__)

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


def run_measured(command: Sequence[str], timeout: float) -> Measured:
    """Run ``command`` from the repository root to completion (killed after ``timeout`` seconds)
    and measure it: the wall time from the fork to the reaping (interpreter start-up included),
    the peak RSS of the command's own (see ``_LAUNCHER``)."""
    command = [str(part) for part in command]
    logger.debug("running %s", " ".join(command))
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        # Its own process group: on a timeout or Ctrl-C the launcher and the command both go.
        process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _LAUNCHER, str(report), *command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
        try:
            stdout, stderr = (
                b.decode(errors="replace") for b in process.communicate(timeout=timeout)
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"`{' '.join(command)}` did not finish within {timeout:g} s") from None
        finally:
            if process.poll() is None:
                signal_group(process, signal.SIGKILL)
                process.communicate()
        try:
            measured = json.loads(report.read_text())
        except (OSError, json.JSONDecodeError):
            raise BenchError(
                f"could not measure `{' '.join(command)}` (launcher status {process.returncode}):"
                f"\n{stderr[-2000:]}"
            ) from None
    # Linux reports ru_maxrss in KiB.
    rss = int(measured["maxrss_kib"]) * 1024
    return Measured(command, int(measured["status"]), stdout, stderr, measured["wall_seconds"], rss)


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
