"""wrk's Lua script and the reading of its results."""

from __future__ import annotations

import dataclasses
import json
import re
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
BENCH-WRK-RESULT {"duration_s":10.000000,"requests":50000,"bytes":10485760,"connect_errors":0,"read_errors":2,"write_errors":0,"timeouts":3,"non_2xx":1000,"mean_ms":3.2105,"max_ms":20.0000,"p50_ms":3.0000,"p90_ms":4.0000,"p99_ms":7.0000}
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
    # done() prints every field of a WrkResult but the server's CPU, which wrk cannot know.
    printed = set(re.findall(r'"(\w+)":%', script))
    assert printed == {f.name for f in dataclasses.fields(WrkResult)} - {"server_cpu_s"}


def test_a_body_that_would_end_the_lua_string_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        write_wrk_script(tmp_path / "x.lua", b'{"a": "]==]"}')


def test_bodies_need_the_synthetic_features() -> None:
    with pytest.raises(BenchError, match="synthetic readings"):
        request_bodies(("pressure",), 10)
