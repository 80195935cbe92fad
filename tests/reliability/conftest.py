"""Fixtures for the reliability tests: real gunicorn servers on 127.0.0.1 serving tiny artifacts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support.artifacts import write_artifact
from tests.support.server import Server, start_server

# Lines for the end-of-run summary (the soak's numbers, the attacks' measurements).
REPORT = pytest.StashKey[list[str]]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "soak: a minute-long load test; part of `make test`, deselect locally with -m 'not soak'",
    )


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Measurements the reliability tests made (the soak's numbers), shown after every run."""
    lines = terminalreporter.config.stash.get(REPORT, [])
    if lines:
        terminalreporter.section("reliability measurements")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def report(request: pytest.FixtureRequest) -> Callable[[str], None]:
    """Record a line for the end-of-run summary (and print it for `-s`)."""

    def add(line: str) -> None:
        print(line)
        request.config.stash.setdefault(REPORT, []).append(line)

    return add


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    """A tiny real artifact at the path the server will watch."""
    return write_artifact(tmp_path / "models" / "model.npz", seed=1)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start real gunicorn servers (``start_server`` arguments); every one is stopped afterwards."""
    servers: list[Server] = []

    def start(model_path: Path, **settings: object) -> Server:
        server = start_server(model_path, log_dir=tmp_path / f"server-{len(servers)}", **settings)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()
