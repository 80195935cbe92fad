"""`/openapi.json` is a valid OpenAPI 3.1 document that says what the service really answers; `/docs` works offline."""

from __future__ import annotations

import re
from html import escape
from pathlib import Path

import jsonschema
import orjson
import pytest
from flask import Flask
from flask.testing import FlaskClient
from markdown_it import MarkdownIt
from schemathesis.specs.openapi.definitions import OPENAPI_31

from service.app import create_app
from service.inference_protocol import BINARY, INFERENCE_HEADER
from service.openapi import SWAGGER_UI_DIR
from service.settings import Settings
from tests.support.artifacts import write_artifact

INFER = "/v2/models/sensor-classifier/infer"
VERSION_0 = "/v2/models/sensor-classifier/versions/0"
V2_INPUT = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32", "data": [40.0, 2.0]}]}


@pytest.fixture
def document(client: FlaskClient) -> dict:
    response = client.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    return response.get_json()


def test_the_document_is_valid_openapi_3_1(document: dict) -> None:
    assert document["openapi"].startswith("3.1")
    jsonschema.Draft202012Validator(OPENAPI_31).validate(document)


def test_every_route_is_documented_and_every_documented_path_exists(
    app: Flask, document: dict
) -> None:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith("/docs"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            routes.add((path, method.lower()))
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    assert routes == documented


def response_schema(document: dict, path: str, method: str, status: int) -> dict:
    response = document["paths"][path][method]["responses"][str(status)]
    schema = next(iter(response["content"].values()))["schema"]
    # A root that carries the components, so that "#/components/schemas/..." resolves.
    return {**schema, "components": document["components"]}


@pytest.mark.parametrize(
    ("method", "url", "path", "kwargs"),
    [
        ("post", "/classify", "/classify", {"json": {"temperature": 40.0, "vibration": 2.0}}),
        (
            "post",
            "/classify",
            "/classify",
            {"json": {"temperature": 40.0, "vibration": 2.0, "id": "a"}},
        ),
        (
            "post",
            "/classify",
            "/classify",
            {"json": {"readings": [{"temperature": 40.0, "vibration": 2.0, "id": "x"}] * 3}},
        ),
        ("post", "/classify", "/classify", {"json": {"temperature": "x"}}),
        ("post", "/classify", "/classify", {"data": b"{", "content_type": "application/json"}),
        ("post", "/classify", "/classify", {"data": b"{}", "content_type": "text/plain"}),
        ("get", "/healthz", "/healthz", {}),
        ("get", "/readyz", "/readyz", {}),
        ("get", "/model", "/model", {}),
        ("get", "/drift", "/drift", {}),
        ("get", "/v2/health/live", "/v2/health/live", {}),
        ("get", "/v2/health/ready", "/v2/health/ready", {}),
        ("get", "/v2/models/sensor-classifier", "/v2/models/{model_name}", {}),
        ("get", "/v2/models/nope", "/v2/models/{model_name}", {}),
        ("get", "/v2/models/sensor-classifier/ready", "/v2/models/{model_name}/ready", {}),
        ("post", INFER, "/v2/models/{model_name}/infer", {"json": V2_INPUT}),
        ("post", INFER, "/v2/models/{model_name}/infer", {"json": {"inputs": []}}),
        ("get", "/v2", "/v2", {}),
        ("post", INFER, "/v2/models/{model_name}/infer", {"data": orjson.dumps(V2_INPUT)}),
        ("get", f"{VERSION_0}", "/v2/models/{model_name}/versions/{model_version}", {}),
        ("get", f"{VERSION_0}/ready", "/v2/models/{model_name}/versions/{model_version}/ready", {}),
        (
            "post",
            f"{VERSION_0}/infer",
            "/v2/models/{model_name}/versions/{model_version}/infer",
            {"json": V2_INPUT},
        ),
    ],
)
def test_real_answers_match_the_documented_schemas(
    client: FlaskClient, document: dict, method: str, url: str, path: str, kwargs: dict
) -> None:
    response = getattr(client, method)(url, **kwargs)
    schema = response_schema(document, path, method, response.status_code)
    jsonschema.Draft202012Validator(schema).validate(response.get_json())


@pytest.mark.parametrize(
    ("method", "suffix", "kwargs"),
    [("get", "", {}), ("get", "/ready", {}), ("post", "/infer", {"json": V2_INPUT})],
)
def test_versioned_v2_answers_match_the_documented_schemas(
    client: FlaskClient, document: dict, method: str, suffix: str, kwargs: dict
) -> None:
    version = client.get("/readyz").get_json()["model_version"]
    url = f"/v2/models/sensor-classifier/versions/{version}{suffix}"
    response = getattr(client, method)(url, **kwargs)
    assert response.status_code == 200
    path = f"/v2/models/{{model_name}}/versions/{{model_version}}{suffix}"
    jsonschema.Draft202012Validator(response_schema(document, path, method, 200)).validate(
        response.get_json()
    )


@pytest.mark.parametrize("versioned", [False, True])
@pytest.mark.parametrize(
    "asked",
    [
        {"parameters": {"binary_data_output": True}},
        {"outputs": [{"name": "label", "parameters": {"binary_data": True}}]},
    ],
)
def test_binary_inference_answers_are_documented(
    client: FlaskClient, document: dict, versioned: bool, asked: dict
) -> None:
    url, path = INFER, "/v2/models/{model_name}/infer"
    if versioned:
        version = client.get("/readyz").get_json()["model_version"]
        url = f"/v2/models/sensor-classifier/versions/{version}/infer"
        path = "/v2/models/{model_name}/versions/{model_version}/infer"
    response = client.post(url, json={**V2_INPUT, **asked})
    assert response.status_code == 200 and response.mimetype == BINARY
    documented = document["paths"][path]["post"]["responses"]["200"]
    assert set(documented["content"]) == {"application/json", BINARY}
    header = documented["headers"][INFERENCE_HEADER]
    jsonschema.Draft202012Validator(header["schema"]).validate(
        int(response.headers[INFERENCE_HEADER])
    )
    # What the bytes are: no schema can say it, so the description does.
    for fact in (BINARY, INFERENCE_HEADER, "binary_data_size", "little-endian", "UTF-8"):
        assert fact in documented["description"], fact


def test_request_schemas_accept_valid_and_reject_invalid_bodies(document: dict) -> None:
    schema = document["paths"]["/classify"]["post"]["requestBody"]["content"]["application/json"]
    validator = jsonschema.Draft202012Validator(
        {**schema["schema"], "components": document["components"]}
    )
    assert validator.is_valid({"temperature": 1.0, "vibration": 0.0})
    assert validator.is_valid({"readings": [{"temperature": 1.0, "vibration": 0.0, "id": "a"}]})
    for invalid in (
        {"temperature": 1.0},
        {"temperature": 1.0, "vibration": -1.0},
        {"temperature": -300.0, "vibration": 1.0},
        {"temperature": 1.0, "vibration": 1.0, "extra": 1},
        {"temperature": 1.0, "vibration": 1.0, "id": None},
        {"temperature": 1.0, "vibration": 1.0, "id": "x" * 129},
        {"readings": []},
    ):
        assert not validator.is_valid(invalid), invalid


@pytest.mark.parametrize(
    "parameters",
    [
        {"classification": None},
        {"binary_data": None},
        {"classification": None, "binary_data": False},
        {"classification": 2},
        {"classification": 0},
        {"classification": False},
        {"binary_data": 1},
    ],
)
def test_output_parameters_are_answered_as_the_schema_says(
    client: FlaskClient, document: dict, parameters: dict
) -> None:
    body = {**V2_INPUT, "outputs": [{"name": "label", "parameters": parameters}]}
    request = document["paths"]["/v2/models/{model_name}/infer"]["post"]["requestBody"]
    schema = request["content"]["application/json"]["schema"]
    valid = jsonschema.Draft202012Validator(
        {**schema, "components": document["components"]}
    ).is_valid(body)
    response = client.post(INFER, json=body)
    assert response.status_code == (200 if valid else 400), response.get_json()


JSON_TYPE = {"Content-Type": "application/json"}


def body_faults(max_body_bytes: int) -> dict[str, tuple[dict[str, object], dict, tuple[str, ...]]]:
    """Why a body is refused: a body of each API with that fault, the headers it is sent with,
    and the words a documented status uses for the fault."""
    too_large = b" " * (max_body_bytes + 1)
    return {
        "schema misfit": (
            {"/classify": {"temperature": "x"}, "v2": {"inputs": []}},
            JSON_TYPE,
            ("does not fit the schema", "invalid inference request"),
        ),
        "duplicate key": (
            {
                "/classify": b'{"temperature": 1, "temperature": 2, "vibration": 1}',
                "v2": b'{"inputs": [], "inputs": []}',
            },
            JSON_TYPE,
            ("duplicate key",),
        ),
        "malformed JSON": ({"/classify": b"{", "v2": b"{"}, JSON_TYPE, ("malformed json",)),
        "too large": ({"/classify": too_large, "v2": too_large}, JSON_TYPE, ("too large",)),
        "not JSON": (
            {"/classify": b"{}", "v2": b"{}"},
            {"Content-Type": "text/csv"},
            ("content-type",),
        ),
        "unknown coding": (
            {"/classify": b"{}", "v2": b"{}"},
            {**JSON_TYPE, "Content-Encoding": "br"},
            ("content-encoding",),
        ),
    }


@pytest.mark.parametrize(
    ("api", "url", "path"),
    [
        ("/classify", "/classify", "/classify"),
        ("v2", INFER, "/v2/models/{model_name}/infer"),
        (
            "v2",
            "/v2/models/sensor-classifier/versions/{version}/infer",
            "/v2/models/{model_name}/versions/{model_version}/infer",
        ),
    ],
)
def test_each_refused_body_gets_the_status_documented_for_its_fault(
    client: FlaskClient, settings: Settings, document: dict, api: str, url: str, path: str
) -> None:
    url = url.format(version=client.get("/readyz").get_json()["model_version"])
    faults = body_faults(settings.max_body_bytes)
    answered = {}
    for fault, (bodies, headers, _) in faults.items():
        body = bodies[api]
        data = orjson.dumps(body) if isinstance(body, dict) else body
        answered[fault] = client.post(url, data=data, headers=headers).status_code
    responses = document["paths"][path]["post"]["responses"]
    assert {str(status) for status in answered.values()} <= set(responses)
    for status, response in responses.items():
        text = response["description"].lower()
        said = {fault for fault, (*_, words) in faults.items() if any(w in text for w in words)}
        assert said == {fault for fault, got in answered.items() if str(got) == status}, status


def test_docs_page_uses_only_assets_served_by_the_service(client: FlaskClient) -> None:
    page = client.get("/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert "/docs/swagger-ui-bundle.js" in assets and "/docs/init.js" in assets
    for asset in assets:
        with client.get(asset) as response:
            assert response.status_code == 200, asset
            assert len(response.data) > 0
    init = client.get("/docs/init.js").get_data(as_text=True)
    assert '"/openapi.json"' in init and "validatorUrl: null" in init
    with client.get("/docs/swagger-ui-bundle.js") as response:
        assert response.mimetype == "text/javascript"


def test_docs_serve_swagger_ui_5_which_renders_openapi_3_1() -> None:
    # Swagger UI 4 answers a 3.1 document with "Unable to render this definition"
    # (test_browser.py shows the page a browser renders).
    assert (Path(SWAGGER_UI_DIR) / "VERSION").read_text().startswith("v5.")


def test_docs_serve_no_other_files(client: FlaskClient) -> None:
    for path in ("/docs/index.html", "/docs/..%2F__init__.py", "/docs/swagger-ui.js.map"):
        assert client.get(path).status_code == 404


def descriptions(node: object) -> list[str]:
    """Every `description` in an OpenAPI document: the texts Swagger UI renders as Markdown."""
    if isinstance(node, dict):
        found = [node["description"]] if isinstance(node.get("description"), str) else []
        return found + [d for value in node.values() for d in descriptions(value)]
    if isinstance(node, list):
        return [d for value in node for d in descriptions(value)]
    return []


HOSTILE_NAMES = {
    "features": ("t<img src=x onerror=alert(1)>", "v`` *x* ``"),
    "units": ("°C<script>alert(2)</script>", "mm/s\n\n<b>bold</b>"),
    "classes": ("<img src=y>", "`warning`", "[critical](javascript:alert(3))"),
}


def test_names_from_the_artifact_are_shown_literally_in_the_docs(tmp_path: Path) -> None:
    # Feature, unit and class names come from a user's CSV header: text, never Markdown or HTML.
    artifact = write_artifact(tmp_path / "model.npz", seed=0, **HOSTILE_NAMES)
    document = create_app(Settings(model_path=artifact)).test_client().get("/openapi.json")
    # Swagger UI's Markdown renderer passes HTML through (and sanitizes only scripts).
    render = MarkdownIt("commonmark", {"html": True})
    shown = [render.render(text) for text in descriptions(document.get_json())]
    tags = {tag for html in shown for tag in re.findall(r"<([a-z]+)", html)}
    assert tags <= {"p", "code", "strong", "em"}, tags
    everything = " ".join(shown)
    for name in (*HOSTILE_NAMES["features"], *HOSTILE_NAMES["classes"]):
        assert f"<code>{escape(name)}</code>" in everything, name
    assert "<code>°C&lt;script&gt;alert(2)&lt;/script&gt;</code>" in everything
    assert "<code>mm/s\\n\\n&lt;b&gt;bold&lt;/b&gt;</code>" in everything
