"""The catalog of bad input, sent over real sockets to a real gunicorn: documented 4xx, JSON envelope.

After every bad request a normal one must still be answered, so a crash, a wedged worker or a
poisoned keep-alive connection shows up right where it happens.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest

from tests.support import rawhttp
from tests.support.artifacts import write_artifact
from tests.support.server import Server, start_server

pytestmark = pytest.mark.e2e

REQUEST_TIMEOUT = 2.0
VALID = {"temperature": 55.0, "vibration": 4.0}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    directory = tmp_path_factory.mktemp("bad-input")
    artifact = write_artifact(directory / "model.npz", seed=1)
    live = start_server(
        artifact,
        log_dir=directory / "server",
        workers=2,
        env={"SENSOR_REQUEST_TIMEOUT": str(REQUEST_TIMEOUT)},
    )
    yield live
    live.stop()


@pytest.fixture(scope="module")
def documented(server: Server) -> dict[str, Any]:
    """The OpenAPI responses of `POST /classify`, keyed by status."""
    document = httpx.get(f"{server.url}/openapi.json", timeout=10).json()
    return document["paths"]["/classify"]["post"]["responses"]


@pytest.fixture(scope="module")
def version(server: Server) -> str:
    return httpx.get(f"{server.url}/model", timeout=10).json()["model_version"]


def _json(value: Any) -> bytes:
    return orjson.dumps(value)


def _reading(**changes: Any) -> dict[str, Any]:
    reading: dict[str, Any] = dict(VALID)
    reading.update(changes)
    return reading


def _nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def _batch(n: int) -> bytes:
    # Compact numbers so that the body stays under the body-size limit: the batch limit is tested.
    return b'{"readings":[' + b",".join([b'{"temperature":55,"vibration":4}'] * n) + b"]}"


# name -> (body, expected status, expected `loc` of the first detail or None)
BODY_CASES: dict[str, tuple[bytes, int, list[Any] | None]] = {
    "NaN literal": (b'{"temperature": NaN, "vibration": 4.0}', 422, ["temperature"]),
    "Infinity literal": (b'{"temperature": 55.0, "vibration": Infinity}', 422, ["vibration"]),
    "-Infinity literal": (b'{"temperature": -Infinity, "vibration": 4.0}', 422, ["temperature"]),
    "NaN in a batch": (
        b'{"readings": [{"temperature": 55, "vibration": 4}, {"temperature": NaN, "vibration": 4}]}',
        422,
        ["readings", 1, "temperature"],
    ),
    "string for a number": (_json(_reading(temperature="55.0")), 422, ["temperature"]),
    "boolean for a number": (_json(_reading(vibration=True)), 422, ["vibration"]),
    "null for a number": (_json(_reading(temperature=None)), 422, ["temperature"]),
    "missing field": (_json({"temperature": 55.0}), 422, ["vibration"]),
    "unknown field": (_json(_reading(pressure=1.0)), 422, ["pressure"]),
    "top-level array": (_json([55.0, 4.0]), 422, []),
    "top-level number": (b"42", 422, []),
    "top-level string": (b'"hello"', 422, []),
    "1,000 levels of nesting": (_nested(1000), 400, None),
    "1,000 levels of objects": (b'{"a":' * 1000 + b"1" + b"}" * 1000, 400, None),
    "empty body": (b"", 400, None),
    "whitespace body": (b"  \n ", 400, None),
    "invalid UTF-8": (b'{"temperature": 55.0, "vibration": 4.0, "id": "\xff\xfe\xc3"}', 400, None),
    "truncated JSON": (b'{"temperature": 55.0, "vibr', 400, None),
    # One over SENSOR_MAX_BATCH (a larger batch would pass SENSOR_MAX_BODY_BYTES first: 413).
    "batch of 10,001 readings": (_batch(10_001), 422, ["readings"]),
    "empty batch": (b'{"readings": []}', 422, ["readings"]),
    "id of 10,000 characters": (_json(_reading(id="x" * 10_000)), 422, ["id"]),
}


def _assert_envelope(response: rawhttp.RawResponse, status: int) -> dict[str, Any]:
    assert response.status == status, response.body[:500]
    assert response.headers.get("content-type", "").startswith("application/json")
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == {"status", "message", "details"}, error
    assert error["status"] == status
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    return error


def _assert_still_answering(server: Server, version: str) -> None:
    # A few fresh connections, so that both workers are likely asked.
    for _ in range(4):
        response = httpx.post(f"{server.url}/classify", json=VALID, timeout=10)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == version
    assert server.process.poll() is None


@pytest.mark.parametrize("name", list(BODY_CASES))
def test_bad_body_gets_its_documented_4xx(
    server: Server, documented: dict[str, Any], version: str, name: str
) -> None:
    body, status, loc = BODY_CASES[name]
    assert str(status) in documented, f"{status} is not documented for POST /classify"
    response = rawhttp.exchange(
        server.host, server.port, rawhttp.request_bytes("POST", "/classify", body)
    )
    error = _assert_envelope(response, status)
    if loc is not None:
        assert error["details"], error
        assert error["details"][0]["loc"] == loc, error
    _assert_still_answering(server, version)


@pytest.mark.parametrize(
    ("content_type", "status"),
    [
        ("text/plain", 415),
        (None, 415),
        ("application/x-www-form-urlencoded", 415),
        ("application/jsonx", 415),
        ("application/json; charset=utf-8", 200),
        ("Application/JSON", 200),
    ],
)
def test_content_type(
    server: Server,
    documented: dict[str, Any],
    version: str,
    content_type: str | None,
    status: int,
) -> None:
    data = rawhttp.request_bytes("POST", "/classify", _json(VALID), content_type=content_type)
    response = rawhttp.exchange(server.host, server.port, data)
    if status == 200:
        assert response.status == 200, response.body
        assert response.json()["model_version"] == version  # type: ignore[index]
    else:
        assert str(status) in documented
        _assert_envelope(response, status)
    _assert_still_answering(server, version)


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_50_mb_body_is_refused_without_being_read(
    server: Server, documented: dict[str, Any], version: str, chunked: bool
) -> None:
    size = 50 * 1024 * 1024
    if chunked:
        head = b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        head += b"Transfer-Encoding: chunked\r\n\r\n"
    else:
        head = rawhttp.request_bytes("POST", "/classify", content_length=size)
    started = time.monotonic()
    response, sent = rawhttp.send_until_answered(
        server.host, server.port, head, size, chunked=chunked, timeout=30
    )
    assert "413" in documented
    assert "SENSOR_MAX_BODY_BYTES" in _assert_envelope(response, 413)["message"]
    # Answered long before the 50 MB were through: the limit (4 MiB by default) was enforced.
    assert sent < size // 2, f"{sent} bytes were sent before the answer"
    assert time.monotonic() - started < 15
    _assert_still_answering(server, version)


@pytest.mark.parametrize("size", [2 * 1024 * 1024, 50 * 1024 * 1024], ids=["2 MB", "50 MB"])
def test_a_client_that_sends_all_of_an_oversized_body_before_reading_gets_the_413(
    server: Server, version: str, size: int
) -> None:
    """As Python's http.client, hence urllib3 and requests, do. The worker answered 413 before
    reading the body and closed with the rest unread, so the kernel reset the connection: the
    client got `BrokenPipeError` or `ConnectionResetError` instead of the answer (RFC 9112, 9.6)."""
    import http.client

    for _ in range(3):  # fresh connections: both workers are likely asked
        connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
        try:
            connection.request(
                "POST", "/classify", b" " * size, {"Content-Type": "application/json"}
            )
            response = connection.getresponse()
            assert response.status == 413
            assert response.getheader("Connection") == "close"
            error = orjson.loads(response.read())["error"]
            assert "SENSOR_MAX_BODY_BYTES" in error["message"]
        finally:
            connection.close()
    _assert_still_answering(server, version)


def test_a_client_still_sending_a_request_gunicorn_refuses_gets_the_400(
    server: Server, version: str
) -> None:
    """gunicorn's own error answers (here a Content-Length that is no number) close the
    connection with the body unread, as the 413 does: the client got ConnectionResetError."""
    import http.client

    connection = http.client.HTTPConnection(server.host, server.port, timeout=30)
    try:
        connection.putrequest("POST", "/classify")
        connection.putheader("Content-Type", "application/json")
        connection.putheader("Content-Length", "two million")
        connection.endheaders(b" " * (50 * 1024 * 1024))
        response = connection.getresponse()
        assert response.status == 400
        assert "CONTENT-LENGTH" in orjson.loads(response.read())["error"]["message"]
    finally:
        connection.close()
    _assert_still_answering(server, version)


def test_expect_100_continue_is_answered_when_the_body_is_read(
    server: Server, version: str
) -> None:
    body = _json(VALID)
    expect = {"Expect": "100-continue"}
    deadline = time.monotonic() + 20
    with rawhttp.connect(server.host, server.port) as sock:
        for _ in range(2):  # and the connection carries the next request as usual
            sock.sendall(
                rawhttp.request_bytes("POST", "/classify", content_length=len(body), headers=expect)
            )
            assert rawhttp.read_response(sock, deadline).status == 100
            sock.sendall(body)
            answer = rawhttp.read_response(sock, deadline)
            assert answer.status == 200, answer.body
            assert answer.json()["model_version"] == version  # type: ignore[index]
            assert answer.headers["connection"] == "keep-alive"


@pytest.mark.parametrize(
    ("path", "length", "status"),
    [("/classify", 2 * 1024 * 1024, 413), ("/nowhere", 100, 404)],
    ids=["too large", "unknown path"],
)
def test_expect_100_continue_refused_unread_gets_the_answer_and_never_the_go_ahead(
    server: Server, version: str, path: str, length: int, status: int
) -> None:
    """gunicorn said `100 Continue` before the app could refuse: the client then sent a body
    that was refused unread. The refusal now comes first, and ends the connection, since
    the client may still send the body or not (RFC 9110, 10.1.1)."""
    head = rawhttp.request_bytes(
        "POST", path, content_length=length, headers={"Expect": "100-continue"}
    )
    deadline = time.monotonic() + 20
    with rawhttp.connect(server.host, server.port) as sock:
        sock.sendall(head)
        answer = rawhttp.read_response(sock, deadline)
        assert _assert_envelope(answer, status)
        assert answer.headers["connection"] == "close"
        assert sock.recv(1) == b""
    _assert_still_answering(server, version)


def test_curl_uploads_nothing_of_a_body_refused_for_its_size(server: Server) -> None:
    """curl sends `Expect: 100-continue` with a body over 1 MiB and waits for the go-ahead."""
    import shutil
    import subprocess

    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    done = subprocess.run(
        [
            "curl",
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{size_upload}",
            "-H",
            "Content-Type: application/json",
            "--data-binary",
            "@-",
            f"{server.url}/classify",
        ],
        input=b" " * (2 * 1024 * 1024),
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["413", "0"]


def test_body_shorter_than_its_content_length_times_out_with_408(
    server: Server, documented: dict[str, Any], version: str
) -> None:
    body = _json(VALID)
    data = rawhttp.request_bytes("POST", "/classify", body, content_length=len(body) + 100)
    started = time.monotonic()
    response = rawhttp.exchange(server.host, server.port, data, timeout=REQUEST_TIMEOUT + 10)
    elapsed = time.monotonic() - started
    assert "408" in documented
    assert "SENSOR_REQUEST_TIMEOUT" in _assert_envelope(response, 408)["message"]
    assert REQUEST_TIMEOUT - 0.1 <= elapsed < REQUEST_TIMEOUT + 5
    _assert_still_answering(server, version)


def test_bad_requests_on_one_keep_alive_connection_do_not_poison_it(
    server: Server, version: str
) -> None:
    """Pipelined on one connection: each bad request is answered and the next one is intact."""
    names = ["NaN literal", "truncated JSON", "unknown field", "invalid UTF-8", "top-level array"]
    deadline = time.monotonic() + 20
    with rawhttp.connect(server.host, server.port) as sock:
        for name in names:
            body, status, _ = BODY_CASES[name]
            sock.sendall(rawhttp.request_bytes("POST", "/classify", body))
            _assert_envelope(rawhttp.read_response(sock, deadline), status)
            sock.sendall(rawhttp.request_bytes("POST", "/classify", _json(VALID)))
            good = rawhttp.read_response(sock, deadline)
            assert good.status == 200, good.body
            assert good.json()["model_version"] == version  # type: ignore[index]


_CHUNKED_HEAD = (
    b"POST /classify HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\n\r\n"
)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (rawhttp.request_bytes("POST", "/classify", _json(VALID), content_length=100), 408),
        (rawhttp.request_bytes("POST", "/classify", content_length=2_000_000), 413),
        (_CHUNKED_HEAD + b"zz\r\n" + _json(VALID) + b"\r\n0\r\n\r\n", 400),
    ],
    ids=["body shorter than content-length", "content-length over the limit", "bad chunk"],
)
def test_an_answer_that_leaves_the_body_unread_closes_its_connection(
    server: Server, version: str, data: bytes, status: int
) -> None:
    """The unread rest of the body must not be taken as the next request, nor the next request
    as the rest of the body: the answer says `Connection: close` and the server closes."""
    deadline = time.monotonic() + REQUEST_TIMEOUT + 10
    with rawhttp.connect(server.host, server.port) as sock:
        sock.sendall(data)
        answer = rawhttp.read_response(sock, deadline)
        _assert_envelope(answer, status)
        assert answer.headers["connection"] == "close"
        try:
            sock.sendall(rawhttp.request_bytes("POST", "/classify", _json(VALID)))
            sock.settimeout(max(deadline - time.monotonic(), 0.1))
            rest = sock.recv(65536)
        except (BrokenPipeError, ConnectionResetError):
            rest = b""
        assert rest == b"", f"the connection carried on after a {status}: {rest[:200]!r}"
    _assert_still_answering(server, version)


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [("GET", "/classify", 405), ("POST", "/no-such-endpoint", 404), ("DELETE", "/model", 405)],
)
def test_wrong_method_or_path_gets_the_envelope(
    server: Server, version: str, method: str, path: str, status: int
) -> None:
    response = rawhttp.exchange(
        server.host, server.port, rawhttp.request_bytes(method, path, _json(VALID))
    )
    _assert_envelope(response, status)
    _assert_still_answering(server, version)


@pytest.mark.parametrize(
    ("data", "status"),
    [
        (rawhttp.request_bytes("POST", "/classify", b"{}", content_length="abc"), 400),
        (rawhttp.request_bytes("POST", "/classify", b"{}", content_length="-5"), 400),
        (b"THIS IS NOT HTTP\r\n\r\n", 400),
        (rawhttp.request_bytes("POST", "/classify", b"{}", headers={"X-Big": "y" * 9000}), 431),
    ],
    ids=["content-length abc", "content-length -5", "no request line", "9 kB header"],
)
def test_requests_gunicorn_cannot_parse_get_the_json_envelope(
    server: Server, version: str, data: bytes, status: int
) -> None:
    """Rejected by gunicorn's parser, before the app runs: still the one JSON envelope."""
    response = rawhttp.exchange(server.host, server.port, data)
    _assert_envelope(response, status)
    _assert_still_answering(server, version)
