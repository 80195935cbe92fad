"""Soak: 60 s at 64 concurrent keep-alive connections on a real gunicorn; no errors, flat memory.

Requests/s, p50 and p99 are printed (`-s`) and shown in the run's final summary. Deselect
locally with `-m "not soak"`; `make test` runs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import psutil
import pytest

from tests.support.loadgen import run_load
from tests.support.server import Server

pytestmark = [pytest.mark.e2e, pytest.mark.soak]

CONNECTIONS = 64
SOAK_SECONDS = 60.0
WARMUP_SECONDS = 5.0
MAX_REQUESTS = 3_000_000
MAX_RSS_GROWTH = 0.10
WORKERS = 2


def _body(index: int) -> bytes:
    # Readings spread over and beyond the training range; some connections send small batches.
    temperature = 15.0 + (index * 37 % 90)
    vibration = (index * 13 % 150) / 10.0
    reading = {"temperature": temperature, "vibration": vibration, "id": f"sensor-{index}"}
    if index % 8 == 0:
        return orjson.dumps({"readings": [reading] * 10})
    return orjson.dumps(reading)


def _rss(pids: set[int]) -> dict[int, int]:
    return {pid: psutil.Process(pid).memory_info().rss for pid in pids}


@pytest.mark.timeout(SOAK_SECONDS + WARMUP_SECONDS + 120)
def test_soak_64_connections_for_60_s(
    server_factory: Callable[..., Server], artifact: Path, report: Callable[[str], None]
) -> None:
    # Worker recycling (max_requests) is off: memory growth is measured per process, so the
    # processes must stay the same ones. Everything else is the production configuration.
    server = server_factory(artifact, workers=WORKERS, env={"SENSOR_MAX_REQUESTS": "0"})
    workers = server.worker_pids()
    assert len(workers) == WORKERS

    warmup = run_load(
        server.host,
        server.port,
        connections=CONNECTIONS,
        seconds=WARMUP_SECONDS,
        max_requests=MAX_REQUESTS,
        body_for=_body,
    )
    assert not warmup.errors, warmup.errors[:5]
    before = _rss(workers)

    result = run_load(
        server.host,
        server.port,
        connections=CONNECTIONS,
        seconds=SOAK_SECONDS,
        max_requests=MAX_REQUESTS,
        body_for=_body,
    )
    time.sleep(0.5)
    after = _rss(workers)

    n = len(result.outcomes)
    rate = n / result.seconds
    p50, p99 = result.percentile(50) * 1000, result.percentile(99) * 1000
    growth = {pid: (after[pid] - before[pid]) / before[pid] for pid in workers}
    report(
        f"soak: {n} requests in {result.seconds:.1f} s over {CONNECTIONS} connections:"
        f" {rate:.0f} requests/s, p50 {p50:.1f} ms, p99 {p99:.1f} ms,"
        f" {len(result.errors)} errors (2 CPUs shared with the load generator and other work)"
    )
    for pid in sorted(workers):
        report(
            f"soak: worker {pid} RSS {before[pid] / 2**20:.1f} MiB after warm-up ->"
            f" {after[pid] / 2**20:.1f} MiB after the soak ({growth[pid]:+.1%})"
        )

    assert not result.errors, f"{len(result.errors)} errors: {[o.error for o in result.errors[:5]]}"
    assert result.seconds >= SOAK_SECONDS - 1 or n >= MAX_REQUESTS
    assert server.worker_pids() == workers, "a worker died or was replaced during the soak"
    assert server.process.poll() is None
    for pid, g in growth.items():
        assert g < MAX_RSS_GROWTH, f"worker {pid} grew {g:.1%}"
    assert "Traceback" not in server.stderr()
