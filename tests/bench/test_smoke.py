"""`python -m bench` end to end with tiny sizes: every section runs and reports (no timing asserted)."""

from __future__ import annotations

import math

import pytest

from bench import compare, http_bench, training_bench
from bench.context import REAL_DATA, Context, Options
from tests.bench.smoke_run import BenchRun
from tests.support import server as launcher

pytestmark = pytest.mark.e2e

TRAINING_KEYS = {
    "training.wall_seconds",
    "training.test_accuracy",
    "training.test_ece",
    "training.real_accuracy",
    "training.csv_read_seconds",
    "training.parquet_read_seconds",
    "training.csv_peak_rss_mb",
}
INFERENCE_KEYS = {
    "inference.one_reading_seconds",
    "inference.one_reading_path_seconds",
    "inference.many_readings_seconds",
    "inference.many_readings_per_second",
}
HTTP_KEYS = {
    f"http.{case}.{measure}"
    for case in ("single", "batch")
    for measure in ("p50_ms", "p99_ms", "errors", "requests_per_second")
} | {
    "http.batch.readings_per_second",
    "http.single.cpu_us_per_request",
    "http.single.vs_fastapi",
    "http.single.bare_vs_fastapi",
    "http.single.cpu_vs_fastapi",
    "http.single.errors_vs_fastapi",
}


def test_every_section_ran_and_printed_one_table(bench_run: BenchRun) -> None:
    assert bench_run.document["errors"] == {}, bench_run.stderr[-3000:]
    # --strict: status 1 exactly when a target was missed (tiny sizes often miss them).
    assert bench_run.returncode == (0 if bench_run.document["all_targets_met"] else 1)
    expected = TRAINING_KEYS | INFERENCE_KEYS
    if "http" in bench_run.sections:
        expected |= HTTP_KEYS
    assert expected <= set(bench_run.rows)
    table_lines = [line for line in bench_run.stdout.splitlines() if line.startswith("|")]
    assert len(table_lines) == 2 + len(bench_run.rows)
    assert bench_run.document["table"].count("\n|") == len(table_lines)
    assert "QUICK RUN" in bench_run.stdout


def test_measured_rows_hold_plausible_numbers(bench_run: BenchRun) -> None:
    rows = bench_run.rows
    for key in (
        "training.wall_seconds",
        "inference.one_reading_seconds",
        "inference.many_readings_seconds",
    ):
        row = rows[key]
        assert (
            row["value"] > 0
            and row["baseline"] > 0
            and math.isclose(row["ratio"], row["value"] / row["baseline"])
        )
    for key in ("training.test_accuracy", "training.test_ece"):
        assert 0 <= rows[key]["value"] <= 1 and rows[key]["passed"] is not None
    # Far above chance (1/3) even after a few epochs: the model and its test set line up.
    assert rows["training.test_accuracy"]["value"] > 0.85
    assert 0 < rows["training.csv_peak_rss_mb"]["value"] < 2000
    synthetic = bench_run.document["results"]["training"]["synthetic"]
    assert synthetic["sklearn"]["same_training_data"] is True
    assert synthetic["test_set"]["samples"] == 3000
    assert (
        len(synthetic["ours"]["wall_seconds_runs"])
        == len(synthetic["sklearn"]["fit_seconds_runs"])
        == 2
    )
    assert math.isclose(
        rows["training.wall_seconds"]["value"],
        synthetic["ours"]["wall_seconds_median"],
        abs_tol=1e-3,
    )
    real = rows["training.real_accuracy"]
    if REAL_DATA.is_file():
        assert real["value"] > 0.8
        assert (
            bench_run.document["results"]["training"]["real"]["sklearn"]["same_test_size"] is True
        )
    else:
        assert real["value"] is None and real["text"].startswith("skipped")


def test_http_rows_compare_the_service_with_the_bare_app(bench_run: BenchRun) -> None:
    if "http" not in bench_run.sections:
        pytest.skip(
            "wrk (the HTTP load generator) or gunicorn.conf.py is missing: install wrk with "
            "`sudo apt-get install wrk` (`make test` does) to run the HTTP section"
        )
    rows = bench_run.rows
    single = rows["http.single.requests_per_second"]
    assert single["value"] > 0 and single["baseline"] > 0
    assert single["passed"] == (single["ratio"] >= http_bench.MIN_SINGLE_RATIO)
    cpu = rows["http.single.cpu_us_per_request"]
    assert cpu["passed"] == (cpu["ratio"] <= 1 / http_bench.MIN_SINGLE_RATIO)
    assert rows["http.single.errors"]["value"] == 0
    assert rows["http.batch.errors"]["value"] == 0
    batch = rows["http.batch.readings_per_second"]
    assert math.isclose(batch["value"], rows["http.batch.requests_per_second"]["value"] * 100)
    assert batch["passed"] == (batch["ratio"] >= http_bench.MIN_BATCH_RATIO)
    cases = bench_run.document["results"]["http"]["cases"]
    assert all(len(cases[case][app]["runs"]) == 2 for case in cases for app in ("service", "bare"))
    assert len(cases["single"]["fastapi"]["runs"]) == 2 and "fastapi" not in cases["batch"]
    assert rows["http.single.errors_vs_fastapi"]["baseline"] == 0
    versus = rows["http.single.vs_fastapi"]
    assert versus["passed"] == (versus["ratio"] >= 1.0)
    for key, bound in (
        ("http.single.p99_vs_fastapi", http_bench.MAX_SINGLE_P99_VS_FASTAPI),
        ("http.batch.p99_vs_fastapi", http_bench.MAX_BATCH_P99_VS_FASTAPI),
    ):
        row = rows[key]
        assert row["baseline"] == cases["single"]["fastapi"]["median_p99_ms"]
        assert row["passed"] == (row["ratio"] <= bound)
    # Server CPU per request: measured from /proc for every server, a few hundred µs here.
    for key in ("http.single.cpu_us_per_request", "http.single.cpu_vs_fastapi"):
        assert 1 < rows[key]["value"] < 100_000 and 1 < rows[key]["baseline"] < 100_000
    # Only figures measured in this run: no rows quoting numbers from elsewhere.
    assert not any(row["key"].startswith("reference.") for row in bench_run.document["rows"])
    # The whole service's memory and start-up, psutil over the master and its workers.
    startup = bench_run.document["results"]["http"]["startup"]
    assert len(startup["seconds_to_first_200"]) == http_bench.STARTUP_RUNS
    assert all(
        m["processes"] == 1 + http_bench.STARTUP_WORKERS for m in startup["memory_after_warmup"]
    )
    assert 10 < rows["http.service_memory_mb"]["value"] < 10_000
    assert 0 < rows["http.startup_seconds"]["value"] < launcher.STARTUP_SECONDS


def test_results_carry_machine_facts_and_compare_with_themselves(bench_run: BenchRun) -> None:
    machine = bench_run.document["machine"]
    assert machine["cpu_count"] >= 1 and machine["python"] and machine["libraries"]["numpy"]
    assert machine["blas"] and len(machine["git_commit"] or "0" * 40) == 40
    assert list(bench_run.out_dir.glob("bench-*.json"))
    latest = bench_run.out_dir / "latest.json"
    lines = [
        line
        for line in compare.render(latest, latest).splitlines()
        if line.startswith("| ") and "measure" not in line
    ]
    assert lines and all(line.endswith("| ~ |") or "| same |" in line for line in lines)


def test_real_data_row_is_skipped_when_the_file_is_absent(tmp_path) -> None:
    ctx = Context(options=Options(real_data=tmp_path / "absent.csv"), workdir=tmp_path)
    ctx.results["training"] = {}
    [row] = training_bench.real(ctx)
    assert row.key == "training.real_accuracy" and row.value is None and row.passed is None
    assert row.text == "skipped: data file absent"
    assert "absent.csv not found" in ctx.results["training"]["real"]["skipped"]
