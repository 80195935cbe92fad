"""A tiny end-to-end run of `python -m bench` for the smoke tests: its arguments and its outcome."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
# Sizes far below the issue's: these tests check the plumbing, never the speed.
TINY = [
    "--quick",
    "--strict",
    "--samples", "3000",
    "--test-samples", "3000",
    "--train-epochs", "10",
    "--train-runs", "2",
    "--sklearn-max-iter", "3",
    "--real-epochs", "1",
    "--csv-rows", "5000",
    "--csv-epochs", "1",
    "--inference-rows", "20000",
    "--repeats", "2",
    "--duration", "1",
    "--warmup", "0",
    "--runs", "2",
]  # fmt: skip


@dataclass(frozen=True)
class BenchRun:
    """A finished `python -m bench` run: exit status, printed output, the results document."""

    returncode: int
    stdout: str
    stderr: str
    sections: tuple[str, ...]
    document: dict[str, Any]
    out_dir: Path

    @property
    def rows(self) -> dict[str, dict[str, Any]]:
        return {row["key"]: row for row in self.document["rows"]}


def http_available() -> bool:
    return shutil.which("wrk") is not None and (REPO_ROOT / "gunicorn.conf.py").is_file()


def run_bench(out_dir: Path) -> BenchRun:
    """Every section (HTTP only when wrk and gunicorn.conf.py are there) with tiny sizes."""
    sections = ("training", "inference", "http") if http_available() else ("training", "inference")
    done = subprocess.run(
        [sys.executable, "-m", "bench", *TINY, "--only", ",".join(sections), "--out", str(out_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    latest = out_dir / "latest.json"
    assert latest.is_file(), f"no results written; stderr:\n{done.stderr[-3000:]}"
    return BenchRun(
        returncode=done.returncode,
        stdout=done.stdout,
        stderr=done.stderr,
        sections=sections,
        document=json.loads(latest.read_text()),
        out_dir=out_dir,
    )
