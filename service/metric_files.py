"""The multiprocess metrics directory's files: a dead worker's counts folded into one archive.

prometheus_client keeps each worker's counters and histograms in files of their own, named by
PID, and sums all of them at every scrape; `mark_process_dead` removes only live gauges. So every
worker ever replaced (`SENSOR_MAX_REQUESTS`, a crash) left two files behind: a scrape read
2,000 files of 1,000 replaced workers in 115 ms, and the directory grows until its volume is
full. Here gunicorn's master, as it reaps a worker and before it starts another, adds the dead
worker's values to one archive file per kind and removes its files: the sums stay the same,
and the files stay as many as the live workers, plus two.

The archive and the files it replaces cannot change in one step, so a scrape that read in
between would see the dead worker's counts twice, or not at all (a counter going backwards,
which Prometheus takes for a reset). Readers hold a shared lock on the directory while they
read (`reading`), and folding holds it exclusively.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import multiprocess
from prometheus_client.mmap_dict import MmapedDict

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The files each worker writes, one per kind of metric `service.metrics` declares (prometheus
# names a gauge's file by its multiprocess mode), and those whose values outlive the worker (a
# live gauge's leave with it).
FILE_KINDS = ("counter", "histogram", "gauge_livemax")
ARCHIVED_KINDS = ("counter", "histogram")
# Bytes given to each of a worker's files before prometheus_client maps them (its own first size).
PREALLOCATED_BYTES = 64 * 1024
ARCHIVE = "archive"  # counter_archive.db: prometheus_client reads the kind before the "_"
LOCK = ".lock"  # not *.db: prometheus_client reads only those


def directory() -> Path | None:
    """The multiprocess directory, or None outside multiprocess mode."""
    path = os.environ.get(MULTIPROC_ENV)
    return Path(path) if path else None


@contextlib.contextmanager
def _locked(operation: int) -> Iterator[Path | None]:
    """The directory, held under ``operation`` (shared or exclusive) until the block ends.

    Without a directory that can be locked (removed, read-only) the block runs unlocked, and
    whatever it does there fails or not on its own.
    """
    path = directory()
    lock = None
    if path is not None:
        with contextlib.suppress(OSError):
            lock = open(path / LOCK, "ab")  # noqa: SIM115 (closing it releases the lock)
            fcntl.flock(lock, operation)
    try:
        yield path
    finally:
        if lock is not None:
            lock.close()


def reading() -> contextlib.AbstractContextManager[Path | None]:
    """Hold while every worker's files are read for a scrape: none is folded meanwhile."""
    return _locked(fcntl.LOCK_SH)


def preallocate(pid: int) -> None:
    """Give worker ``pid``'s files their blocks now; raises OSError when there is no room.

    prometheus_client maps each file after only setting its size, so on a full filesystem the
    first write to a page not yet backed killed the worker with SIGBUS, and gunicorn started
    another, again and again. A file that has its size already is used as it is.
    """
    path = directory()
    if path is None:
        return
    made: list[Path] = []
    try:
        for kind in FILE_KINDS:
            file = path / f"{kind}_{pid}.db"
            fd = os.open(file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size == 0:
                    made.append(file)
                    os.posix_fallocate(fd, 0, PREALLOCATED_BYTES)
            finally:
                os.close(fd)
    except OSError:
        for file in made:  # an empty file would break every scrape
            with contextlib.suppress(OSError):
                file.unlink()
        raise


def process_gone(pid: int) -> None:
    """Worker ``pid`` has exited and been reaped: its live gauges go, its counts are archived.

    Run by gunicorn's master, which must outlive any problem of the metrics: logged, never
    raised.
    """
    try:
        with _locked(fcntl.LOCK_EX) as path:
            if path is None:
                return
            multiprocess.mark_process_dead(pid, str(path))
            for kind in ARCHIVED_KINDS:
                _fold(path / f"{kind}_{pid}.db", path / f"{kind}_{ARCHIVE}.db")
    except Exception:
        logger.exception("could not archive the metrics of worker %d", pid)


def _fold(dead: Path, archive: Path) -> None:
    """Add the values of ``dead`` to those of ``archive``, atomically, then remove ``dead``."""
    if not dead.exists():
        return
    sources = [source for source in (archive, dead) if source.exists()]
    totals: dict[str, float] = {}
    for source in sources:
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(source)):
            totals[key] = totals.get(key, 0.0) + value
    written = archive.with_name(f".{archive.stem}.tmp")
    written.unlink(missing_ok=True)
    # Its blocks first, as for a worker's files (`preallocate`): on a full filesystem a write to
    # an unbacked page would kill the master with SIGBUS. Room for both files' keys is enough.
    size = sum(source.stat().st_size for source in sources)
    with open(written, "wb") as out:
        os.posix_fallocate(out.fileno(), 0, max(size, PREALLOCATED_BYTES))
    values = MmapedDict(str(written))
    try:
        for key, value in totals.items():
            values.write_value(key, value, 0.0)
    finally:
        values.close()
    os.replace(written, archive)
    dead.unlink()
