"""Every error a client can provoke: the status the contract names, in the one JSON envelope."""

from __future__ import annotations

import gzip
import io
import json
import zlib

import pytest
from flask import Flask
from flask.testing import FlaskClient

from service.app import create_app
from service.schemas import ErrorResponse
from service.settings import Settings

GOOD = {"temperature": 47.5, "vibration": 2.3}


def assert_envelope(response, status: int) -> dict:
    """The error envelope with ``status``: JSON, never HTML, never a traceback."""
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    text = response.get_data(as_text=True)
    assert "<html" not in text.lower() and "Traceback" not in text
    body = response.get_json()
    ErrorResponse.model_validate(body)
    assert body["error"]["status"] == status
    assert body["error"]["message"]
    return body["error"]


def post_raw(client: FlaskClient, body: bytes, content_type: str = "application/json"):
    return client.post("/classify", data=body, content_type=content_type)


@pytest.mark.parametrize(
    "body",
    [
        b'{"temperature": 47.5, "vibration"',  # truncated
        b'{"temperature": 47.5, "vibration": 2.3}}',  # trailing garbage
        b"",  # empty
        b"\xff\xfe{}",  # not UTF-8
        b'{"temperature": 47.5, "vibration": 2.3, "id": "\xff"}',  # invalid UTF-8 in a string
        b"{'temperature': 47.5}",  # not JSON quoting
        b'{"temperature": 47.5, "vibration": 2.3,}',  # trailing comma
    ],
)
def test_malformed_json_is_400(client: FlaskClient, body: bytes) -> None:
    error = assert_envelope(post_raw(client, body), 400)
    assert error["message"].startswith("malformed JSON")
    assert error["details"] == []


@pytest.mark.parametrize(
    ("levels", "inside"),
    [(1000, False), (40, False), (40, True)],
)
def test_nesting_deeper_than_the_limit_is_400(
    client: FlaskClient, levels: int, inside: bool
) -> None:
    nested = "[" * levels + "]" * levels
    body = f'{{"temperature": {nested}, "vibration": 1}}' if inside else nested
    error = assert_envelope(post_raw(client, body.encode()), 400)
    assert "deeper than the limit of 32" in error["message"]


def test_nesting_within_the_limit_is_a_schema_error(client: FlaskClient) -> None:
    nested = "[" * 5 + "1" + "]" * 5
    response = post_raw(client, f'{{"temperature": {nested}, "vibration": 1}}'.encode())
    assert assert_envelope(response, 422)["details"][0]["loc"] == ["temperature"]


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/jsonx", ""]
)
def test_a_body_that_is_not_json_is_415(client: FlaskClient, content_type: str) -> None:
    response = client.post(
        "/classify", data=json.dumps(GOOD), headers={"Content-Type": content_type}
    )
    assert_envelope(response, 415)


def test_a_body_over_the_limit_is_413_before_it_is_read(artifact) -> None:
    app = create_app(Settings(model_path=artifact, max_body_bytes=2048))
    client = app.test_client()
    readings = [GOOD] * 100
    error = assert_envelope(client.post("/classify", json={"readings": readings}), 413)
    assert "SENSOR_MAX_BODY_BYTES" in error["message"]
    assert client.post("/classify", json={"readings": readings[:10]}).status_code == 200


def test_a_chunked_body_over_the_limit_is_413(artifact) -> None:
    app = create_app(Settings(model_path=artifact, max_body_bytes=2048))
    client = app.test_client()
    body = json.dumps({"readings": [GOOD] * 100}).encode()
    # What a WSGI server hands over for `Transfer-Encoding: chunked`: no length, decoded stream.
    response = client.post(
        "/classify",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert_envelope(response, 413)
    small = json.dumps({"readings": [GOOD] * 3}).encode()
    response = client.post(
        "/classify",
        input_stream=io.BytesIO(small),
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
        environ_overrides={"wsgi.input_terminated": True, "CONTENT_LENGTH": ""},
    )
    assert response.status_code == 200, response.get_data(as_text=True)


@pytest.mark.parametrize(
    ("coding", "compress"),
    [("gzip", gzip.compress), ("x-gzip", gzip.compress), ("deflate", zlib.compress)],
)
def test_a_compressed_body_is_read_as_its_content_encoding_says(
    client: FlaskClient, coding: str, compress
) -> None:
    # What a gateway on a slow link sends, and what tritonclient's request_compression_algorithm
    # does (its deflate is the zlib format, as RFC 9110 defines it).
    batch = {"readings": [GOOD | {"id": f"r{i}"} for i in range(20)]}
    plain = client.post("/classify", json=batch).get_json()
    packed = client.post(
        "/classify",
        data=compress(json.dumps(batch).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": coding.upper()},
    )
    assert packed.status_code == 200, packed.get_data(as_text=True)
    assert packed.get_json() == plain


def test_a_gzip_body_of_several_members_is_read_whole(client: FlaskClient) -> None:
    text = json.dumps({"readings": [GOOD] * 4}).encode()
    half = len(text) // 2
    response = client.post(
        "/classify",
        data=gzip.compress(text[:half]) + gzip.compress(text[half:]),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert response.status_code == 200 and len(response.get_json()["results"]) == 4


def test_compressed_bodies_that_cannot_be_read(artifact) -> None:
    client = create_app(Settings(model_path=artifact, max_body_bytes=2048)).test_client()
    text = json.dumps({"readings": [GOOD] * 10}).encode()

    def post(body: bytes, coding: str):
        return client.post(
            "/classify",
            data=body,
            headers={"Content-Type": "application/json", "Content-Encoding": coding},
        )

    unsupported = post(text, "br")
    assert "Content-Encoding 'br'" in assert_envelope(unsupported, 415)["message"]
    assert unsupported.headers["Accept-Encoding"] == "gzip, deflate"
    assert assert_envelope(post(text, "gzip, identity"), 415)
    assert "malformed gzip body" in assert_envelope(post(text, "gzip"), 400)["message"]
    cut = gzip.compress(text)[:-12]
    assert "cut short" in assert_envelope(post(cut, "gzip"), 400)["message"]
    # 100 kB of JSON in a 200-byte gzip body: the limit holds for what it decompresses to.
    bomb = gzip.compress(b'{"readings": [' + b" " * 100_000 + b"]}")
    assert len(bomb) < 2048
    error = assert_envelope(post(bomb, "gzip"), 413)
    assert "decompresses to more than" in error["message"]
    assert "SENSOR_MAX_BODY_BYTES" in error["message"]
    assert post(gzip.compress(text), "gzip").status_code == 200
    assert post(text, "identity").status_code == 200


@pytest.mark.parametrize(
    "length", ["-1", "+39", "3_9", " 39", "39 ", "\uff13\uff19", "0x27", "abc"]
)
def test_a_content_length_that_is_not_a_decimal_number_is_400(
    client: FlaskClient, length: str
) -> None:
    # gunicorn refuses these itself; the app does not rely on it (other servers, middleware).
    body = json.dumps(GOOD).encode()
    assert len(body) == 39
    response = client.post(
        "/classify",
        input_stream=io.BytesIO(body),
        headers={"Content-Type": "application/json"},
        environ_overrides={"CONTENT_LENGTH": length},
    )
    assert "invalid Content-Length" in assert_envelope(response, 400)["message"]


def test_a_content_length_of_more_digits_than_int_takes_is_413(client: FlaskClient) -> None:
    response = client.post(
        "/classify",
        input_stream=io.BytesIO(json.dumps(GOOD).encode()),
        headers={"Content-Type": "application/json"},
        environ_overrides={"CONTENT_LENGTH": "9" * 5000},
    )
    assert "a number of 5000 digits" in assert_envelope(response, 413)["message"]


def loc_of(response) -> list:
    return [detail["loc"] for detail in assert_envelope(response, 422)["details"]]


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        (b'{"temperature": NaN, "vibration": 2.3}', ["temperature"]),
        (b'{"temperature": Infinity, "vibration": 2.3}', ["temperature"]),
        (b'{"temperature": -Infinity, "vibration": 2.3}', ["temperature"]),
        (b'{"temperature": 1e999, "vibration": 2.3}', ["temperature"]),
        # Integers of more digits than Python converts are well-formed JSON, out of range.
        (b'{"temperature": ' + b"9" * 5000 + b', "vibration": 2.3}', ["temperature"]),
        (b'{"temperature": -' + b"9" * 5000 + b', "vibration": 2.3}', ["temperature"]),
        (
            b'{"readings": [{"temperature": 1, "vibration": ' + b"9" * 5000 + b"}]}",
            ["readings", 0, "vibration"],
        ),
        (b'{"temperature": "47.5", "vibration": 2.3}', ["temperature"]),
        (b'{"temperature": null, "vibration": 2.3}', ["temperature"]),
        (b'{"temperature": true, "vibration": 2.3}', ["temperature"]),
        (b'{"temperature": [47.5], "vibration": 2.3}', ["temperature"]),
        (b'{"vibration": 2.3}', ["temperature"]),
        (b'{"temperature": 47.5, "vibration": 2.3, "pressure": 1}', ["pressure"]),
        (b'{"temperature": -273.16, "vibration": 2.3}', ["temperature"]),
        (b'{"temperature": 47.5, "vibration": -0.001}', ["vibration"]),
        (b'{"temperature": 47.5, "vibration": 2.3, "id": 7}', ["id"]),
        (b'{"temperature": 47.5, "vibration": 2.3, "id": null}', ["id"]),
        (b'{"readings": []}', ["readings"]),
        (b'{"readings": {"temperature": 1, "vibration": 1}}', ["readings"]),
        (b'{"readings": [1]}', ["readings", 0]),
        (b"[]", []),
        (b'"reading"', []),
        (b"42", []),
        (b"null", []),
    ],
)
def test_invalid_readings_are_422_with_their_location(
    client: FlaskClient, body: bytes, loc: list
) -> None:
    assert loc in loc_of(post_raw(client, body))


def test_id_longer_than_128_characters_is_422(client: FlaskClient) -> None:
    for length in (129, 10_000):
        response = client.post("/classify", json={**GOOD, "id": "x" * length})
        assert loc_of(response) == [["id"]]


def test_batch_errors_point_into_the_batch(client: FlaskClient) -> None:
    readings = [dict(GOOD) for _ in range(5)]
    readings[3]["temperature"] = "hot"
    readings[4] = {"temperature": 1.0, "vibration": 1.0, "unknown": 2}
    del readings[1]["vibration"]
    locs = loc_of(client.post("/classify", json={"readings": readings}))
    assert ["readings", 3, "temperature"] in locs
    assert ["readings", 4, "unknown"] in locs
    assert ["readings", 1, "vibration"] in locs


def test_batch_larger_than_the_limit_is_422(artifact) -> None:
    app = create_app(Settings(model_path=artifact, max_batch=10))
    client = app.test_client()
    assert client.post("/classify", json={"readings": [GOOD] * 10}).status_code == 200
    error = assert_envelope(client.post("/classify", json={"readings": [GOOD] * 11}), 422)
    assert error["details"][0]["loc"] == ["readings"]
    assert "10" in error["details"][0]["message"]


def test_unknown_key_beside_readings_is_422(client: FlaskClient) -> None:
    locs = loc_of(client.post("/classify", json={"readings": [GOOD], "extra": 1}))
    assert ["extra"] in locs


def test_unknown_path_is_404_and_wrong_method_405_with_allow(client: FlaskClient) -> None:
    assert_envelope(client.get("/nope"), 404)
    assert_envelope(client.post("/healthz"), 405)
    response = client.get("/classify")
    assert_envelope(response, 405)
    assert "POST" in response.headers["Allow"]
    assert_envelope(client.delete("/model"), 405)
    # A doubled slash inside a path is unknown too (not Werkzeug's HTML redirect).
    assert_envelope(client.get("/docs//init.js"), 404)


def test_unexpected_exception_is_a_bare_500(app: Flask, client: FlaskClient, monkeypatch) -> None:
    dataplane = app.extensions["sensor"]["dataplane"]

    def explode(*args: object) -> None:
        raise RuntimeError("secret internals /etc/passwd")

    # Nothing a client sends can cause a 500, so the fault is injected.
    monkeypatch.setattr(dataplane, "classify", explode)
    error = assert_envelope(client.post("/classify", json=GOOD), 500)
    assert "secret" not in error["message"] and "passwd" not in error["message"]
