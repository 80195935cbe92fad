"""run_measured: the wall time, peak memory and time limit of one child process."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import psutil
import pytest

from bench.procs import BenchError, distinct_resident_bytes, run_measured


def test_peak_rss_is_the_measured_childs_own() -> None:
    # A 200 MB bytes object is written in full, so its pages are really resident. The small
    # child runs after the big one: getrusage(RUSAGE_CHILDREN) would still report the big one.
    big = run_measured([sys.executable, "-c", "b = b'x' * 200_000_000"], timeout=60).check()
    small = run_measured([sys.executable, "-c", "pass"], timeout=60).check()
    assert big.peak_rss_bytes > 200_000_000
    assert small.peak_rss_bytes < 50_000_000


def test_the_callers_memory_does_not_count() -> None:
    # Linux counts the pre-exec memory of a forked child in its peak RSS: spawned straight from
    # a process holding 300 MB, an idle interpreter would report over 300 MB.
    held = b"x" * 300_000_000
    small = run_measured([sys.executable, "-c", "pass"], timeout=60).check()
    assert len(held) == 300_000_000
    assert small.peak_rss_bytes < 50_000_000


def test_wall_time_output_and_status() -> None:
    code = "import sys, time; time.sleep(0.3); print('out'); print('err', file=sys.stderr); sys.exit(3)"
    measured = run_measured([sys.executable, "-c", code], timeout=60)
    assert measured.wall_seconds >= 0.3
    assert measured.returncode == 3
    assert measured.stdout.strip() == "out"
    assert measured.stderr.strip() == "err"
    with pytest.raises(BenchError, match="status 3"):
        measured.check()


def test_a_child_past_its_time_limit_is_killed() -> None:
    started = time.perf_counter()
    with pytest.raises(BenchError, match=r"did not finish within 0\.5 s"):
        run_measured([sys.executable, "-c", "import time; time.sleep(60)"], timeout=0.5)
    assert time.perf_counter() - started < 20


def test_server_cpu_counts_live_descendants(tmp_path) -> None:
    from tests.support.server import clean_environment, launch

    # A child whose child (the grandchild) burns 0.4 s of CPU, says so, and stays alive.
    burn = (
        "import sys, time\n"
        "t = time.process_time()\n"
        "while time.process_time() - t < 0.4: pass\n"
        "print('burnt', flush=True)\n"
        "time.sleep(60)\n"
    )
    command = [
        sys.executable,
        "-c",
        f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {burn!r}])",
    ]
    server = launch(command, port=0, env=clean_environment(), log_dir=tmp_path)
    with contextlib.ExitStack() as stack:
        stack.callback(server.stop)
        deadline = time.monotonic() + 20
        while "burnt" not in server.stdout() and time.monotonic() < deadline:
            time.sleep(0.05)
        seconds = server.cpu_seconds()
        assert seconds is not None and seconds >= 0.35
    assert server.cpu_seconds() is None


_SHARING = """
import os, sys, time
shared = b"s" * 150_000_000  # written in full: resident, then shared with the child by fork
child = os.fork()
if child == 0:
    own = b"o" * 100_000_000  # the child's own pages
    print(os.getpid(), flush=True)
    time.sleep(60)
    os._exit(0)
print(os.getpid(), flush=True)
time.sleep(60)
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="page frame numbers are shown to root only")
def test_distinct_resident_bytes_counts_each_shared_page_once() -> None:
    with subprocess.Popen([sys.executable, "-c", _SHARING], stdout=subprocess.PIPE, text=True) as p:
        family = [psutil.Process(p.pid)]
        try:
            assert p.stdout is not None
            # The child prints once its own 100 MB exist; the parent's pages are shared by then.
            pids = sorted(int(p.stdout.readline()) for _ in range(2))
            family += psutil.Process(p.pid).children()
            rss = sum(psutil.Process(pid).memory_info().rss for pid in pids)
            distinct = distinct_resident_bytes(pids)
        finally:
            for process in family:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
    assert distinct is not None
    # 150 MB shared + 100 MB the child's own + two interpreters (a few MB each, partly shared).
    assert 250_000_000 < distinct < 290_000_000
    # Summed RSS counts the 150 MB twice.
    assert rss > 400_000_000
