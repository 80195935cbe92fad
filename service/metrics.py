"""Prometheus metrics, correct across gunicorn workers through prometheus_client's multiprocess mode."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable
from time import perf_counter
from typing import Any

from flask import Flask
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Answers take well under a millisecond; the low buckets are where the information is.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Clients choose the method; anything else is folded so that label values stay bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Metrics:
    """The service's metrics and their exposition.

    Values are kept per process in ``PROMETHEUS_MULTIPROC_DIR`` when that is set (it must be set
    before the process imports prometheus_client; `gunicorn.conf.py` does it), and a scrape of any
    worker then sums every worker's files. Without it (tests, `flask run`) they live in memory.
    """

    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # A registry per app, so that several apps in one process (tests) do not collide.
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sensor_http_requests",
            "HTTP requests answered, by endpoint (route pattern), method and status.",
            ["endpoint", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "sensor_http_request_duration_seconds",
            "Time from the start of the request to the response, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.readings = Counter(
            "sensor_readings_classified",
            "Readings classified, by predicted label: a drift signal when the mix changes.",
            ["label"],
            registry=self.registry,
        )
        self.novel_readings = Counter(
            "sensor_novel_readings",
            "Readings flagged novel (farther from every training class than held-out readings).",
            registry=self.registry,
        )
        self.model_info = Gauge(
            "sensor_model_info",
            "1 for the model version being served (by any live worker), else 0.",
            ["version"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.reloads = Counter(
            "sensor_model_reloads",
            "New model artifacts seen by a worker, by outcome (success, failure).",
            ["outcome"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, str, str], tuple[Any, Any]] = {}
        self._labels: dict[str, Any] = {}

    def observe_request(self, endpoint: str, method: str, status: str, seconds: float) -> None:
        key = (endpoint, method, status)
        children = self._children.get(key)
        if children is None:
            children = (
                self.requests.labels(endpoint, method, status),
                self.latency.labels(endpoint),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def classified(self, label: str, count: int) -> None:
        child = self._labels.get(label)
        if child is None:
            child = self._labels[label] = self.readings.labels(label)
        child.inc(count)

    def novel(self, count: int) -> None:
        self.novel_readings.inc(count)

    def reloaded(self, outcome: str, old: str | None, new: str) -> None:
        if outcome == "success":
            if old is not None and old != new:
                self.model_info.labels(old).set(0)
            self.model_info.labels(new).set(1)
        if old is not None:
            # The first load is a start, not a reload.
            self.reloads.labels(outcome).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric (summed over all workers) and its content type."""
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
            return generate_latest(registry), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class RouteNames:
    """Maps a request path to its route pattern (the metrics label), from the app's URL map.

    Looked up after the response, without Flask's request context: static paths by dict, the
    few patterns with parameters by regex. Unknown paths are all "unmatched".
    """

    def __init__(self, app: Flask) -> None:
        self.static: dict[str, str] = {}
        self.patterns: list[tuple[re.Pattern[str], str]] = []
        for rule in app.url_map.iter_rules():
            if rule.endpoint == "static":
                continue
            if not rule.arguments:
                self.static[rule.rule] = rule.rule
            else:
                literal_parts = re.split(r"<[^>]+>", rule.rule)
                regex = "[^/]+".join(re.escape(part) for part in literal_parts)
                self.patterns.append((re.compile(regex + r"\Z"), rule.rule))

    def __call__(self, path: str) -> str:
        name = self.static.get(path)
        if name is not None:
            return name
        for pattern, rule in self.patterns:
            if pattern.match(path):
                return rule
        return "unmatched"


class RequestMetricsMiddleware:
    """Counts and times every request around the Flask app, errors and unknown routes included."""

    def __init__(self, app: WSGIApp, metrics: Metrics, route_names: Callable[[str], str]) -> None:
        self.app = app
        self.metrics = metrics
        self.route_names = route_names

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        start = perf_counter()
        status = "500"

        def capture(status_line: str, headers: Any, exc_info: Any = None) -> Any:
            nonlocal status
            status = status_line[:3]
            return start_response(status_line, headers, exc_info)

        try:
            return self.app(environ, capture)
        finally:
            method = environ.get("REQUEST_METHOD", "")
            if method not in KNOWN_METHODS:
                method = "other"
            endpoint = self.route_names(environ.get("PATH_INFO", ""))
            self.metrics.observe_request(endpoint, method, status, perf_counter() - start)


def init_app(app: Flask, metrics: Metrics) -> None:
    """Measure every request of ``app`` with ``metrics`` (call after registering the routes)."""
    app.wsgi_app = RequestMetricsMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, metrics, RouteNames(app)
    )
