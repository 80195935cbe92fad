"""wrk's Lua script and the reading of its results."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.http_bench import BenchError, WrkResult, parse_wrk, request_bodies, write_wrk_script

# What `wrk --latency -s script.lua` prints: its own summary, then our done() line.
OUTPUT = """\
Running 10s test @ http://127.0.0.1:8000/classify
  2 threads and 16 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.21ms    1.02ms  20.00ms   80.00%
  50000 requests in 10.00s, 10.00MB read
  Non-2xx or 3xx responses: 1000
Requests/sec:   5000.00
BENCH-WRK-RESULT {"duration_us":10000000,"requests":50000,"bytes":10485760,"connect":0,"read":2,"write":0,"status":1000,"timeout":3,"mean_us":3210.5,"max_us":20000.0,"p50_us":3000.0,"p90_us":4000.0,"p99_us":7000.0}
"""


def test_parse_reads_our_result_line() -> None:
    result = parse_wrk(OUTPUT)
    assert isinstance(result, WrkResult)
    assert result.requests == 50_000 and result.duration_s == 10.0
    assert result.p50_ms == 3.0 and result.p99_ms == 7.0
    assert result.non_2xx == 1000 and result.errors == 1000 + 2 + 3
    # Only successful answers count as throughput.
    assert result.ok_per_second == 4_900.0
    assert result.to_dict()["requests_per_second"] == 4_900.0


def test_parse_without_result_line_says_what_wrk_printed() -> None:
    with pytest.raises(BenchError, match=r"(?s)no result line.*unable to connect"):
        parse_wrk("unable to connect to 127.0.0.1:8000 Connection refused\n")


def test_script_posts_the_body_as_json(tmp_path: Path) -> None:
    single, batch = request_bodies(("temperature", "vibration"), 100)
    assert set(json.loads(single)) == {"temperature", "vibration"}
    readings = json.loads(batch)["readings"]
    assert len(readings) == 100 and len({json.dumps(r) for r in readings}) == 100
    script = write_wrk_script(tmp_path / "batch.lua", batch).read_text()
    assert 'wrk.method = "POST"' in script
    assert 'wrk.headers["Content-Type"] = "application/json"' in script
    assert f"[==[{batch.decode()}]==]" in script
    assert "latency:percentile(99)" in script


def test_a_body_that_would_end_the_lua_string_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_wrk_script(tmp_path / "x.lua", b'{"a": "]==]"}')


def test_bodies_need_the_synthetic_features() -> None:
    with pytest.raises(BenchError, match="synthetic readings"):
        request_bodies(("pressure",), 10)
