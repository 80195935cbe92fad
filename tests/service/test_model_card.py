"""The model card at `/`, in process: its numbers are `/model`'s and `/drift`'s, its assets local.

The browser tests (test_browser.py) show it renders; these hold every figure on it to the JSON
endpoints, through the `data-model` / `data-drift` pointers each figure carries.
"""

from __future__ import annotations

import dataclasses
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from flask.testing import FlaskClient

import model
from service.app import create_app
from service.card import MATRIX_CLASSES
from service.settings import Settings
from tests.support.artifacts import build_classifier, train_artifact, write_artifact
from tests.support.pointer import resolve, shows


class Figures(HTMLParser):
    """Every element's `data-model` / `data-drift` pointer and `data-value`, and every asset."""

    def __init__(self) -> None:
        super().__init__()
        self.model: dict[str, str] = {}
        self.drift: dict[str, str] = {}
        self.assets: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key, found in (("data-model", self.model), ("data-drift", self.drift)):
            if a.get(key) is not None:
                assert a[key] not in found, f"{a[key]} shown twice"
                found[a[key]] = a["data-value"] or ""
        if a.get("id"):
            self.ids.add(a["id"] or "")
        for key in ("src", "href"):
            if a.get(key) and (tag in {"script", "link", "img"}):
                self.assets.append(a[key] or "")


def figures(html: str) -> Figures:
    parser = Figures()
    parser.feed(html)
    return parser


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_artifact(tmp_path_factory.mktemp("trained") / "model.npz", seed=0)


@pytest.fixture
def trained_client(trained: Path) -> FlaskClient:
    return create_app(Settings(model_path=trained, reload_interval=0)).test_client()


def page(client: FlaskClient) -> str:
    response = client.get("/")
    assert response.status_code == 200
    assert response.content_type == "text/html; charset=utf-8"
    return response.get_data(as_text=True)


def test_every_figure_is_the_number_model_answers(trained_client: FlaskClient) -> None:
    shown = figures(page(trained_client)).model
    described = trained_client.get("/model").get_json()
    for pointer, value in shown.items():
        assert shows(value, resolve(described, pointer)), pointer
    test = described["metrics"]["test"]
    # What the issue asks to see, all of it there.
    wanted = ["/model_version", "/trained_at", "/novelty/threshold"]
    wanted += ["/metrics/test/accuracy", "/metrics/test/balanced_accuracy", "/metrics/test/ece"]
    for name in described["classes"]:
        wanted += [f"/metrics/test/per_class/{name}/{m}" for m in ("recall", "precision")]
        wanted += [f"/costs/{name}/{answer}" for answer in described["classes"]]
    n = len(described["classes"])
    wanted += [f"/metrics/test/confusion_matrix/{i}/{j}" for i in range(n) for j in range(n)]
    for b in range(len(test["reliability"])):
        wanted += [f"/metrics/test/reliability/{b}/{m}" for m in ("accuracy", "confidence")]
    for i, _ in enumerate(described["features"]):
        wanted += [f"/features/{i}/{m}" for m in ("min", "max")]
    assert sorted(set(wanted) - set(shown)) == []
    assert test["reliability"], "training stored no reliability bins"


def test_live_figures_are_the_numbers_drift_answers(trained_client: FlaskClient) -> None:
    readings = [{"temperature": 20.0 + i, "vibration": 0.5 + i / 10} for i in range(30)]
    readings.append({"temperature": 1000.0, "vibration": 100.0})  # novel
    assert trained_client.post("/classify", json={"readings": readings}).status_code == 200
    html = page(trained_client)
    drift = trained_client.get("/drift").get_json()
    shown = figures(html).drift
    for pointer, value in shown.items():
        assert shows(value, resolve(drift, pointer)), pointer
    wanted = {"/labels/readings", "/novel_readings", "/labels/psi"}
    wanted |= {f"/labels/classes/{i}/{m}" for i in range(3) for m in ("count", "reference")}
    wanted |= {f"/features/{i}/psi" for i in range(2)}
    assert wanted <= set(shown)
    assert drift["labels"]["readings"] == 31 and drift["novel_readings"] >= 1
    rate = re.search(r'id="novel-rate" data-value="([^"]+)"', html)
    assert rate and float(rate[1]) == drift["novel_readings"] / drift["labels"]["readings"]


def test_the_page_shows_every_section_readiness_and_links(trained_client: FlaskClient) -> None:
    html = page(trained_client)
    found = figures(html)
    assert {"model", "quality", "live", "try", "features", "costs", "novelty"} <= found.ids
    assert {"per-class", "confusion", "reliability", "labels", "drift", "try-form"} <= found.ids
    version = trained_client.get("/readyz").get_json()["model_version"]
    assert re.search(
        r'id="readiness" class="ready">Ready: answering with model <code>' + version, html
    )
    for link in ("/docs", "/openapi.json", "/model", "/metrics"):
        assert f'href="{link}"' in html
    # One field per feature, named as /classify names it.
    assert re.findall(r'<input id="field-\d+" name="([^"]+)"', html) == ["temperature", "vibration"]


def test_every_asset_is_served_by_the_service(trained_client: FlaskClient) -> None:
    html = page(trained_client)
    assert "http://" not in html and "https://" not in html and "//" not in html.replace("://", "")
    assets = figures(html).assets
    assert "/static/card.css" in assets and "/static/card.js" in assets
    for asset in assets:
        if asset.startswith("data:"):
            continue
        with trained_client.get(asset) as response:
            assert response.status_code == 200 and response.data, asset


def test_the_reliability_diagram_draws_each_bin_at_its_accuracy(
    trained_client: FlaskClient,
) -> None:
    html = page(trained_client)
    bins = trained_client.get("/model").get_json()["metrics"]["test"]["reliability"]
    bars = re.findall(
        r'<rect class="bar" data-model="[^"]+" data-value="[^"]+"\s+x="([^"]+)" width="([^"]+)"'
        r'\s+y="([^"]+)" height="([^"]+)"',
        html,
    )
    assert len(bars) == len(bins)
    # The plot is a 240-unit square from (44, 10): x is confidence, y accuracy (upwards).
    for (x, width, y, height), b in zip(bars, bins, strict=True):
        assert float(x) == pytest.approx(44 + 240 * b["lower"])
        assert float(width) == pytest.approx(240 * (b["upper"] - b["lower"]))
        assert float(height) == pytest.approx(240 * b["accuracy"])
        assert float(y) + float(height) == pytest.approx(250)


def test_a_swap_shows_the_new_model_and_renders_its_sections_once(tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "model.npz", seed=1)
    app = create_app(Settings(model_path=path, reload_interval=0))
    client = app.test_client()
    looked_up: list[str] = []
    get_template = app.jinja_env.get_template

    def counting(name: str, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(name)
        return get_template(name, *args, **kwargs)

    app.jinja_env.get_template = counting  # type: ignore[method-assign]
    first = model.load(path).version
    for _ in range(3):
        assert f'id="model-version" data-model="/model_version" data-value="{first}"' in page(
            client
        )
    assert looked_up.count("card_sections.html") == 1
    write_artifact(path, seed=2)
    second = model.load(path).version
    html = page(client)
    assert f'data-value="{second}"' in html and first not in html
    assert looked_up.count("card_sections.html") == 2


def test_a_model_without_drift_reference_or_metrics_still_gets_a_page(tmp_path: Path) -> None:
    path = tmp_path / "old.npz"
    dataclasses.replace(build_classifier(seed=4), drift_reference=None).save(path)
    client = create_app(Settings(model_path=path)).test_client()
    html = page(client)
    assert client.get("/drift").get_json()["error"]["message"] in html.replace("&#39;", "'")
    assert "records no reliability bins" in html
    assert 'data-model="/metrics/test/accuracy"' in html


def _many_classes_client(tmp_path: Path, n: int) -> FlaskClient:
    classes = [f"c{i}" for i in range(n)]
    costs = np.ones((n, n)) - np.eye(n)
    costs[n - 1, 0] = 50.0  # missing the last class for the first costs 50 false alarms
    confusion = (np.eye(n, dtype=int) * 7).tolist()
    metrics = {"test": {"n": 7 * n, "labels": classes, "confusion_matrix": confusion}}
    classifier = build_classifier(classes=classes, metadata={"metrics": metrics})
    dataclasses.replace(classifier, costs=costs).save(tmp_path / "many.npz")
    return create_app(Settings(model_path=tmp_path / "many.npz")).test_client()


@pytest.mark.parametrize("n", [MATRIX_CLASSES, MATRIX_CLASSES + 1])
def test_matrices_are_drawn_up_to_matrix_classes_and_listed_past_them(
    tmp_path: Path, n: int
) -> None:
    # A model of 1,024 classes made the first page load draw 2 million cells: over 30 s, and
    # gunicorn killed the worker for it.
    client = _many_classes_client(tmp_path, n)
    html = page(client)
    shown = figures(html).model
    described = client.get("/model").get_json()
    for pointer, value in shown.items():
        assert shows(value, resolve(described, pointer)), pointer
    drawn = n <= MATRIX_CLASSES
    assert ('<table id="costs"' in html) is drawn
    assert ('<table id="confusion"' in html) is drawn
    assert ("/costs/c1/c0" in shown) is drawn
    assert f"/costs/c{n - 1}/c0" in shown  # the one cost that is not 1, either way
    if not drawn:
        assert f"{n} classes" in html and "confusion_matrix" in html


def test_the_page_is_documented_as_html(trained_client: FlaskClient) -> None:
    operation = trained_client.get("/openapi.json").get_json()["paths"]["/"]["get"]
    assert list(operation["responses"]["200"]["content"]) == ["text/html"]


def test_after_a_change_of_costs_the_card_says_what_its_figures_measured(
    trained: Path, tmp_path: Path
) -> None:
    from training.cli import main

    assert "(argmax: every wrong answer costs 1)" in page(
        create_app(Settings(model_path=trained)).test_client()
    )
    rewritten = tmp_path / "costly.npz"
    costs = ["--cost", "critical:normal=10", "--cost", "critical:warning=10"]
    assert main(["costs", "--model", str(trained), "--out", str(rewritten), *costs]) == 0
    html = page(create_app(Settings(model_path=rewritten)).test_client())
    assert "argmax" not in html.split('id="decision"')[1].split("</p>")[0]
    measured = html.split('id="measured"')[1].split("</p>")[0]
    assert f"at the answer of model {model.load(trained).version}" in measured
    assert "before its costs were changed" in measured
    # Back to the costs it was trained with: the figures are its own again.
    assert main(["costs", "--model", str(rewritten), "--out", str(rewritten)]) == 0
    html = page(create_app(Settings(model_path=rewritten)).test_client())
    assert "at the answer the service gives" in html.split('id="measured"')[1].split("</p>")[0]


def test_the_card_says_when_the_last_good_model_answers_for_a_broken_file(tmp_path: Path) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    client = create_app(
        Settings(model_path=path, state_dir=tmp_path / "state", reload_interval=0)
    ).test_client()
    assert 'id="artifact-problem"' not in page(client)
    tmp = path.with_name("model.npz.tmp")
    tmp.write_bytes(b"this is not a model")
    tmp.replace(path)
    detail = client.get("/readyz").get_json()["detail"]
    assert "serving the last good model" in detail and "not a zip archive" in detail
    problem = page(client).split('id="artifact-problem"')[1].split("</p>")[0]
    assert detail in problem.replace("&#39;", "'")
