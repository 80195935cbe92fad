"""Saving an artifact when the disk fails: a clear exit, the previous file intact, nothing left."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

import model
from tests.support.artifacts import write_artifact
from tests.training.conftest import REPO
from training.cli import main

TINY = ["--samples", "2000", "--epochs", "1", "--quiet"]


def temporaries(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A real, nearly full file system: a 1 MiB tmpfs (needs root; skipped elsewhere)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.decode()!r}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def refused_for_a_full_disk(target: Path, *args: str) -> None:
    """`python -m training ARGS` writing ``target`` on a full disk: exit 1, saying so plainly,
    and no temporary file left beside it."""
    done = subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert f"cannot write {target}: No space left on device" in done.stderr
    assert "unchanged" in done.stderr and "Traceback" not in done.stderr
    assert temporaries(target.parent) == []


def test_a_full_disk_while_saving_exits_1_and_keeps_the_previous_artifact(
    small_disk: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = write_artifact(small_disk / "model.npz", seed=3)
    before = target.read_bytes()
    # Fill what is left, so that the new artifact cannot be written in full.
    filler = small_disk / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    refused_for_a_full_disk(target, *TINY, "--out", str(target))
    assert target.read_bytes() == before


def test_generate_on_a_full_disk_exits_1_and_keeps_the_previous_file(small_disk: Path) -> None:
    target = small_disk / "synthetic.csv"
    target.write_text("what was there\n")
    # 100,000 rows are about 2 MB: more than the 1 MiB disk holds.
    refused_for_a_full_disk(target, "generate", "--samples", "100000", "--out", str(target))
    assert target.read_text() == "what was there\n"


def test_an_io_error_while_saving_exits_1_and_keeps_the_previous_artifact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No real failing device can be had here, so fsync is made to fail as a dying disk's does.
    target = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    before = target.read_bytes()

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "fsync", failing_fsync)
    assert main([*TINY, "--out", str(target)]) == 1
    err = capsys.readouterr().err
    assert f"cannot write {target}: Input/output error; the file that was there is unchanged" in err
    assert target.read_bytes() == before
    assert temporaries(target.parent) == []


def test_the_next_save_removes_what_a_killed_save_left(tmp_path: Path) -> None:
    target = write_artifact(tmp_path / "model.npz", seed=1)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    stray = target.with_name(f".model.npz.{int(dead.stdout)}.k1ll3d.tmp")
    legacy = target.with_name(".model.npz.abcd1234.tmp")
    alive = target.with_name(f".model.npz.{os.getpid()}.inprogress.tmp")
    other = target.with_name(".other.npz.1.x.tmp")
    for path in (stray, legacy, alive, other):
        path.write_bytes(b"half an artifact")
    model.load(target).save(target)
    assert temporaries(tmp_path) == sorted([alive.name, other.name])
