"""The `python -m bench` command line: run the sections, print one table, write the results as JSON."""

from __future__ import annotations

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

from pydantic import ValidationError
from pydantic_settings import CliApp

from bench import compare, table
from bench.context import Context, Options
from bench.machine import facts, load_average
from bench.table import Row
from service.gunicorn_support import available_cpus

logger = logging.getLogger("bench")

SCHEMA_VERSION = 1
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
# A machine busier than this (1-minute load average per usable CPU) gets a warning with its numbers.
BUSY_LOAD_PER_CPU = 0.5


def parse_options(argv: Sequence[str]) -> Options:
    """Options from the command line: explicit values, else --quick's, else the defaults.

    Bad arguments exit with status 2 and say why, as argparse does.
    """
    try:
        options = CliApp.run(Options, cli_args=list(argv))
    except ValidationError as exc:
        for error in exc.errors(include_url=False, include_context=False):
            field = "--" + "-".join(str(part) for part in error["loc"][:1]).replace("_", "-")
            sys.stderr.write(f"python -m bench: error: {field}: {error['msg']}\n")
        raise SystemExit(EXIT_USAGE) from None
    return options.with_quick()


def _busy(load: list[float] | None, cpus: int) -> bool:
    return load is not None and load[0] > BUSY_LOAD_PER_CPU * cpus


def header(document: dict[str, Any]) -> str:
    """The line above the table: when, which code, which machine, how busy it was."""
    machine = document["machine"]
    commit = (machine.get("git_commit") or "unknown commit")[:10]
    if machine.get("git_dirty"):
        commit += " + uncommitted changes"
    before, after = (load[0] if load else math.nan for load in document["load_average"].values())
    started = document["started_at"].replace("T", " ").replace("+00:00", " UTC")
    quick = " — QUICK RUN (--quick)" if document["options"]["quick"] else ""
    return (
        f"Benchmarks{quick}: {started}, commit {commit}, {machine['usable_cpus']} CPUs "
        f"({machine.get('cpu_model') or 'unknown CPU'}), load average {before:.2f} at start, "
        f"{after:.2f} at end, {document['duration_seconds']:.0f} s in all"
    )


def footnotes(document: dict[str, Any], rows: Sequence[Row], results_path: Path) -> str:
    """What the reader needs to read the table right, below it."""
    lines = [
        "ratio = ours ÷ the comparison measured in this same run. sklearn = scikit-learn "
        f"{document['machine']['libraries'].get('scikit-learn')}; bare Flask = a Flask app "
        "answering constant JSON under the same gunicorn.conf.py; FastAPI = bench/fastapi_app.py, "
        "the same model and answer under uvicorn with as many workers.",
    ]
    if document["options"]["quick"]:
        lines.append(
            "--quick: small sizes and short runs; the targets are about the full sizes, so PASS "
            "and FAIL here only show the plumbing works."
        )
    cpus = document["machine"]["usable_cpus"]
    if any(_busy(load, cpus) for load in document["load_average"].values()):
        lines.append(
            f"Note: the machine was busy (1-minute load average above {BUSY_LOAD_PER_CPU:g} per "
            "CPU): other processes competed for the CPUs, so these numbers are noisy."
        )
    if failed := [r.key for r in rows if r.passed is False]:
        lines.append(f"Targets not met: {', '.join(failed)}.")
    if document["errors"]:
        lines.append(f"Sections that could not run: {', '.join(document['errors'])}.")
    lines.append(f"Results: {results_path}")
    return "\n".join(lines)


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
    # Imported here: each section pulls in heavy libraries (sklearn, pandas) of its own.
    from bench import http_bench, inference_bench, training_bench

    runners: dict[str, Callable[[Context], list[Row]]] = {
        "training": training_bench.run,
        "inference": inference_bench.run,
        "http": http_bench.run,
    }
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
                first = (str(exc).strip() or type(exc).__name__).splitlines()[0]
                rows.append(table.skipped(f"{name}.error", "section could not run", first))
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


def main(argv: Sequence[str] | None = None) -> int:
    """Run `python -m bench` with ``argv`` (default: sys.argv[1:]); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "compare":
        return compare.main(argv[1:])
    options = parse_options(argv)
    logging.basicConfig(
        level=logging.WARNING if options.quiet else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
        force=True,
    )
    # Not a line for every request of the readiness checks.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    cpus, load = available_cpus(), load_average()
    if load is not None and _busy(load, cpus):
        logger.warning(
            "load average %.2f on %d CPUs before starting: other work is running, expect noise",
            load[0],
            cpus,
        )
    document, rows = run(options, argv)
    # bench-<UTC start>.json: one file per run, sorted by time.
    stamp = document["started_at"].replace(":", "").replace("-", "").split("+")[0]
    path = options.out_dir / f"bench-{stamp}.json"
    # The JSON alone reproduces what was printed.
    document["table"] = "\n\n".join(
        (header(document), table.render(rows), footnotes(document, rows, path))
    )
    write_results(document, path)
    print(document["table"])
    if document["errors"] or (options.strict and not document["all_targets_met"]):
        return EXIT_FAILED
    return EXIT_OK
