"""One parse, one validator: what the body means is decided from the parsed document, never its bytes."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.body import DuplicateKey, nesting_exceeds, parse_json, parse_json_in_python
from service.errors import MalformedRequest

INFER = "/v2/models/sensor-classifier/infer"
V2_INPUT = b'"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [40.0, 2.0]}]'


def raw(client: FlaskClient, path: str, body: bytes):  # type: ignore[no-untyped-def]
    return client.post(path, data=body, content_type="application/json")


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"temperature": 30, "temperature": 99, "vibration": 1}', "temperature"),
        (b'{"temperature": 30, "vibration": 1, "id": "a", "id": "b"}', "id"),
        (b'{"temperature": 30, "vibration": 1, "\\u0069d": "a", "id": "b"}', "id"),
        (
            b'{"readings": [{"temperature": 30, "vibration": 1},'
            b' {"vibration": 2, "temperature": 40, "vibration": 3}]}',
            "vibration",
        ),
        (
            b'{"readings": [{"temperature": 30, "vibration": 1}],'
            b' "readings": [{"temperature": 99, "vibration": 9}]}',
            "readings",
        ),
    ],
)
def test_a_duplicate_key_is_a_422_naming_it(client: FlaskClient, body: bytes, key: str) -> None:
    response = raw(client, "/classify", body)
    assert response.status_code == 422, response.get_data(as_text=True)
    error = response.get_json()["error"]
    assert f"duplicate key '{key}'" in error["message"]
    assert error["details"] == [{"loc": [key], "message": "duplicate key"}]


def test_a_duplicate_key_in_an_inference_request_is_a_422_in_the_v2_shape(
    client: FlaskClient,
) -> None:
    body = b'{"id": "a", "id": "b", ' + V2_INPUT + b"}"
    response = raw(client, INFER, body)
    assert response.status_code == 422
    assert response.get_json() == {"error": "duplicate key 'id' in a JSON object"}
    inner = V2_INPUT.replace(b'"name": "x"', b'"name": "x", "name": "y"')
    assert raw(client, INFER, b"{" + inner + b"}").status_code == 422
    assert raw(client, INFER, b"{" + V2_INPUT + b"}").status_code == 200


def test_an_escaped_key_means_what_it_spells(client: FlaskClient) -> None:
    single = raw(client, "/classify", b'{"temperature": 30, "vibration": 1, "\\u0069d": "p-1"}')
    assert single.status_code == 200 and single.get_json()["id"] == "p-1"
    batch = raw(
        client,
        "/classify",
        b'{"\\u0072eadings": [{"temperature": 30, "vibration": 1, "\\u0069d": "p-1"},'
        b' {"t\\u0065mperature": 31, "vibration": 1}]}',
    )
    assert batch.status_code == 200, batch.get_data(as_text=True)
    results = batch.get_json()["results"]
    assert results[0]["id"] == "p-1" and "id" not in results[1]


def test_an_id_with_a_lone_surrogate_is_a_422_not_a_500(client: FlaskClient) -> None:
    reading = b'"temperature": 30, "vibration": 1, "id": "\\ud800"'
    for body, loc in (
        (b"{" + reading + b"}", ["id"]),
        (b'{"readings": [{' + reading + b"}]}", ["readings", 0, "id"]),
    ):
        response = raw(client, "/classify", body)
        assert response.status_code == 422, response.get_data(as_text=True)
        assert [d["loc"] for d in response.get_json()["error"]["details"]] == [loc]
    v2 = raw(client, INFER, b'{"id": "\\ud800", ' + V2_INPUT + b"}")
    assert v2.status_code == 400 and "lone surrogate" in v2.get_json()["error"]
    unknown = raw(client, "/classify", b'{"temperature": 30, "vibration": 1, "\\udfff": 1}')
    assert unknown.status_code == 422 and unknown.get_json()["error"]["details"]


@pytest.mark.parametrize(
    ("document", "depth"),
    [(1, 0), ({}, 1), ([], 1), ({"a": [1, 2]}, 2), ([[]], 2), ({"a": [{"b": [[]]}]}, 5)],
)
def test_nesting_is_measured_on_the_parsed_document(document: object, depth: int) -> None:
    assert not nesting_exceeds(document, depth)
    if depth:
        assert nesting_exceeds(document, depth - 1)


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b'{"a": 1,}', b"\xff", b'{"a": 1} x', b"[" * 100_000],
)
def test_what_does_not_parse_is_malformed(body: bytes) -> None:
    with pytest.raises(MalformedRequest):
        parse_json(body, 32)


def test_an_integer_of_more_digits_than_python_converts_is_infinite() -> None:
    # Well-formed JSON (RFC 8259 leaves the range to the parser) out of any range: like 1e999,
    # it parses to an infinity that validation refuses (422), not a parse error quoting Python.
    assert parse_json(b"1" * 5000, 32) == math.inf
    assert parse_json(b"[-" + b"1" * 5000 + b"]", 32) == [-math.inf]
    assert parse_json(b"1" * 4300, 32) == int("1" * 4300)


# --- jiter parses, Python's parser is the reference ----------------------------------------------


def _exact(value: Any) -> Any:
    """``value`` with every type and float spelled out: 1 != 1.0 != True, NaN == NaN, -0.0 != 0.0."""
    if isinstance(value, dict):
        return ("object", [(key, _exact(item)) for key, item in value.items()])
    if isinstance(value, list):
        return ("array", [_exact(item) for item in value])
    if isinstance(value, float):
        return ("float", repr(value))
    return (type(value).__name__, value)


def _outcome(parse: Any, body: bytes) -> Any:
    try:
        return _exact(parse(body, 32))
    except (MalformedRequest, DuplicateKey) as exc:
        return (type(exc).__name__, str(exc), getattr(exc, "details", None))


_STRINGS = st.text() | st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF), max_size=2
)
_JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | _STRINGS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_STRINGS, inner, max_size=4),
    max_leaves=20,
)
_LAYOUTS = st.fixed_dictionaries(
    {
        "ensure_ascii": st.booleans(),
        "indent": st.none() | st.sampled_from([0, 2, "\t"]),
        "separators": st.sampled_from([(",", ":"), (", ", ": "), (" ,\r\n", " :\t")]),
    }
)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(value=_JSON, layout=_LAYOUTS)
def test_generated_documents_parse_as_pythons_parser_parses_them(
    value: Any, layout: dict[str, Any]
) -> None:
    body = json.dumps(value, **layout).encode("utf-8", "surrogatepass")
    assert _outcome(parse_json, body) == _outcome(parse_json_in_python, body)


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=_JSON,
    edits=st.lists(st.tuples(st.integers(min_value=0), st.binary(max_size=2)), max_size=3),
)
def test_damaged_documents_get_pythons_verdict_and_message(
    value: Any, edits: list[tuple[int, bytes]]
) -> None:
    body = json.dumps(value).encode("utf-8", "surrogatepass")
    for position, replacement in edits:  # each edit replaces a byte (or inserts, or deletes)
        at = position % (len(body) + 1)
        body = body[:at] + replacement + body[at + 1 :]
    assert _outcome(parse_json, body) == _outcome(parse_json_in_python, body)


_KEYS = st.sampled_from(['"a"', '"\\u0061"', '"b"', '""', '"\\ud800"'])


@settings(max_examples=300)
@given(pairs=st.lists(st.tuples(_KEYS, st.integers(0, 9)), max_size=5), nested=st.booleans())
def test_duplicate_keys_are_found_as_pythons_parser_finds_them(
    pairs: list[tuple[str, int]], nested: bool
) -> None:
    text = "{" + ",".join(f"{key}:{value}" for key, value in pairs) + "}"
    body = (f'{{"readings": [{{"x": 1}}, {text}]}}' if nested else text).encode()
    assert _outcome(parse_json, body) == _outcome(parse_json_in_python, body)
