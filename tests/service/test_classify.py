"""`POST /classify`: answers to one reading and to batches, checked against the model itself."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from flask.testing import FlaskClient

import model
from tests.support.artifacts import middle_reading

# The contract: what every answer to a reading carries (a single answer adds model_version).
RESULT_FIELDS = {"label", "confidence", "probabilities", "in_training_range", "novel", "novelty"}


def post(client: FlaskClient, payload: object) -> dict:
    response = client.post("/classify", json=payload)
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    return response.get_json()


def expected(classifier: model.Classifier, rows: list[list[float]]) -> np.ndarray:
    return classifier.predict_proba(np.array(rows, dtype=np.float64))


def test_one_reading_answer_has_every_field_and_matches_the_model(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    answer = post(client, {"temperature": 47.5, "vibration": 2.3})
    assert set(answer) == RESULT_FIELDS | {"model_version"}
    P = expected(classifier, [[47.5, 2.3]])[0]
    assert list(answer["probabilities"]) == list(classifier.classes)
    got = np.array([answer["probabilities"][c] for c in classifier.classes])
    np.testing.assert_allclose(got, P, atol=1e-6)
    assert math.isclose(sum(answer["probabilities"].values()), 1.0, abs_tol=1e-9)
    assert answer["label"] == classifier.classes[int(np.argmax(P))]
    assert answer["confidence"] == answer["probabilities"][answer["label"]]
    assert answer["confidence"] == max(answer["probabilities"].values())
    assert answer["in_training_range"] is True
    assert answer["model_version"] == classifier.version


def test_id_is_echoed_and_optional(client: FlaskClient) -> None:
    assert post(client, {"temperature": 40.0, "vibration": 1.0, "id": "pump-7"})["id"] == "pump-7"
    assert "id" not in post(client, {"temperature": 40.0, "vibration": 1.0})
    assert post(client, {"temperature": 40, "vibration": 1, "id": "x" * 128})["id"] == "x" * 128


def test_integers_are_numbers(client: FlaskClient) -> None:
    assert post(client, {"temperature": 40, "vibration": 0})["label"]


@pytest.mark.parametrize(
    ("reading", "inside"),
    [
        ({"temperature": 20.0, "vibration": 0.0}, True),  # the training minimum itself
        ({"temperature": 90.0, "vibration": 12.0}, True),  # the maximum
        ({"temperature": 19.99, "vibration": 5.0}, False),
        ({"temperature": 50.0, "vibration": 12.01}, False),
        ({"temperature": 1e300, "vibration": 1e300}, False),
    ],
)
def test_in_training_range_flags_any_feature_outside(
    client: FlaskClient, classifier: model.Classifier, reading: dict, inside: bool
) -> None:
    answer = post(client, reading)
    assert answer["in_training_range"] is inside
    row = [[reading["temperature"], reading["vibration"]]]
    assert bool(classifier.in_training_range(row)[0]) is inside


def test_absurd_but_finite_readings_still_get_probabilities(client: FlaskClient) -> None:
    for reading in (
        {"temperature": 1.7e308, "vibration": 1.7e308},
        {"temperature": -273.15, "vibration": 0.0},
        {"temperature": 5e-324, "vibration": 5e-324},
    ):
        answer = post(client, reading)
        values = list(answer["probabilities"].values())
        assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values), answer
        assert math.isclose(sum(values), 1.0, abs_tol=1e-9)


def test_batch_answers_in_request_order_and_equal_single_answers(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    rng = np.random.default_rng(3)
    rows = np.column_stack([rng.uniform(10, 100, 50), rng.uniform(0, 14, 50)]).tolist()
    readings = [{"temperature": t, "vibration": v} for t, v in rows]
    readings[7]["id"] = "seventh"
    answer = post(client, {"readings": readings})
    assert set(answer) == {"model_version", "results"}
    assert answer["model_version"] == classifier.version
    results = answer["results"]
    assert len(results) == len(readings)
    P = expected(classifier, rows)
    for i, (result, reading) in enumerate(zip(results, readings, strict=True)):
        assert set(result) == RESULT_FIELDS | ({"id"} if "id" in reading else set())
        got = np.array([result["probabilities"][c] for c in classifier.classes])
        np.testing.assert_allclose(got, P[i], atol=1e-6)
        assert result["label"] == classifier.classes[int(np.argmax(P[i]))]
        assert result["confidence"] == result["probabilities"][result["label"]]
        assert result["in_training_range"] == bool(classifier.in_training_range([rows[i]])[0])
        novelty = float(classifier.novelty([rows[i]])[0])
        assert result["novelty"] == pytest.approx(novelty, rel=1e-9)
        assert result["novel"] is (novelty > 1.0)
    assert results[7]["id"] == "seventh"
    # One reading alone and the same reading inside a batch get the same answer, to float32
    # precision: BLAS's float32 kernels depend on the number of rows (see tests/model).
    for i in (0, 7, 49):
        single = post(client, readings[i])
        assert single["label"] == results[i]["label"]
        for c in classifier.classes:
            assert math.isclose(
                single["probabilities"][c],
                results[i]["probabilities"][c],
                rel_tol=1e-5,
                abs_tol=1e-9,
            )


def test_batch_of_one_and_of_the_maximum(client: FlaskClient, app) -> None:
    max_batch = app.extensions["sensor"]["settings"].max_batch
    reading = {"temperature": 50.0, "vibration": 3.0}
    assert len(post(client, {"readings": [reading]})["results"]) == 1
    assert len(post(client, {"readings": [reading] * max_batch})["results"]) == max_batch


def test_an_id_spelling_readings_is_still_a_single_reading(
    client: FlaskClient, classifier: model.Classifier
) -> None:
    answer = post(client, {**middle_reading(classifier), "id": "readings"})
    assert answer["id"] == "readings"
    assert "results" not in answer


def test_escaped_key_is_understood_as_the_batch_key(client: FlaskClient) -> None:
    body = b'{"read\\u0069ngs": [{"temperature": 50, "vibration": 3}]}'
    response = client.post("/classify", data=body, content_type="application/json")
    assert response.status_code == 200
    assert len(response.get_json()["results"]) == 1


def test_content_type_with_charset_is_json(client: FlaskClient) -> None:
    response = client.post(
        "/classify",
        data=b'{"temperature": 50, "vibration": 3}',
        content_type="application/json; charset=utf-8",
    )
    assert response.status_code == 200


def test_the_answer_is_the_least_expected_cost_label(tmp_path) -> None:
    """A miss of `critical` costing 50 turns doubtful readings into critical answers."""
    from service.app import create_app
    from service.settings import Settings
    from tests.support.artifacts import build_classifier

    plain = build_classifier(seed=4)
    costs = np.ones((3, 3)) - np.eye(3)
    costs[2, 0] = costs[2, 1] = 50.0  # truth critical, answered normal / warning
    costly = dataclasses.replace(plain, costs=costs)
    assert costly.version != plain.version
    path = tmp_path / "m.npz"
    costly.save(path)
    client = create_app(Settings(model_path=path)).test_client()

    rng = np.random.default_rng(5)
    rows = np.column_stack([rng.uniform(20, 90, 200), rng.uniform(0, 12, 200)])
    P = plain.predict_proba(rows)
    # By hand: expected cost of answering j is sum_i P_i C_ij.
    chosen = (P @ costs).argmin(axis=1)
    assert (chosen != P.argmax(axis=1)).any(), "the costs should change some answers"
    readings = [{"temperature": t, "vibration": v} for t, v in rows.tolist()]
    results = post(client, {"readings": readings})["results"]
    assert [r["label"] for r in results] == [plain.classes[j] for j in chosen]
    for r in results:
        assert r["confidence"] == r["probabilities"][r["label"]]
    for i in np.flatnonzero(chosen != P.argmax(axis=1))[:5]:
        single = post(client, readings[i])
        assert single["label"] == plain.classes[chosen[i]]
        np.testing.assert_allclose(list(single["probabilities"].values()), P[i], atol=1e-6)
    v2 = client.post(
        "/v2/models/sensor-classifier/infer",
        json={
            "inputs": [{"name": "x", "shape": [200, 2], "datatype": "FP64", "data": rows.tolist()}]
        },
    ).get_json()
    labels = next(o for o in v2["outputs"] if o["name"] == "label")["data"]
    assert labels == [plain.classes[j] for j in chosen]
    shown = client.get("/model").get_json()["costs"]
    assert shown["critical"] == {"normal": 50.0, "warning": 50.0, "critical": 0.0}
    assert shown["normal"] == {"normal": 0.0, "warning": 1.0, "critical": 1.0}
