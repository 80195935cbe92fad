"""The bulk batch check never accepts what the pydantic batch model refuses, and agrees on values."""

from __future__ import annotations

import json
import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from service.body import parse_json
from service.schemas import RequestSchemas

SCHEMAS = RequestSchemas(
    ["temperature", "vibration"],
    ["°C", "mm/s"],
    [(-273.15, math.inf), (0.0, 40.0)],
    max_batch=20,
    max_json_depth=32,
)

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-300, max_value=100),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.integers(min_value=-300, max_value=300),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
    st.lists(st.integers(), max_size=2),
)
ids = st.one_of(
    st.text(max_size=130), st.none(), st.integers(), st.just("x" * 128), st.just("y" * 129)
)
reading = st.dictionaries(
    st.sampled_from(["temperature", "vibration", "id", "other"]),
    st.one_of(values, ids),
    min_size=0,
    max_size=4,
) | st.fixed_dictionaries({"temperature": values, "vibration": values}, optional={"id": ids})
plausible = st.fixed_dictionaries(
    {
        "temperature": st.floats(min_value=-273.15, max_value=200),
        "vibration": st.floats(min_value=0, max_value=50),
    },
    optional={"id": ids, "other": values},
)
documents = st.one_of(
    st.fixed_dictionaries({"readings": st.lists(plausible, min_size=1, max_size=5)}),
    st.fixed_dictionaries({"readings": st.lists(reading, min_size=0, max_size=22)}),
    st.fixed_dictionaries(
        {"readings": st.lists(reading, min_size=1, max_size=3)}, optional={"extra": values}
    ),
    st.lists(reading, max_size=2),
)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents)
def test_bulk_check_accepts_only_what_pydantic_accepts(document: object) -> None:
    # Through JSON, as the service sees it: NaN and Infinity become their literals.
    parsed_document = parse_json(json.dumps(document).encode(), 32)
    fast = SCHEMAS.bulk_batch(parsed_document)
    if fast is None:
        return
    try:
        parsed = SCHEMAS.batch.model_validate(parsed_document)
    except ValidationError as exc:  # pragma: no cover - the failure this test exists for
        raise AssertionError(f"bulk check accepted what pydantic refuses: {exc}") from None
    expected = np.array([[r.f0, r.f1] for r in parsed.readings])
    np.testing.assert_array_equal(fast.X, expected)
    pydantic_ids = [r.id for r in parsed.readings]
    assert (fast.ids or [None] * len(pydantic_ids)) == pydantic_ids


def test_plain_batches_take_the_bulk_path() -> None:
    body = json.dumps(
        {
            "readings": [
                {"temperature": 40, "vibration": 1.5, "id": "a"},
                {"temperature": -273.15, "vibration": 0},
            ]
        }
    ).encode()
    batch = SCHEMAS.bulk_batch(parse_json(body, 32))
    assert batch is not None
    np.testing.assert_array_equal(batch.X, [[40.0, 1.5], [-273.15, 0.0]])
    assert batch.ids == ["a", None]


def test_anything_doubtful_is_left_to_pydantic() -> None:
    for document in (
        {"readings": [{"temperature": True, "vibration": 1}]},
        {"readings": [{"temperature": 1, "vibration": 1, "id": None}]},
        {"readings": [{"temperature": 1, "vibration": 1, "x": 1}]},
        {"readings": [{"temperature": 1e308 * 10, "vibration": 1}]},
        {"readings": [{"temperature": 10**400, "vibration": 1}]},
        {"readings": [{"temperature": -274, "vibration": 1}]},
        {"readings": [{"temperature": 1, "vibration": 40.5}]},
        {"readings": [{"temperature": 1, "vibration": 1, "id": "\ud800"}]},
        {"readings": [{"temperature": 1, "vibration": 1}] * 21},
        {"readings": []},
        {"readings": [{"temperature": 1, "vibration": 1}], "x": 1},
    ):
        assert SCHEMAS.bulk_batch(parse_json(json.dumps(document).encode(), 32)) is None, document
