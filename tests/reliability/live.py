"""The real gunicorn of `tests.support.server`, plus what reliability tests ask of it.

On top of the shared launcher: wait until every worker (not just one) has loaded its model, and
read the JSON access log, whose `pid` tells which worker answered a request.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest

from tests.support import server as launcher

START_SECONDS = 60.0
# Lines for the end-of-run summary (see conftest.pytest_terminal_summary).
REPORT = pytest.StashKey[list[str]]()


@dataclass
class LiveServer:
    """A ready server with ``workers`` workers that have all loaded ``model_path``."""

    server: launcher.Server
    workers: int
    model_path: Path
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def pid(self) -> int:
        return self.server.pid

    @property
    def process(self):  # type: ignore[no-untyped-def]
        return self.server.process

    def worker_pids(self) -> set[int]:
        return set(self.server.worker_pids())

    def log_text(self) -> str:
        """gunicorn's and the app's log lines (stderr)."""
        return self.server.stderr()

    def access_records(self) -> list[dict[str, object]]:
        """The JSON access-log lines written so far (stdout)."""
        records = []
        for line in self.server.stdout_path.read_bytes().splitlines():
            with contextlib.suppress(orjson.JSONDecodeError):
                record = orjson.loads(line)
                if isinstance(record, dict) and record.get("type") == "access":
                    records.append(record)
        return records

    def stop(self, timeout: float = launcher.STOP_SECONDS) -> int:
        return self.server.stop(timeout)


def start_server(
    model_path: Path,
    log_dir: Path,
    *,
    workers: int = 2,
    env: dict[str, str] | None = None,
) -> LiveServer:
    """Start gunicorn and wait until `/readyz` is 200 and every worker has loaded its model."""
    server = launcher.start_server(model_path, workers=workers, env=env, log_dir=log_dir)
    live = LiveServer(server, workers, model_path)
    deadline = time.monotonic() + START_SECONDS
    try:
        while (
            live.log_text().count("serving model ") < workers or len(live.worker_pids()) < workers
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"not every worker booted:\n{live.log_text()[-4000:]}")
            if server.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited:\n{live.log_text()[-4000:]}")
            time.sleep(0.05)
    except BaseException:
        server.stop()
        raise
    return live
