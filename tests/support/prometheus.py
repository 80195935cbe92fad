"""A real Prometheus (Debian's `prometheus` package) for tests: promtool, and a server on 127.0.0.1.

    with running_prometheus(tmp_path, targets=["127.0.0.1:8000"], rule_files=[RULES]) as prom:
        prom.query("up")

`make test` installs the package when it can (root with apt-get); elsewhere the tests that need
it are skipped, saying why.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.support.server import free_port, stop_process

REPO_ROOT = Path(__file__).resolve().parents[2]
RULES = REPO_ROOT / "deploy" / "prometheus" / "rules.yaml"
RULES_TEST = REPO_ROOT / "deploy" / "prometheus" / "rules_test.yaml"
STARTUP_SECONDS = 30.0


def alert_rule(name: str) -> dict[str, Any]:
    """The alert rule ``name`` of rules.yaml."""
    groups = yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]
    found = [rule for group in groups for rule in group["rules"] if rule.get("alert") == name]
    assert len(found) == 1, name
    return found[0]


def alert_threshold(name: str) -> float:
    """The value the alert's first comparison (`metric > value`) sets."""
    match = re.search(r">\s*([0-9.]+)", alert_rule(name)["expr"])
    assert match is not None, name
    return float(match.group(1))


def binary(name: str) -> str:
    """The path of ``name`` (promtool, prometheus), or skip the test saying how to get it."""
    found = shutil.which(name)
    if found is None:
        pytest.skip(
            f"{name} not found: install Debian's `prometheus` package (`make test` does, as root"
            " with apt-get)"
        )
    return found


@dataclass
class Prometheus:
    """A running Prometheus: where its HTTP API listens, and its process."""

    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now (the API's `data.result`)."""
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": expr}, timeout=10.0)
        body = response.json()
        assert response.status_code == 200 and body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def running_prometheus(
    directory: Path, *, targets: Sequence[str], rule_files: Sequence[Path], interval: str = "1s"
) -> Iterator[Prometheus]:
    """Prometheus on a free loopback port, its data in ``directory``, always stopped afterwards.

    It scrapes ``targets`` (`/metrics`) and evaluates ``rule_files`` every ``interval``.
    """
    executable = binary("prometheus")
    directory.mkdir(parents=True, exist_ok=True)
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rule_files],
        "scrape_configs": [
            {"job_name": "sensor-classifier", "static_configs": [{"targets": list(targets)}]}
        ],
    }
    config_path = directory / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    port = free_port()
    log_path = directory / "prometheus.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                executable,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    prometheus = Prometheus(url=f"http://127.0.0.1:{port}", process=process, log_path=log_path)
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"prometheus exited with {process.returncode}:\n{prometheus.log()}"
                )
            try:
                if httpx.get(f"{prometheus.url}/-/ready", timeout=1.0).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"prometheus not ready in {STARTUP_SECONDS:g}s:\n{prometheus.log()}"
                )
            time.sleep(0.1)
        yield prometheus
    finally:
        stop_process(process, timeout=10.0)
