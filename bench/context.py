"""What a benchmark run was asked to do (Options) and what its sections share while it runs (Context)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AliasChoices, BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bench.procs import REPO_ROOT, Measured, run_measured

logger = logging.getLogger(__name__)

Section = Literal["training", "inference", "http"]
SECTIONS: tuple[Section, ...] = get_args(Section)
REAL_DATA = REPO_ROOT / ".." / "shared" / "data" / "hydraulic_cooler_ts1_vs1.csv"
# Speed does not depend on the weights, so when the training section did not run, the other
# sections serve a quickly trained model of the default architecture.
QUICK_MODEL_ARGS = ("--samples", "30000", "--epochs", "2")


def _quick(value: Any) -> dict[str, Any]:
    # The value of a field under --quick, small enough to check the plumbing in well under a
    # minute of work; options given explicitly still win.
    return {"quick": value}


def _count(value: Any) -> Any:
    # 300,000 and 300_000 read as 300000 on the command line.
    return value.replace(",", "").replace("_", "") if isinstance(value, str) else value


Count = Annotated[int, BeforeValidator(_count), Field(ge=1)]
# 0 on the command line: leave the choice of epochs to `python -m training` (None).
Epochs = Annotated[
    int | None, BeforeValidator(lambda v: None if str(v).strip() in ("0", "None") else _count(v))
]


class Options(BaseSettings):
    """Benchmark training, in-process inference and the HTTP service against scikit-learn, a bare
    Flask app and FastAPI in the same run; print one table and write the results as JSON. Compare
    two results files with 'python -m bench compare OLD NEW'. Exit status: 0 the suite ran (see the
    table for targets), 1 a section could not run (or, with --strict, a target failed), 2 bad
    arguments."""

    model_config = SettingsConfigDict(
        frozen=True,
        cli_prog_name="python -m bench",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_exit_on_error=True,
        cli_hide_none_type=True,
        populate_by_name=True,
        use_attribute_docstrings=True,
    )

    sections: tuple[Section, ...] = Field(
        SECTIONS, validation_alias=AliasChoices("only", "sections")
    )
    """comma-separated sections to run"""
    quick: bool = False
    """small sizes and short runs: checks that everything works in about a minute; the numbers
    are not comparable with the targets"""
    out_dir: Path = Field(
        REPO_ROOT / "bench" / "results", validation_alias=AliasChoices("out", "out_dir")
    )
    """where to write the results JSON"""
    strict: bool = False
    """exit with status 1 when any target fails"""
    quiet: bool = Field(False, validation_alias=AliasChoices("q", "quiet"))
    """no progress lines"""
    timeout: float = Field(1800.0, gt=0)
    """seconds any one subprocess may take"""
    # training
    samples: Count = Field(300_000, json_schema_extra=_quick(20_000))
    """synthetic training readings"""
    test_samples: Count = Field(300_000, json_schema_extra=_quick(20_000))
    """readings of the separate test set"""
    train_epochs: Epochs = Field(None, json_schema_extra=_quick(2))
    """--epochs for `python -m training` (0: its own choice)"""
    train_runs: Count = Field(3, json_schema_extra=_quick(1))
    """timed runs of the training command and of scikit-learn's fit, alternating; the table shows
    medians"""
    sklearn_max_iter: Count = Field(200, json_schema_extra=_quick(20))
    """max_iter of scikit-learn's MLPClassifier (200: scikit-learn's own)"""
    real_data: Path = REAL_DATA
    """the real hydraulic data (the row is skipped when absent)"""
    real_epochs: Epochs = Field(None, json_schema_extra=_quick(2))
    """--epochs for the real-data training"""
    csv_rows: Count = Field(1_000_000, json_schema_extra=_quick(100_000))
    """rows of the CSV (and Parquet) file read and trained on"""
    csv_reads: Count = Field(3, json_schema_extra=_quick(1))
    """timed reads of it"""
    csv_epochs: Epochs = Field(2, json_schema_extra=_quick(1))
    """--epochs when training on it for peak memory (memory does not grow with epochs; 0:
    training's own choice)"""
    # inference in process
    inference_rows: Count = Field(1_000_000, json_schema_extra=_quick(100_000))
    """readings of the large predict_proba call"""
    repeats: Count = Field(5, json_schema_extra=_quick(3))
    """timed repeats of the large call"""
    # http
    connections: Count = 16
    """wrk connections"""
    threads: Count = 2
    """wrk threads"""
    duration: float = Field(10.0, ge=1, allow_inf_nan=False, json_schema_extra=_quick(2.0))
    """seconds of each wrk run (at least 1)"""
    runs: Count = Field(3, json_schema_extra=_quick(1))
    """wrk runs per app and case; the table shows medians"""
    warmup: float = Field(2.0, ge=0, allow_inf_nan=False, json_schema_extra=_quick(1.0))
    """seconds of an untimed wrk run per app and case first"""
    batch_size: Count = 100
    """readings per batch request"""
    fastapi: bool = True
    """the FastAPI + uvicorn comparison (bench/fastapi_app.py)"""
    model: Path | None = None
    """serve and time this artifact (default: the training section's, or a quickly trained one
    of the default architecture)"""

    @field_validator("sections")
    @classmethod
    def _in_suite_order(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(s for s in SECTIONS if s in value)

    @classmethod
    def settings_customise_sources(cls, settings_cls: Any, init_settings: Any, **_: Any) -> Any:
        # The command line only: no environment variable changes a benchmark behind its back.
        return (init_settings,)

    def with_quick(self) -> Options:
        """Under --quick, each field's quick value wherever the command line gave none."""
        if not self.quick:
            return self
        return self.model_copy(
            update={
                name: value for name, value in QUICK.items() if name not in self.model_fields_set
            }
        )

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"strict", "quiet"})


QUICK: dict[str, Any] = {
    name: info.json_schema_extra["quick"]
    for name, info in Options.model_fields.items()
    if isinstance(info.json_schema_extra, dict) and "quick" in info.json_schema_extra
}


@dataclass
class Context:
    """Shared state of a run: its options, a scratch directory and the model the sections use."""

    options: Options
    workdir: Path
    model_path: Path | None = None
    model_source: str = ""
    results: dict[str, Any] = field(default_factory=dict)

    def train(self, *args: str, epochs: int | None = None) -> Measured:
        """`python -m training ARGS [--epochs N] -q` to completion, measured."""
        command = [sys.executable, "-m", "training", *args]
        command += [] if epochs is None else ["--epochs", str(epochs)]
        return run_measured([*command, "-q"], timeout=self.options.timeout).check()

    def ensure_model(self) -> Path:
        """The artifact to benchmark: the training section's, --model, or a quickly trained one."""
        if self.model_path is None and self.options.model is not None:
            self.model_path = self.options.model
            self.model_source = f"given with --model {self.options.model}"
        if self.model_path is None:
            path = self.workdir / "quick-model.npz"
            logger.info("training a model of the default architecture for the benchmark")
            self.train(*QUICK_MODEL_ARGS, "--out", str(path))
            self.model_path = path
            self.model_source = "python -m training " + " ".join(QUICK_MODEL_ARGS)
        return self.model_path
