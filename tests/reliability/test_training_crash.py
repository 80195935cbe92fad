"""`python -m training` killed with SIGKILL while writing its artifact leaves the previous one intact.

How the kill is made to land mid-write: training writes to a temporary file next to the target
(`.model.npz.XXXX.tmp`) and renames it over the target when complete. The test polls the
directory; the moment the temporary file shows up it freezes training with SIGSTOP, waits until
the kernel reports the process stopped, and only then looks again: if the temporary file is still
there, the rename has not happened yet, so the process is frozen in the middle of the write. Only
then is it SIGKILLed. An attempt where the rename won the race is retried (bounded); wide hidden
layers make the artifact about 1 MB so that the write takes long enough to be caught.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

import model
from tests.support.artifacts import write_artifact

REPO = Path(__file__).resolve().parents[2]
ATTEMPTS = 6
ATTEMPT_SECONDS = 60.0
# About 1 MB of float32 weights: small enough to train in a second, big enough to catch writing.
TRAIN_ARGS = ("--samples", "2000", "--epochs", "2", "--hidden", "512,512", "--quiet")


def _temporary_files(directory: Path, target: Path) -> list[Path]:
    prefix = f".{target.name}."
    return [
        Path(entry.path)
        for entry in os.scandir(directory)
        if entry.name.startswith(prefix) and entry.name.endswith(".tmp")
    ]


def _wait_stopped(process: psutil.Process, deadline: float) -> None:
    while process.status() not in (psutil.STATUS_STOPPED, psutil.STATUS_TRACING_STOP):
        if time.monotonic() > deadline:
            raise AssertionError("training did not stop on SIGSTOP")
        time.sleep(0.0005)


def _train_and_kill_mid_write(target: Path, seed: int) -> tuple[bool, list[Path]]:
    """Run training into ``target`` and SIGKILL it while the temporary file exists.

    Returns (caught mid-write, temporary files present when killed). Not caught means training
    finished (the rename won the race) or the deadline passed, and the process is gone either way.
    """
    command = [sys.executable, "-m", "training", "--out", str(target), "--seed", str(seed)]
    process = subprocess.Popen(
        [*command, *TRAIN_ARGS],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + ATTEMPT_SECONDS
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if not _temporary_files(target.parent, target):
                continue
            process.send_signal(signal.SIGSTOP)
            try:
                _wait_stopped(psutil.Process(process.pid), deadline)
            except psutil.NoSuchProcess:
                return False, []
            # Frozen now: a temporary file still present means the rename has not happened.
            present = _temporary_files(target.parent, target)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            return bool(present), present
        return False, []
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)


@pytest.mark.timeout(ATTEMPTS * ATTEMPT_SECONDS + 30)
def test_sigkill_while_writing_leaves_previous_artifact_intact(tmp_path: Path) -> None:
    target = tmp_path / "models" / "model.npz"
    write_artifact(target, seed=3)
    for attempt in range(ATTEMPTS):
        before = target.read_bytes()
        version_before = model.load(target).version
        caught, leftovers = _train_and_kill_mid_write(target, seed=attempt)
        if not caught:
            # Training completed (or the race was lost): whatever is there now is the previous
            # artifact for the next attempt, and it must be a whole, loadable one.
            model.load(target)
            for stray in _temporary_files(target.parent, target):
                stray.unlink()
            continue
        assert target.read_bytes() == before, "the previous artifact was changed by a killed run"
        assert model.load(target).version == version_before
        sizes = [path.stat().st_size for path in leftovers]
        print(f"killed on attempt {attempt + 1} with the temporary file at {sizes} bytes")
        return
    pytest.fail(f"the kill never landed while the artifact was being written ({ATTEMPTS} tries)")
