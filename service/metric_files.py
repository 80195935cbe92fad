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

from prometheus_client import multiprocess, values
from prometheus_client.mmap_dict import MmapedDict

logger = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# The kinds of files whose values outlive their worker (a live gauge's leave with it).
ARCHIVED_KINDS = ("counter", "histogram")
# The size of a new metric file (prometheus_client's own first size).
FIRST_BYTES = 64 * 1024
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


class BackedMmapedDict(MmapedDict):
    """prometheus_client's file of one process's values, every page given its blocks before it
    is mapped; raises OSError (ENOSPC) where there is no room, and the file stays as it was.

    prometheus_client sizes a new file, and doubles a full one, with only `truncate`, then maps
    the new pages: on a full filesystem the first write to a page not backed killed the process
    with SIGBUS (a worker starting, a worker whose files outgrew their first 64 KiB as rollouts
    added series, the master writing the archive), and gunicorn started another worker to die
    the same way. Installed as the class prometheus_client's multiprocess values use.
    """

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            fd = os.open(filename, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                if os.fstat(fd).st_size == 0:
                    try:
                        os.posix_fallocate(fd, 0, FIRST_BYTES)
                    except OSError:
                        os.unlink(filename)  # an empty file would break every scrape
                        raise
            finally:
                os.close(fd)
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> None:
        # At most what prometheus_client writes for a key: its length, the key, up to 8 bytes
        # of padding, the value and its timestamp; the file doubles as prometheus_client's does.
        needed = self._used + len(key.encode("utf-8")) + 28
        capacity = self._capacity
        while needed > capacity:
            capacity *= 2
        if capacity > self._capacity:
            os.posix_fallocate(self._f.fileno(), 0, capacity)
        super()._init_value(key)


values.MmapedDict = BackedMmapedDict  # type: ignore[misc]


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
    archived = BackedMmapedDict(str(written))
    try:
        for key, value in totals.items():
            archived.write_value(key, value, 0.0)
    finally:
        archived.close()
    os.replace(written, archive)
    dead.unlink()
