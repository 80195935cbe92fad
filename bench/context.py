"""What a benchmark run was asked to do (Options) and what its sections share while it runs (Context)."""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench.procs import REPO_ROOT, run_measured

logger = logging.getLogger(__name__)

SECTIONS = ("training", "inference", "http")
REAL_DATA = REPO_ROOT / ".." / "shared" / "data" / "hydraulic_cooler_ts1_vs1.csv"
# Speed does not depend on the weights, so when the training section did not run, the other
# sections serve a quickly trained model of the default architecture.
QUICK_MODEL_ARGS = ("--samples", "30000", "--epochs", "2")


@dataclass(frozen=True)
class Options:
    """Sizes and durations of one run; the defaults are the issues' own figures."""

    sections: tuple[str, ...] = SECTIONS
    quick: bool = False
    out_dir: Path = REPO_ROOT / "bench" / "results"
    timeout: float = 1800.0
    # training
    samples: int = 300_000
    test_samples: int = 300_000
    train_epochs: int | None = None
    train_runs: int = 3
    sklearn_max_iter: int = 200
    real_data: Path = REAL_DATA
    real_epochs: int | None = None
    csv_rows: int = 1_000_000
    csv_reads: int = 3
    csv_epochs: int | None = 2
    # inference in process
    inference_rows: int = 1_000_000
    repeats: int = 5
    # http
    connections: int = 16
    threads: int = 2
    duration: float = 10.0
    runs: int = 3
    warmup: float = 2.0
    batch_size: int = 100
    fastapi: bool = True
    model: Path | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


@dataclass
class Context:
    """Shared state of a run: its options, a scratch directory and the model the sections use."""

    options: Options
    workdir: Path
    model_path: Path | None = None
    model_source: str = ""
    results: dict[str, Any] = field(default_factory=dict)

    def python(self, *args: str) -> list[str]:
        """A command line running this interpreter (the project's venv under `make bench`)."""
        return [sys.executable, *args]

    def ensure_model(self) -> Path:
        """The artifact to benchmark: --model, the training section's, or a quickly trained one."""
        if self.model_path is not None:
            return self.model_path
        if self.options.model is not None:
            self.model_path = self.options.model
            self.model_source = f"given with --model {self.options.model}"
            return self.model_path
        path = self.workdir / "quick-model.npz"
        logger.info("training a model of the default architecture for the benchmark")
        run_measured(
            self.python("-m", "training", *QUICK_MODEL_ARGS, "--out", str(path), "-q"),
            timeout=self.options.timeout,
        ).check()
        self.model_path = path
        self.model_source = "python -m training " + " ".join(QUICK_MODEL_ARGS)
        return path
