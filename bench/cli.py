"""The `python -m bench` command line: run the sections, print one table, write the results as JSON.

Exit status: 0 the suite ran (targets may have failed: see the table), 1 a section could not run
(or, with --strict, a target failed), 2 bad arguments.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench import compare, table
from bench.context import SECTIONS, Context, Options
from bench.machine import facts, load_average, usable_cpus
from bench.table import Row

logger = logging.getLogger("bench")

SCHEMA_VERSION = 1
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# --quick: every size and duration small enough to check the plumbing in well under a minute
# of work; options given explicitly still win.
QUICK = {
    "samples": 20_000,
    "test_samples": 20_000,
    "train_epochs": 2,
    "train_runs": 1,
    "sklearn_max_iter": 20,
    "real_epochs": 2,
    "csv_rows": 100_000,
    "csv_reads": 1,
    "csv_epochs": 1,
    "inference_rows": 100_000,
    "repeats": 3,
    "duration": 2.0,
    "runs": 1,
    "warmup": 1.0,
}
# A machine busier than this (1-minute load average per usable CPU) gets a warning with its numbers.
BUSY_LOAD_PER_CPU = 0.5


def _sections(text: str) -> tuple[str, ...]:
    names = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [n for n in names if n not in SECTIONS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"expected a comma-separated choice of {', '.join(SECTIONS)}, got {text!r}"
        )
    return names


def _positive_int(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _epochs(text: str) -> int:
    # 0 means "what `python -m training` chooses by itself".
    if text.strip() == "0":
        return 0
    return _positive_int(text)


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a non-negative number, got {text!r}")
    return value


def _seconds(text: str) -> float:
    value = _non_negative_float(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"wrk runs last at least 1 s, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    defaults = Options()
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark training, in-process inference and the HTTP service against "
        "scikit-learn and a bare Flask app in the same run; print one table and write the "
        "results as JSON. Compare two results files with 'python -m bench compare OLD NEW'.",
        epilog="Exit status: 0 the suite ran (see the table for targets), 1 a section could "
        "not run (or, with --strict, a target failed), 2 bad arguments.",
    )
    parser.add_argument(
        "--only",
        type=_sections,
        default=SECTIONS,
        metavar="SECTIONS",
        help=f"comma-separated sections to run (default: {','.join(SECTIONS)})",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="small sizes and short runs: checks that everything works in about a minute; "
        "the numbers are not comparable with the targets",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=defaults.out_dir,
        metavar="DIR",
        help="where to write the results JSON (default: bench/results)",
    )
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when any target fails"
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress lines on stderr")

    training = parser.add_argument_group("training")
    training.add_argument(
        "--samples",
        type=_positive_int,
        metavar="N",
        help=f"synthetic training readings (default: {defaults.samples:,})",
    )
    training.add_argument(
        "--test-samples",
        type=_positive_int,
        metavar="N",
        help=f"readings of the separate test set (default: {defaults.test_samples:,})",
    )
    training.add_argument(
        "--train-epochs",
        type=_epochs,
        metavar="N",
        help="--epochs for `python -m training` (default: 0, its own choice)",
    )
    training.add_argument(
        "--train-runs",
        type=_positive_int,
        metavar="N",
        help=f"timed runs of the training command and of scikit-learn's fit, alternating; "
        f"the table shows medians (default: {defaults.train_runs})",
    )
    training.add_argument(
        "--sklearn-max-iter",
        type=_positive_int,
        metavar="N",
        help=f"max_iter of scikit-learn's MLPClassifier (default: {defaults.sklearn_max_iter}, "
        "scikit-learn's own)",
    )
    training.add_argument(
        "--real-data",
        type=Path,
        metavar="FILE.csv",
        help="the real hydraulic data (default: ../shared/data/hydraulic_cooler_ts1_vs1.csv; "
        "the row is skipped when absent)",
    )
    training.add_argument(
        "--real-epochs", type=_epochs, metavar="N", help="--epochs for the real-data training"
    )
    training.add_argument(
        "--csv-rows",
        type=_positive_int,
        metavar="N",
        help=f"rows of the CSV file read and trained on (default: {defaults.csv_rows:,})",
    )
    training.add_argument(
        "--csv-reads", type=_positive_int, metavar="N", help="timed reads of it (default: 3)"
    )
    training.add_argument(
        "--csv-epochs",
        type=_epochs,
        metavar="N",
        help=f"--epochs when training on it for peak memory (default: {defaults.csv_epochs}; "
        "memory does not grow with epochs; 0: training's own choice)",
    )

    inference = parser.add_argument_group("inference in process")
    inference.add_argument(
        "--inference-rows",
        type=_positive_int,
        metavar="N",
        help=f"readings of the large predict_proba call (default: {defaults.inference_rows:,})",
    )
    inference.add_argument(
        "--repeats",
        type=_positive_int,
        metavar="N",
        help=f"timed repeats of the large call (default: {defaults.repeats})",
    )

    http = parser.add_argument_group("HTTP")
    http.add_argument(
        "--connections",
        type=_positive_int,
        metavar="N",
        help=f"wrk connections (default: {defaults.connections})",
    )
    http.add_argument(
        "--threads",
        type=_positive_int,
        metavar="N",
        help=f"wrk threads (default: {defaults.threads})",
    )
    http.add_argument(
        "--duration",
        type=_seconds,
        metavar="SECONDS",
        help=f"length of each wrk run (default: {defaults.duration:g})",
    )
    http.add_argument(
        "--runs",
        type=_positive_int,
        metavar="N",
        help=f"wrk runs per app and case; the table shows medians (default: {defaults.runs})",
    )
    http.add_argument(
        "--warmup",
        type=_non_negative_float,
        metavar="SECONDS",
        help=f"untimed wrk run per app and case first (default: {defaults.warmup:g})",
    )
    http.add_argument(
        "--batch-size",
        type=_positive_int,
        metavar="N",
        help=f"readings per batch request (default: {defaults.batch_size})",
    )
    http.add_argument(
        "--no-fastapi",
        dest="fastapi",
        action="store_false",
        help="leave out the FastAPI + uvicorn comparison (bench/fastapi_app.py)",
    )
    http.add_argument(
        "--model",
        type=Path,
        metavar="PATH",
        help="serve and time this artifact (default: the training section's, or a quickly "
        "trained one of the default architecture)",
    )
    return parser


def options_from(args: argparse.Namespace) -> Options:
    """Options from parsed arguments: explicit values, else --quick's, else the defaults."""
    defaults = Options()
    chosen: dict[str, Any] = {
        "sections": tuple(s for s in SECTIONS if s in args.only),
        "quick": args.quick,
        "out_dir": args.out,
        "fastapi": args.fastapi,
    }
    for name in (
        "samples",
        "test_samples",
        "train_epochs",
        "train_runs",
        "sklearn_max_iter",
        "real_data",
        "real_epochs",
        "csv_rows",
        "csv_reads",
        "csv_epochs",
        "inference_rows",
        "repeats",
        "connections",
        "threads",
        "duration",
        "runs",
        "warmup",
        "batch_size",
        "model",
    ):
        value = getattr(args, name)
        if value is None and args.quick and name in QUICK:
            value = QUICK[name]
        if value is None:
            value = getattr(defaults, name)
        chosen[name] = value
    # Epochs 0 on the command line: leave the choice to `python -m training`.
    for name in ("train_epochs", "real_epochs", "csv_epochs"):
        if chosen[name] == 0:
            chosen[name] = None
    return Options(**chosen)


def _runners() -> dict[str, Callable[[Context], list[Row]]]:
    # Imported here: each section pulls in heavy libraries (sklearn, pandas) of its own.
    from bench import http_bench, inference_bench, training_bench

    return {
        "training": training_bench.run,
        "inference": inference_bench.run,
        "http": http_bench.run,
    }


def _busy(load: list[float] | None, cpus: int) -> bool:
    return load is not None and load[0] > BUSY_LOAD_PER_CPU * cpus


def header(document: dict[str, Any]) -> str:
    """The line above the table: when, which code, which machine, how busy it was."""
    machine = document["machine"]
    commit = (machine.get("git_commit") or "unknown commit")[:10]
    if machine.get("git_dirty"):
        commit += " + uncommitted changes"
    loads = document["load_average"]
    before = loads["start"][0] if loads["start"] else float("nan")
    after = loads["end"][0] if loads["end"] else float("nan")
    started = document["started_at"].replace("T", " ").replace("+00:00", " UTC")
    quick = " — QUICK RUN (--quick)" if document["options"]["quick"] else ""
    return (
        f"Benchmarks{quick}: {started}, commit {commit}, {machine['usable_cpus']} CPUs "
        f"({machine.get('cpu_model') or 'unknown CPU'}), load average {before:.2f} at start, "
        f"{after:.2f} at end, {document['duration_seconds']:.0f} s in all"
    )


def footnotes(document: dict[str, Any], rows: Sequence[Row], results_path: Path | None) -> str:
    """What the reader needs to read the table right, below it."""
    lines = [
        "ratio = ours ÷ the comparison measured in this same run. sklearn = scikit-learn "
        f"{document['machine']['libraries'].get('scikit-learn')}; bare Flask = a Flask app "
        "answering constant JSON under the same gunicorn.conf.py; FastAPI = bench/fastapi_app.py, "
        "the same model and answer under uvicorn with as many workers.",
    ]
    if any(r.section.startswith("reference") for r in rows):
        lines.append(
            "† reference figures from issue 4, measured earlier on this machine (16 connections, "
            "medians of 3 runs of 10 s); not measured by this run."
        )
    if document["options"]["quick"]:
        lines.append(
            "--quick: small sizes and short runs; the targets are about the full sizes, so PASS "
            "and FAIL here only show the plumbing works."
        )
    cpus = document["machine"]["usable_cpus"]
    loads = document["load_average"]
    if _busy(loads["start"], cpus) or _busy(loads["end"], cpus):
        lines.append(
            f"Note: the machine was busy (1-minute load average above {BUSY_LOAD_PER_CPU:g} per "
            "CPU): other processes competed for the CPUs, so these numbers are noisy."
        )
    failed = [r.key for r in rows if r.passed is False]
    if failed:
        lines.append(f"Targets not met: {', '.join(failed)}.")
    if document["errors"]:
        lines.append(f"Sections that could not run: {', '.join(document['errors'])}.")
    if results_path is not None:
        lines.append(f"Results: {results_path}")
    return "\n".join(lines)


def results_path(document: dict[str, Any], out_dir: Path) -> Path:
    """`bench-<UTC start time>.json` in ``out_dir``: one file per run, sorted by time."""
    stamp = document["started_at"].replace(":", "").replace("-", "").split("+")[0]
    return out_dir / f"bench-{stamp}.json"


def write_results(document: dict[str, Any], path: Path) -> None:
    """Write the results to ``path`` and to `latest.json` beside it, each atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    for target in (path, path.with_name("latest.json")):
        tmp = target.with_name(f".{target.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, target)


def run(options: Options, argv: Sequence[str]) -> tuple[dict[str, Any], list[Row]]:
    """Run the chosen sections; the results document and the table's rows."""
    started_at = dt.datetime.now(dt.UTC).replace(microsecond=0)
    started = time.perf_counter()
    load_start = load_average()
    machine = facts()
    runners = _runners()
    rows: list[Row] = []
    errors: dict[str, str] = {}
    sections: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="sensor-bench-") as tmp:
        ctx = Context(options=options, workdir=Path(tmp))
        for name in options.sections:
            load_before = load_average()
            section_started = time.perf_counter()
            logger.info("section %s", name)
            try:
                rows += runners[name](ctx)
            except Exception as exc:
                # One broken section must not cost the numbers of the others.
                logger.exception("section %s could not run", name)
                errors[name] = f"{type(exc).__name__}: {exc}"
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                rows.append(table.skipped(f"{name}.error", name, "section could not run", first))
            sections[name] = {
                "seconds": round(time.perf_counter() - section_started, 2),
                "load_average_before": load_before,
                "load_average_after": load_average(),
            }
    document: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "started_at": started_at.isoformat(),
        "duration_seconds": round(time.perf_counter() - started, 1),
        "command": ["python", "-m", "bench", *argv],
        "options": options.to_dict(),
        "machine": machine,
        "load_average": {"start": load_start, "end": load_average()},
        "sections": sections,
        "rows": [r.to_dict() for r in rows],
        "checks": [
            {"key": r.key, "target": r.target, "value": r.value, "passed": r.passed}
            for r in rows
            if r.passed is not None
        ],
        "all_targets_met": all(r.passed is not False for r in rows),
        "errors": errors,
        "results": ctx.results,
    }
    return document, rows


def _configure_logging(quiet: bool) -> None:
    logging.basicConfig(
        level=logging.WARNING if quiet else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        stream=sys.stderr,
        force=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run `python -m bench` with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        return compare.main(argv[1:])
    args = build_parser().parse_args(argv)
    _configure_logging(args.quiet)
    options = options_from(args)
    cpus = usable_cpus()
    load = load_average()
    if _busy(load, cpus):
        logger.warning(
            "load average %.2f on %d CPUs before starting: other work is running, expect noise",
            load[0] if load else float("nan"),
            cpus,
        )
    document, rows = run(options, argv)
    path = results_path(document, options.out_dir)
    text = table.render(rows)
    notes = footnotes(document, rows, path)
    # The JSON alone reproduces what was printed.
    document["table"] = "\n\n".join((header(document), text, notes))
    write_results(document, path)
    print(header(document))
    print()
    print(text)
    print()
    print(notes)
    if document["errors"]:
        return EXIT_FAILED
    if args.strict and not document["all_targets_met"]:
        return EXIT_FAILED
    return EXIT_OK
