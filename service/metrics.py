"""Prometheus metrics, correct across gunicorn workers through prometheus_client's multiprocess mode."""

from __future__ import annotations

import atexit
import bisect
import contextlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from time import monotonic, perf_counter
from typing import Any

import numpy as np
from flask import Flask
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

import model
from service import metric_files
from service.errors import MetricsUnavailable
from service.metric_files import MULTIPROC_ENV

logger = logging.getLogger(__name__)

# Answers take well under a millisecond; the low buckets are where the information is.
LATENCY_BUCKETS = (
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
# Clients choose the method; anything else is folded so that label values stay bounded.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class DriftTotals:
    """Readings counted for one model version, summed over every worker.

    bins : (feature, bin) -> readings; labels : label -> readings; novel : novel readings
    """

    bins: dict[tuple[str, str], float]
    labels: dict[str, float]
    novel: float


class VersionCounts:
    """One model version's readings counted in this worker's memory, until ``flush``.

    Counting a reading is a few list increments (a bisect per feature for its bin); a batch is a
    bincount per feature. ``flush`` adds the totals to the Prometheus counters, whose every
    increment in multiprocess mode is a locked write to a memory-mapped file.

    Unlocked: a worker runs one thread (gevent greenlets, which switch only on I/O, never
    between a count and a flush). Under OS threads a count racing a flush could be lost.
    """

    def __init__(self, metrics: Metrics, classifier: model.Classifier) -> None:
        version = classifier.version
        self.reference = classifier.drift_reference
        self._label_children = [metrics.readings.labels(version, c) for c in classifier.classes]
        self._novel_child = metrics.novel_readings.labels(version)
        self.labels = [0] * classifier.n_classes
        self.novel = 0
        self._bin_children: list[list[Any]] = []
        self.bins: list[list[int]] = []
        self._batch_bins: list[np.ndarray] = []
        self._edges: tuple[list[float], ...] = ()
        reference = self.reference
        if reference is not None:
            self._edges = reference.edge_lists
            for feature, shares in zip(classifier.features, reference.feature_shares, strict=True):
                bins = [str(b) for b in range(shares.size)]
                # Created at zero, so every bin is a series from the start and increase() over
                # the window counts a bin's first readings too.
                self._bin_children.append([metrics.bins.labels(version, feature, b) for b in bins])
                for b, share in zip(bins, shares.tolist(), strict=True):
                    metrics.bin_reference.labels(version, feature, b).set(share)
                self.bins.append([0] * shares.size)
                self._batch_bins.append(np.zeros(shares.size, dtype=np.int64))
            for label, share in zip(
                classifier.classes, reference.label_shares.tolist(), strict=True
            ):
                metrics.label_reference.labels(version, label).set(share)

    def one(self, reading: Sequence[float], label: int, novel: bool) -> None:
        for counts, edges, v in zip(self.bins, self._edges, reading, strict=False):
            counts[bisect.bisect_right(edges, v)] += 1
        self.labels[label] += 1
        if novel:
            self.novel += 1

    def many(self, X: np.ndarray, best: np.ndarray, novel: int) -> None:
        if self.reference is not None:
            for total, counts in zip(self._batch_bins, self.reference.bin_counts(X), strict=True):
                total += counts
        for label, count in enumerate(np.bincount(best, minlength=len(self.labels)).tolist()):
            self.labels[label] += count
        self.novel += novel

    def flush(self) -> None:
        for children, counts, batch in zip(
            self._bin_children, self.bins, self._batch_bins, strict=True
        ):
            for b, (single, many) in enumerate(zip(counts, batch.tolist(), strict=True)):
                if single or many:
                    children[b].inc(single + many)
                    counts[b] = 0
            batch[:] = 0
        for label, count in enumerate(self.labels):
            if count:
                self._label_children[label].inc(count)
                self.labels[label] = 0
        if self.novel:
            self._novel_child.inc(self.novel)
            self.novel = 0


class RequestCounts:
    """Requests counted and timed in this worker's memory, until ``flush`` (as ``VersionCounts``).

    Counting a request is two dict look-ups, an increment and a bisect; ``flush`` hands the
    totals to the request counter and the latency histogram, a locked memory-mapped write per
    series touched instead of three per request. Unlocked for the reason ``VersionCounts`` is.
    """

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self.requests: dict[tuple[str, str, str], int] = {}
        # endpoint -> [sum of seconds, count per bucket (the last: +Inf)]
        self.latency: dict[str, list[float]] = {}

    def one(self, endpoint: str, method: str, status: str, seconds: float) -> None:
        key = (endpoint, method, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        histogram = self.latency.get(endpoint)
        if histogram is None:
            histogram = self.latency[endpoint] = [0.0] * (len(LATENCY_BUCKETS) + 2)
        histogram[0] += seconds
        # Prometheus counts an observation in the first bucket whose bound it does not exceed.
        histogram[1 + bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1

    def flush(self) -> None:
        """Hand the totals over; a series whose file cannot be written (OSError) keeps its
        counts for the next flush, and no series is handed over twice."""
        metrics = self._metrics
        for key in list(self.requests):
            metrics.requests.labels(*key).inc(self.requests[key])
            del self.requests[key]
        for endpoint in list(self.latency):
            child = metrics.latency.labels(endpoint)
            histogram = self.latency.pop(endpoint)
            # prometheus_client has no bulk observe: its observe() is _sum.inc(amount) and
            # _buckets[i].inc(1) for the first bound i the amount does not exceed, so the
            # totals go to the same values (test_metrics checks the exposition against it).
            child._sum.inc(histogram[0])
            for bucket, count in zip(child._buckets, histogram[1:], strict=True):
                if count:
                    bucket.inc(count)


class Metrics:
    """The service's metrics and their exposition.

    Values are kept per process in ``PROMETHEUS_MULTIPROC_DIR`` when that is set (it must be set
    before the process imports prometheus_client; `gunicorn.conf.py` does it), and a scrape of any
    worker then sums every worker's files. Without it (tests, `flask run`) they live in memory.

    Requests and readings are counted in the worker's memory (``RequestCounts``,
    ``VersionCounts``) and handed to the counters and the latency histogram in
    bulk at most ``flush_interval`` seconds apart: by the next counted reading after the interval,
    by the timer ``flush_every`` starts (an idle worker), before this worker's own scrape and at
    exit. So a scrape of any worker sees every worker's requests and readings at most
    ``flush_interval`` late.

    Metrics cost metrics, never answers: when the directory cannot be written (removed, read
    only, not a directory) the error is logged once and counting goes on in memory; a worker that
    starts so keeps its values in memory only, until it is restarted. A scrape, or `/drift`, that
    cannot read every worker's values raises MetricsUnavailable (503) rather than answering
    with a part of them.
    """

    def __init__(self, flush_interval: float = 1.0) -> None:
        self.multiprocess = metric_files.directory() is not None
        if not self.multiprocess:
            # prometheus_client takes a set but empty PROMETHEUS_MULTIPROC_DIR for a directory
            # (the working one); to the service it is none, and values live in memory.
            values.ValueClass = values.MutexValue
        # Why this worker's values are not exported (it started without a usable directory).
        self.unexported: str | None = None
        self._write_problem: str | None = None
        try:
            self._declare()
        except OSError as exc:
            # An unlabelled metric writes its file when it is declared (no directory, no room:
            # `metric_files.BackedMmapedDict`); every value declared from now on lives in memory
            # (prometheus_client picks the value class per process).
            self.unexported = self._cannot_write(exc)
            values.ValueClass = values.MutexValue
            self._declare()
        self._requests = RequestCounts(self)
        self._counts: dict[str, VersionCounts] = {}
        self.flush_interval = flush_interval
        self._next_flush = monotonic() + flush_interval

    def _declare(self) -> None:
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
            "Readings classified, by model version and predicted label: a drift signal when the"
            " mix changes.",
            ["model_version", "label"],
            registry=self.registry,
        )
        self.novel_readings = Counter(
            "sensor_novel_readings",
            "Readings flagged novel (farther from every training class than held-out readings),"
            " by model version.",
            ["model_version"],
            registry=self.registry,
        )
        self.bins = Counter(
            "sensor_feature_bin_readings",
            "Readings classified, by model version, feature and bin of the model's drift"
            " reference (0: below the training minimum; the last: above the maximum).",
            ["model_version", "feature", "bin"],
            registry=self.registry,
        )
        self.bin_reference = Gauge(
            "sensor_feature_bin_reference_ratio",
            "Share of the training readings in each bin of each feature, by model version.",
            ["model_version", "feature", "bin"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.label_reference = Gauge(
            "sensor_label_reference_ratio",
            "Share of the validation readings answered with each label, by model version.",
            ["model_version", "label"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.model_info = Gauge(
            "sensor_model_info",
            "1 for the model version being served (by any live worker), else 0.",
            ["version"],
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.artifact_problem = Gauge(
            "sensor_model_artifact_problem",
            "1 while a worker cannot serve SENSOR_MODEL_PATH (missing, unreadable or refused) and"
            " answers with the last good model instead, else 0.",
            multiprocess_mode="livemax",
            registry=self.registry,
        )
        self.artifact_problem.set(0)
        self.reloads = Counter(
            "sensor_model_reloads",
            "New model artifacts seen by a worker, by outcome (success, failure).",
            ["outcome"],
            registry=self.registry,
        )

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        """Around a write to the values: an OSError is said (``_cannot_write``), never raised."""
        try:
            yield
        except OSError as exc:
            self._cannot_write(exc)

    def _cannot_write(self, error: OSError) -> str:
        """Say once that values cannot be written to the directory; the problem, as said."""
        problem = (
            f"cannot write metrics to {MULTIPROC_ENV}={os.environ.get(MULTIPROC_ENV)}: {error}"
        )
        if problem != self._write_problem:
            self._write_problem = problem
            logger.error("%s; answers go on, uncounted until it is writable", problem)
        return problem

    def observe_request(self, endpoint: str, method: str, status: str, seconds: float) -> None:
        """One request was answered with ``status`` after ``seconds``."""
        self._requests.one(endpoint, method, status, seconds)
        if monotonic() >= self._next_flush:
            self.flush()

    def serving(self, classifier: model.Classifier) -> None:
        """A worker serves ``classifier``: its counters start at zero, its reference is exported."""
        self._version(classifier)

    def _version(self, classifier: model.Classifier) -> VersionCounts | None:
        """The counts of ``classifier``'s version; None while its series cannot be created."""
        counts = self._counts.get(classifier.version)
        if counts is None:
            with self._writing():
                counts = self._counts[classifier.version] = VersionCounts(self, classifier)
        return counts

    def reading(
        self, classifier: model.Classifier, reading: Sequence[float], label: int, novel: bool
    ) -> None:
        """One reading (n_features,) was answered with class index ``label``."""
        counts = self._version(classifier)
        if counts is not None:
            counts.one(reading, label, novel)
        if monotonic() >= self._next_flush:
            self.flush()

    def readings_batch(
        self, classifier: model.Classifier, X: np.ndarray, best: np.ndarray, novel: int
    ) -> None:
        """Readings ``X`` (n, n_features) were answered with class indices ``best`` (n,)."""
        counts = self._version(classifier)
        if counts is not None:
            counts.many(X, best, novel)
        if monotonic() >= self._next_flush:
            self.flush()

    def flush(self) -> None:
        """Add this worker's counts since the last flush to the (shared) counters."""
        self._next_flush = monotonic() + self.flush_interval
        with self._writing():
            self._requests.flush()
            for counts in self._counts.values():
                counts.flush()

    def flush_every(self) -> threading.Event:
        """Flush on a timer too (a greenlet under gevent), and at exit; set the event to stop."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.flush_interval):
                try:
                    self.flush()
                except Exception:  # never let the timer die; counting flushes too
                    logger.exception("flushing reading counts failed")

        threading.Thread(target=loop, name="metrics-flush", daemon=True).start()
        atexit.register(self.flush)
        return stop

    @contextlib.contextmanager
    def _scrape(self) -> Iterator[CollectorRegistry]:
        """What a scrape reads (every worker's files in multiprocess mode, else this registry),
        held so that no dead worker's files are folded meanwhile; raises MetricsUnavailable."""
        self.flush()
        if not self.multiprocess:
            yield self.registry
            return
        if self.unexported is not None:
            raise MetricsUnavailable(
                f"this worker started unable to export its metrics ({self.unexported});"
                " restart the service once the directory is writable"
            )
        try:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # ValueError: the directory is gone, or no directory
            with metric_files.reading():
                yield registry
        except (OSError, ValueError) as exc:
            raise MetricsUnavailable(f"metrics cannot be read: {exc}") from None

    def _collect(self) -> list[Any]:
        with self._scrape() as registry:
            return list(registry.collect())

    def drift_totals(self, version: str) -> DriftTotals:
        """Readings counted for ``version`` by every worker (this one's up to now)."""
        bins: dict[tuple[str, str], float] = {}
        labels: dict[str, float] = {}
        novel = 0.0
        for family in self._collect():
            for sample in family.samples:
                if sample.labels.get("model_version") != version:
                    continue
                if sample.name == "sensor_feature_bin_readings_total":
                    bins[(sample.labels["feature"], sample.labels["bin"])] = sample.value
                elif sample.name == "sensor_readings_classified_total":
                    labels[sample.labels["label"]] = sample.value
                elif sample.name == "sensor_novel_readings_total":
                    novel = sample.value
        return DriftTotals(bins=bins, labels=labels, novel=novel)

    def artifact_problem_changed(self, problem: bool) -> None:
        with self._writing():
            self.artifact_problem.set(1 if problem else 0)

    def reloaded(self, outcome: str, old: str | None, new: str) -> None:
        with self._writing():
            if outcome == "success":
                if old is not None and old != new:
                    self.model_info.labels(old).set(0)
                self.model_info.labels(new).set(1)
            if old is not None:
                # The first load is a start, not a reload.
                self.reloads.labels(outcome).inc()

    def exposition(self) -> tuple[bytes, str]:
        """The text format of every metric (summed over all workers) and its content type."""
        with self._scrape() as registry:
            return generate_latest(registry), CONTENT_TYPE_LATEST


class RouteNames:
    """Maps a request path to its route pattern (the metrics label), from the app's URL map.

    Looked up after the response, without Flask's request context: fixed paths by dict, the
    few patterns with parameters by regex (a `path` parameter, as the model card's static files
    have, spans slashes). Unknown paths are all "unmatched".
    """

    def __init__(self, app: Flask) -> None:
        self.static: dict[str, str] = {}
        self.patterns: list[tuple[re.Pattern[str], str]] = []
        for rule in app.url_map.iter_rules():
            if not rule.arguments:
                self.static[rule.rule] = rule.rule
            else:
                parts = re.split(r"<([^>]+)>", rule.rule)
                regex = "".join(
                    re.escape(part)
                    if i % 2 == 0
                    else (".+" if part.startswith("path:") else "[^/]+")
                    for i, part in enumerate(parts)
                )
                self.patterns.append((re.compile(regex + r"\Z"), rule.rule))

    def __call__(self, path: str) -> str:
        name = self.static.get(path)
        if name is not None:
            return name
        if path.startswith("//"):  # Werkzeug matches a path with its leading slashes merged
            return self("/" + path.lstrip("/"))
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
