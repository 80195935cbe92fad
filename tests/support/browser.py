"""The one headless Chromium the page tests drive (Debian's chromium and chromium-driver, selenium).

    with headless_chromium() as browser:
        browser.open(f"{server.url}/")
        assert browser.console_errors() == []
        assert browser.foreign_requests() == []

`headless_chromium` skips the calling test, saying why, when the browser or its driver is not
installed (`make system-tools` installs both). Every request the page makes is read from
Chromium's performance log, every console message from its browser log.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# Headless as root; without the background-networking flags Chromium reaches for the internet
# (component updates, sync, field trials) on its own, which this machine refuses.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)
DESKTOP = (1280, 800)
PHONE = (390, 844)
LOCAL_HOSTS = frozenset({"127.0.0.1"})
NETWORK_SCHEMES = frozenset({"http", "https", "ws", "wss", "ftp"})


@dataclass
class Browser:
    """A selenium-driven Chromium and what it logged since the last page it was told to open."""

    driver: Any
    messages: list[dict[str, Any]] = field(default_factory=list)
    requested: list[str] = field(default_factory=list)

    def open(self, url: str) -> None:
        """Load ``url``; the logs below then start afresh, with this page."""
        self._drain()
        self.messages.clear()
        self.requested.clear()
        self.driver.get(url)

    def _drain(self) -> None:
        self.messages += self.driver.get_log("browser")
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                self.requested.append(message["params"]["request"]["url"])

    def console_errors(self) -> list[dict[str, Any]]:
        """Console messages of level SEVERE (errors, failed loads) since the last `open`."""
        self._drain()
        return [m for m in self.messages if m["level"] == "SEVERE"]

    def requests(self) -> list[str]:
        """The URL of every request made since the last `open`."""
        self._drain()
        return list(self.requested)

    def foreign_requests(self) -> list[str]:
        """Requests over the network to any host but 127.0.0.1.

        Only network schemes count: `data:` URLs and the browser's own `chrome://` pages (its
        start page) go nowhere.
        """
        return [
            url
            for url in self.requests()
            if urlsplit(url).scheme in NETWORK_SCHEMES and urlsplit(url).hostname not in LOCAL_HOSTS
        ]

    def screen(self, width: int, height: int, *, mobile: bool = False) -> None:
        """Lay the page out on a ``width`` x ``height`` CSS-pixel screen (a phone's if ``mobile``)."""
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": mobile},
        )

    def overflow(self) -> dict[str, int]:
        """How the page's width compares with the viewport's (no horizontal scrolling if equal)."""
        return self.driver.execute_script(
            "return {scrollWidth: document.documentElement.scrollWidth,"
            " innerWidth: window.innerWidth};"
        )

    def screenshot(self, path: Path, *, full_page: bool = False) -> Path:
        """A PNG of the viewport (or of the whole page, ``full_page``) at ``path``."""
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            size = self.driver.execute_script(
                "return [document.documentElement.scrollWidth,"
                " document.documentElement.scrollHeight];"
            )
            params |= {
                "captureBeyondViewport": True,
                "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1], "scale": 1},
            }
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", params)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))
        return path


def missing() -> str | None:
    """Why no browser can be driven here, or None."""
    for program, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(program).exists():
            return f"{program} is not installed (Debian package {package}; `make system-tools`)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra: pip install -e '.[dev]')"
    return None


@contextlib.contextmanager
def headless_chromium() -> Iterator[Browser]:
    """A fresh headless Chromium with its own profile, quit afterwards; skips if there is none."""
    reason = missing()
    if reason:
        pytest.skip(f"no browser to drive: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="sensor-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    options.add_argument(f"--window-size={DESKTOP[0]},{DESKTOP[1]}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # An installed browser that does not start is a failure, not a skip.
    try:
        driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        try:
            yield Browser(driver)
        finally:
            driver.quit()
    finally:
        shutil.rmtree(profile, ignore_errors=True)
