"""What a benchmark run was asked to do (Options) and what its sections share while it runs (Context)."""

from __future__ import annotations

import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BeforeValidator, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from bench.procs import REPO_ROOT, run_measured

logger = logging.getLogger(__name__)

SECTIONS = ("training", "inference", "http")
REAL_DATA = REPO_ROOT / ".." / "shared" / "data" / "hydraulic_cooler_ts1_vs1.csv"
# Speed does not depend on the weights, so when the training section did not run, the other
# sections serve a quickly trained model of the default architecture.
QUICK_MODEL_ARGS = ("--samples", "30000", "--epochs", "2")


Section = Literal["training", "inference", "http"]


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
    """Benchmark training, in-process inference and the HTTP service against scikit-learn and a
    bare Flask app in the same run; print one table and write the results as JSON. Compare two
    results files with 'python -m bench compare OLD NEW'. Exit status: 0 the suite ran (see the
    table for targets), 1 a section could not run (or, with --strict, a target failed), 2 bad
    arguments. Every option is declared here once: the defaults are the issues' own figures."""

    model_config = SettingsConfigDict(
        frozen=True,
        cli_prog_name="python -m bench",
        cli_kebab_case=True,
        cli_implicit_flags=True,
        cli_exit_on_error=True,
        cli_hide_none_type=True,
        populate_by_name=True,
    )

    sections: tuple[Section, ...] = Field(
        SECTIONS,
        validation_alias=AliasChoices("only", "sections"),
        description="comma-separated sections to run",
    )
    quick: bool = Field(
        False,
        description="small sizes and short runs: checks that everything works in about a "
        "minute; the numbers are not comparable with the targets",
    )
    out_dir: Path = Field(
        REPO_ROOT / "bench" / "results",
        validation_alias=AliasChoices("out", "out_dir"),
        description="where to write the results JSON",
    )
    strict: bool = Field(False, description="exit with status 1 when any target fails")
    quiet: bool = Field(
        False, validation_alias=AliasChoices("q", "quiet"), description="no progress lines"
    )
    timeout: float = Field(1800.0, gt=0, description="seconds any one subprocess may take")
    # training
    samples: Count = Field(
        300_000, description="synthetic training readings", json_schema_extra=_quick(20_000)
    )
    test_samples: Count = Field(
        300_000,
        description="readings of the separate test set",
        json_schema_extra=_quick(20_000),
    )
    train_epochs: Epochs = Field(
        None,
        description="--epochs for `python -m training` (0: its own choice)",
        json_schema_extra=_quick(2),
    )
    train_runs: Count = Field(
        3,
        description="timed runs of the training command and of scikit-learn's fit, "
        "alternating; the table shows medians",
        json_schema_extra=_quick(1),
    )
    sklearn_max_iter: Count = Field(
        200,
        description="max_iter of scikit-learn's MLPClassifier (200: scikit-learn's own)",
        json_schema_extra=_quick(20),
    )
    real_data: Path = Field(
        REAL_DATA, description="the real hydraulic data (the row is skipped when absent)"
    )
    real_epochs: Epochs = Field(
        None, description="--epochs for the real-data training", json_schema_extra=_quick(2)
    )
    csv_rows: Count = Field(
        1_000_000,
        description="rows of the CSV (and Parquet) file read and trained on",
        json_schema_extra=_quick(100_000),
    )
    csv_reads: Count = Field(3, description="timed reads of it", json_schema_extra=_quick(1))
    csv_epochs: Epochs = Field(
        2,
        description="--epochs when training on it for peak memory (memory does not grow with "
        "epochs; 0: training's own choice)",
        json_schema_extra=_quick(1),
    )
    # inference in process
    inference_rows: Count = Field(
        1_000_000,
        description="readings of the large predict_proba call",
        json_schema_extra=_quick(100_000),
    )
    repeats: Count = Field(
        5, description="timed repeats of the large call", json_schema_extra=_quick(3)
    )
    # http
    connections: Count = Field(16, description="wrk connections")
    threads: Count = Field(2, description="wrk threads")
    duration: float = Field(
        10.0,
        ge=1,
        allow_inf_nan=False,
        description="seconds of each wrk run (at least 1)",
        json_schema_extra=_quick(2.0),
    )
    runs: Count = Field(
        3,
        description="wrk runs per app and case; the table shows medians",
        json_schema_extra=_quick(1),
    )
    warmup: float = Field(
        2.0,
        ge=0,
        allow_inf_nan=False,
        description="seconds of an untimed wrk run per app and case first",
        json_schema_extra=_quick(1.0),
    )
    batch_size: Count = Field(100, description="readings per batch request")
    fastapi: bool = Field(
        True, description="the FastAPI + uvicorn comparison (bench/fastapi_app.py)"
    )
    model: Path | None = Field(
        None,
        description="serve and time this artifact (default: the training section's, or a "
        "quickly trained one of the default architecture)",
    )

    @field_validator("sections", mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        if not value:
            raise ValueError(f"expected a comma-separated choice of {', '.join(SECTIONS)}")
        return value

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
