"""A worker's budget of body and answer bytes in flight: refused over it, always given back."""

from __future__ import annotations

from pathlib import Path

import pytest
from flask.testing import FlaskClient

from service.app import create_app
from service.body import BodyBudget
from service.errors import Busy
from service.settings import Settings

READING = {"temperature": 47.5, "vibration": 2.3}


def test_a_request_over_the_budget_is_busy_and_what_was_held_is_given_back() -> None:
    budget = BodyBudget(limit=1000)
    first, second, third = {}, {}, {}
    budget.reserve(first, 600)
    budget.reserve(second, 400)
    with pytest.raises(Busy) as refused:
        budget.reserve(third, 1)
    assert refused.value.status == 503
    assert refused.value.headers == {"Retry-After": "1", "Connection": "close"}
    assert "SENSOR_MAX_BYTES_IN_FLIGHT" in refused.value.message
    budget._release(first)
    budget.reserve(third, 600)
    assert budget.held == 1000


@pytest.fixture
def budgeted(tmp_path: Path, artifact: Path) -> tuple[FlaskClient, BodyBudget]:
    app = create_app(Settings(model_path=artifact, max_body_bytes=2048, max_bytes_in_flight=4096))
    wsgi = app.wsgi_app
    seen: list[BodyBudget] = []

    def spy(environ, start_response):  # type: ignore[no-untyped-def]
        result = wsgi(environ, start_response)
        seen.append(environ[BodyBudget.ENVIRON_KEY])
        return result

    app.wsgi_app = spy  # type: ignore[method-assign]
    client = app.test_client()
    client.post("/classify", json=READING).close()
    return client, seen[0]


def test_every_answer_gives_its_bytes_back(budgeted: tuple[FlaskClient, BodyBudget]) -> None:
    client, budget = budgeted
    assert budget.held == 0
    for send in (
        lambda: client.post("/classify", json=READING),
        lambda: client.post("/classify", json={"readings": [READING] * 20}),
        lambda: client.post("/classify", data=b"{", content_type="application/json"),
        lambda: client.post("/classify", json={"temperature": "hot", "vibration": 1}),
        lambda: client.post("/classify", data=b"x" * 3000, content_type="application/json"),
        lambda: client.post("/classify", data=b"{}", content_type="text/plain"),
        lambda: client.get("/model"),
    ):
        response = send()
        response.close()
        assert budget.held == 0, response.status


def test_an_answer_not_yet_sent_still_counts(budgeted: tuple[FlaskClient, BodyBudget]) -> None:
    client, budget = budgeted
    streamed = client.post("/classify", json={"readings": [READING] * 20}, buffered=False)
    assert budget.held >= len(streamed.get_data())
    # Meanwhile another request whose body would pass the budget is turned away unread.
    busy = client.post("/classify", data=b" " * 2000 + b"{}", content_type="application/json")
    assert busy.status_code == 503 and busy.headers["Retry-After"] == "1"
    assert busy.get_json()["error"]["status"] == 503
    streamed.close()
    ok = client.post("/classify", json=READING)
    assert ok.status_code == 200
    ok.close()
    busy.close()
    assert budget.held == 0


def test_the_budget_must_hold_one_body() -> None:
    with pytest.raises(ValueError, match="at least SENSOR_MAX_BODY_BYTES"):
        Settings(max_body_bytes=4096, max_bytes_in_flight=2048)
