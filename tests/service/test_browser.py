"""Every page in a real browser: headless Chromium against the real gunicorn on 127.0.0.1.

One server (two workers, a model trained for real) and one browser for the module. Screenshots
go to the module's temporary directory, and also to $MODEL_CARD_SCREENSHOTS when it is set (how
docs/model-card.png is made).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import model
from tests.support.artifacts import train_artifact, write_artifact
from tests.support.browser import DESKTOP, PHONE, Browser, headless_chromium
from tests.support.pointer import resolve, shows
from tests.support.server import ROLLOUT_SECONDS, Server, running_server

pytestmark = pytest.mark.e2e

WAIT_SECONDS = 15.0


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with headless_chromium() as browser:
        yield browser


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_artifact(tmp_path_factory.mktemp("model") / "model.npz", seed=0)


@pytest.fixture(scope="module")
def served(
    browser: Browser, artifact: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with running_server(artifact, workers=2, log_dir=tmp_path_factory.mktemp("logs")) as server:
        yield server


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Where screenshots go: the module's temporary directory, and $MODEL_CARD_SCREENSHOTS."""
    wanted = os.environ.get("MODEL_CARD_SCREENSHOTS")
    return [tmp_path_factory.mktemp("screenshots"), *([Path(wanted)] if wanted else [])]


def until(condition: Callable[[], Any], what: str, seconds: float = WAIT_SECONDS) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {seconds:g} s: {what}")


def script(browser: Browser, code: str, *args: Any) -> Any:
    return browser.driver.execute_script(code, *args)


def no_errors_and_nothing_foreign(browser: Browser) -> None:
    assert browser.console_errors() == []
    assert browser.foreign_requests() == []


def test_the_card_loads_with_no_console_error_and_no_foreign_request(
    browser: Browser, served: Server
) -> None:
    browser.open(f"{served.url}/")
    assert script(browser, "return document.readyState") == "complete"
    no_errors_and_nothing_foreign(browser)
    loaded = script(
        browser,
        "return performance.getEntriesByType('resource').map(function (e) { return e.name; })",
    )
    assert f"{served.url}/static/card.css" in loaded and f"{served.url}/static/card.js" in loaded


def test_every_section_shows_the_numbers_of_model(browser: Browser, served: Server) -> None:
    browser.open(f"{served.url}/")
    for section in ("model", "quality", "live", "try"):
        assert script(browser, f"return document.getElementById('{section}').offsetHeight > 0")
    shown = script(
        browser,
        "return Array.from(document.querySelectorAll('[data-model]'))"
        ".map(function (e) { return [e.dataset.model, e.dataset.value, e.textContent.trim()]; })",
    )
    described = httpx.get(f"{served.url}/model").json()
    assert len(shown) > 40
    for pointer, value, text in shown:
        assert shows(value, resolve(described, pointer)), pointer
        assert text or pointer.startswith("/metrics/test/reliability/"), pointer
    links = script(
        browser, "return Array.from(document.querySelectorAll('nav a')).map(a => a.pathname)"
    )
    assert {"/docs", "/openapi.json", "/model", "/metrics"} <= set(links)
    assert script(browser, "return document.getElementById('readiness').className") == "ready"
    no_errors_and_nothing_foreign(browser)


def test_without_javascript_everything_but_the_form_is_there(
    browser: Browser, served: Server
) -> None:
    browser.driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    try:
        browser.open(f"{served.url}/")
        text = browser.driver.find_element("tag name", "body").text
        version = httpx.get(f"{served.url}/readyz").json()["model_version"]
        assert f"Ready: answering with model {version}" in text
        for heading in ("The live model", "How good it is", "Live state", "Try it"):
            assert heading in text
        assert browser.driver.find_elements("css selector", "#reliability .bar")
        assert "The form needs JavaScript" in text
        assert not browser.driver.find_element("css selector", "#try-form button").is_enabled()
    finally:
        browser.driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": False})
    assert browser.console_errors() == [] and browser.foreign_requests() == []


def fill(browser: Browser, values: dict[str, str]) -> None:
    for name, value in values.items():
        field = browser.driver.find_element("css selector", f'#try-form input[name="{name}"]')
        field.clear()
        field.send_keys(value)
    browser.driver.find_element("css selector", "#try-form button").click()


def test_the_form_classifies_a_reading(browser: Browser, served: Server) -> None:
    browser.open(f"{served.url}/")
    fill(browser, {"temperature": "47.5", "vibration": "2.3"})
    until(lambda: script(browser, "return !document.getElementById('try-result').hidden"), "answer")
    answer = httpx.post(
        f"{served.url}/classify", json={"temperature": 47.5, "vibration": 2.3}
    ).json()
    text = lambda id_: script(browser, f"return document.getElementById('{id_}').textContent")  # noqa: E731
    assert text("result-label") == answer["label"]
    assert text("result-confidence") == f"{answer['confidence'] * 100:.2f} %"
    assert text("result-version") == answer["model_version"]
    assert text("result-in-range") == "yes" and text("result-novel") == "no"
    rows = script(
        browser,
        "return Array.from(document.querySelectorAll('#result-probabilities tbody tr'))"
        ".map(r => [r.cells[0].textContent, r.cells[1].textContent])",
    )
    assert rows == [[k, f"{p * 100:.2f} %"] for k, p in answer["probabilities"].items()]
    no_errors_and_nothing_foreign(browser)


def test_the_form_shows_the_services_error_next_to_the_field(
    browser: Browser, served: Server
) -> None:
    browser.open(f"{served.url}/")
    fill(browser, {"temperature": "40", "vibration": "-1"})
    shown = until(
        lambda: script(
            browser, "return document.querySelector('.field-error[data-for=vibration]').textContent"
        ),
        "the error next to vibration",
    )
    error = httpx.post(f"{served.url}/classify", json={"temperature": 40, "vibration": -1}).json()
    messages = [d["message"] for d in error["error"]["details"] if "vibration" in d["loc"]]
    assert shown == "; ".join(messages) and messages
    assert (
        script(
            browser,
            "return document.querySelector('input[name=vibration]').getAttribute('aria-invalid')",
        )
        == "true"
    )
    assert (
        script(
            browser,
            "return document.querySelector('.field-error[data-for=temperature]').textContent",
        )
        == ""
    )
    # A 422 answer is what the form is for; Chromium logs the failed fetch, nothing else.
    errors = browser.console_errors()
    assert all("/classify" in e["message"] and "422" in e["message"] for e in errors), errors
    assert browser.foreign_requests() == []


@pytest.mark.parametrize(
    ("name", "size", "mobile"), [("desktop", DESKTOP, False), ("phone", PHONE, True)]
)
def test_the_card_fits_desktop_and_phone_screens(
    browser: Browser,
    served: Server,
    screenshots: list[Path],
    name: str,
    size: tuple[int, int],
    mobile: bool,
) -> None:
    browser.screen(*size, mobile=mobile)
    try:
        browser.open(f"{served.url}/")
        assert_fits(browser, size)
        # Legible: body text at least 14 px.
        assert (
            float(
                script(
                    browser,
                    "return parseFloat(getComputedStyle(document.querySelector('main p')).fontSize)",
                )
            )
            >= 14
        )
        for directory in screenshots:
            browser.screenshot(directory / f"model-card-{name}.png")
            browser.screenshot(directory / f"model-card-{name}-full.png", full_page=True)
    finally:
        browser.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    no_errors_and_nothing_foreign(browser)


def assert_fits(browser: Browser, size: tuple[int, int]) -> None:
    """The open page is as wide as the screen: nothing sticks out on the right, tables included
    (they scroll inside)."""
    width = browser.overflow()
    assert width["innerWidth"] == size[0]
    assert width["scrollWidth"] <= width["innerWidth"], width
    wider = script(
        browser,
        "return Array.from(document.querySelectorAll('body *')).filter(function (e) {"
        " var r = e.getBoundingClientRect();"
        " return r.right > window.innerWidth + 0.5 && !e.closest('.scroll'); })"
        ".map(function (e) { return e.tagName + '#' + e.id; })",
    )
    assert wider == []


def test_the_card_of_a_model_with_long_names_fits_too(
    browser: Browser, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Names as a plant's export gives them, and a class named by a long fault description.
    path = write_artifact(
        tmp_path_factory.mktemp("long") / "model.npz",
        features=(
            "hydraulic_pump_outlet_pressure_sensor_PS1_bar",
            "cooling_efficiency_virtual_sensor_CE_percent",
        ),
        classes=("normal", "warning", "critical_" + "x" * 300),
    )
    with running_server(path, workers=1, log_dir=tmp_path_factory.mktemp("long-logs")) as server:
        for size, mobile in ((DESKTOP, False), (PHONE, True)):
            browser.screen(*size, mobile=mobile)
            try:
                browser.open(f"{server.url}/")
                assert_fits(browser, size)
            finally:
                browser.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    no_errors_and_nothing_foreign(browser)


def test_docs_list_every_operation_and_try_it_out_works(browser: Browser, served: Server) -> None:
    document = httpx.get(f"{served.url}/openapi.json").json()
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item
    }
    browser.open(f"{served.url}/docs")
    listed_script = (
        "return Array.from(document.querySelectorAll('.opblock')).map(function (b) {"
        " return [b.querySelector('.opblock-summary-method').textContent,"
        " b.querySelector('.opblock-summary-path').getAttribute('data-path')]; })"
    )
    listed = until(lambda: script(browser, listed_script), "Swagger UI lists the operations")
    assert {(m, p) for m, p in listed} == operations and len(listed) == len(operations)
    assert "Unable to render" not in script(browser, "return document.body.textContent")

    block = browser.driver.find_element("css selector", "#operations-default-classify")
    block.find_element("css selector", ".opblock-summary-control").click()
    until(lambda: block.find_elements("css selector", ".try-out__btn"), "Try it out button")
    block.find_element("css selector", ".try-out__btn").click()
    body = until(lambda: block.find_elements("css selector", "textarea.body-param__text"), "body")
    body[0].clear()
    body[0].send_keys('{"temperature": 47.5, "vibration": 2.3}')
    block.find_element("css selector", ".execute").click()
    status = until(
        lambda: [
            e.text
            for e in block.find_elements(
                "css selector", ".live-responses-table tr.response .response-col_status"
            )
        ],
        "the live response",
    )
    assert status[0].strip().startswith("200")
    no_errors_and_nothing_foreign(browser)


def test_after_a_model_swap_a_reload_shows_the_new_version(
    browser: Browser, served: Server, artifact: Path, tmp_path: Path
) -> None:
    old = model.load(artifact).version
    browser.open(f"{served.url}/")
    assert browser.driver.find_element("id", "model-version").text == old
    train_artifact(tmp_path / "next.npz", seed=1).replace(artifact)
    swapped = time.monotonic()
    new = model.load(artifact).version
    assert new != old

    def reloaded() -> bool:
        browser.driver.refresh()
        return browser.driver.find_element("id", "model-version").text == new

    until(reloaded, f"the page shows model {new}")
    # Chromium spreads its loads over several connections, so over both workers; each checks the
    # file at moments of its own, so the one that switched first may be alone for a while (CI
    # once saw the old model on the next load). Once the rollout promise has passed, every load
    # shows the new model.
    time.sleep(max(0.0, swapped + ROLLOUT_SECONDS - time.monotonic()))
    for _ in range(4):
        browser.driver.refresh()
        assert browser.driver.find_element("id", "model-version").text == new
        assert new in browser.driver.title
    no_errors_and_nothing_foreign(browser)
