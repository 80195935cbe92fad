"""Fixtures for the benchmark suite's tests: one tiny end-to-end run of `python -m bench`, shared."""

from __future__ import annotations

import pytest

from tests.bench.smoke_run import BenchRun, run_bench


@pytest.fixture(scope="session")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> BenchRun:
    """The tiny run, once per session: it takes half a minute."""
    return run_bench(tmp_path_factory.mktemp("bench-results"))
