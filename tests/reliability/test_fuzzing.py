"""Schema fuzzing: schemathesis generates requests from the live `/openapi.json` of a real gunicorn.

Every operation gets valid (positive) and invalid (negative) generated cases. Every answer must
be no 5xx, have a documented status and content type, and match the documented schema. At least
500 cases run in all; the count is asserted, not assumed.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.support.artifacts import write_artifact
from tests.support.server import Server, start_server

pytestmark = pytest.mark.e2e

MIN_CASES = 500
# Per operation and generation mode; operations without parameters run far fewer (Hypothesis
# stops when there is nothing new to generate).
MAX_EXAMPLES = 120
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("fuzzing")
    artifact = write_artifact(directory / "model.npz", seed=1)
    live = start_server(artifact, log_dir=directory / "server", workers=2)
    yield live
    live.stop()


@pytest.mark.timeout(240)
def test_generated_requests_get_documented_answers_and_never_5xx(server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json", timeout=10)
    cases: Counter[str] = Counter()
    operations = []
    with requests.Session() as session:
        for result in schema.get_all_operations():
            operation = result.ok()
            operations.append(operation.label)
            modes = [GenerationMode.POSITIVE]
            if any(len(p) for p in (operation.path_parameters, operation.query, operation.body)):
                modes.append(GenerationMode.NEGATIVE)
            for mode in modes:
                _fuzz(operation, mode, server.url, session, cases)
    total = sum(cases.values())
    print(f"schemathesis: {total} cases over {len(operations)} operations: {dict(cases)}")
    assert "POST /classify" in operations
    assert total >= MIN_CASES, f"only {total} cases ran: {dict(cases)}"
    assert server.process.poll() is None


def _fuzz(
    operation: schemathesis.APIOperation,
    mode: GenerationMode,
    base_url: str,
    session: requests.Session,
    cases: Counter[str],
) -> None:
    """Run up to MAX_EXAMPLES generated cases of ``operation``; counts them in ``cases``."""

    @settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def exercise(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, session=session, checks=CHECKS, timeout=10)
        cases[f"{operation.label} ({mode.value})"] += 1

    try:
        exercise()
    except Unsatisfiable:
        # A path parameter that takes any string has no invalid variant to generate.
        if mode is GenerationMode.POSITIVE:
            raise
