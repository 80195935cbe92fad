"""The bare Flask floor answers like /classify does, computing nothing."""

from __future__ import annotations

import json

from bench.bare_app import create_app
from service.schemas import response_schemas

# The service's own answer models say which keys an answer has.
SCHEMAS = response_schemas(("normal", "warning", "critical"))
ANSWER_KEYS = set(SCHEMAS.answer.model_json_schema()["required"])
RESULT_KEYS = set(SCHEMAS.classification.model_json_schema()["required"])


def test_single_and_batch_answers_have_the_classify_shape() -> None:
    client = create_app().test_client()
    single = client.post("/classify", json={"temperature": 30.0, "vibration": 1.0})
    assert single.status_code == 200
    assert single.content_type == "application/json"
    answer = single.get_json()
    assert set(answer) == ANSWER_KEYS
    assert answer["label"] in answer["probabilities"]

    readings = [{"temperature": 30.0 + i, "vibration": 1.0} for i in range(7)]
    batch = client.post(
        "/classify", data=json.dumps({"readings": readings}), content_type="application/json"
    )
    assert batch.status_code == 200
    document = batch.get_json()
    assert len(document["results"]) == 7
    assert set(document["results"][0]) == RESULT_KEYS


def test_the_answer_is_constant() -> None:
    client = create_app().test_client()
    first = client.post("/classify", json={"temperature": 30.0, "vibration": 1.0}).data
    other = client.post("/classify", json={"temperature": 75.0, "vibration": 6.0}).data
    assert first == other
