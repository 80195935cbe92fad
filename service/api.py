"""The HTTP routes of the service's own API: they translate HTTP to the data plane and back."""

from __future__ import annotations

from flask import Blueprint, Response, request

from service.body import body_deadline, parse_json, read_body
from service.dataplane import DataPlane
from service.errors import JSON, json_response
from service.metrics import Metrics
from service.openapi import documented
from service.runtime import LoadedModel
from service.schemas import DriftReport, Health, ModelInfo, code
from service.settings import Settings

METRICS_UNAVAILABLE = (
    "The workers' metrics cannot be read from PROMETHEUS_MULTIPROC_DIR (gone, unreadable), or"
    " this worker started unable to write its own; the message says which. Answers are"
    " unaffected."
)


def _classify_description(loaded: LoadedModel, settings: Settings) -> str:
    return (
        f"Features: {', '.join(map(code, loaded.requests.features))}."
        f" Classes: {', '.join(map(code, loaded.classes))}."
        f" A batch holds 1 to {settings.max_batch} readings (SENSOR_MAX_BATCH)."
    )


def create_api(dataplane: DataPlane, settings: Settings, metrics: Metrics) -> Blueprint:
    """`/classify`, `/healthz`, `/readyz`, `/model`, `/drift` and `/metrics`."""
    api = Blueprint("api", __name__)
    deadline = body_deadline()

    @api.post("/classify")
    @documented(
        summary="Classify one reading or a batch of readings",
        description=_classify_description,
        request=lambda m: [m.requests.reading, m.requests.batch],
        responses={
            200: (
                lambda m: [m.responses.answer, m.responses.batch_answer],
                "The answer to a reading (ClassificationAnswer) or a batch (BatchAnswer).",
            )
        },
        errors={
            422: "Valid JSON that does not fit the schema (a duplicate key included); `details`"
            " say where.",
            500: "A fault of the service (never caused by the request).",
        },
    )
    def classify() -> Response:
        document = parse_json(
            read_body(request.environ, settings, deadline), settings.max_json_depth
        )
        return Response(dataplane.classify(document), content_type=JSON)

    @api.get("/healthz")
    @documented(
        summary="Liveness: 200 while the process is up",
        responses={200: (Health, "The process is up.")},
    )
    def healthz() -> Response:
        loaded = dataplane.runtime.loaded
        return json_response({"status": "ok", "model_version": loaded.version if loaded else None})

    @api.get("/readyz")
    @documented(
        summary="Readiness: a model is loaded and a self-test prediction succeeds",
        responses={
            200: (Health, "Ready to classify."),
            503: (Health, "Not ready; `detail` says why."),
        },
    )
    def readyz() -> Response:
        readiness = dataplane.ready()
        if readiness.ready:
            answer = {"status": "ok", "model_version": readiness.model_version}
            if readiness.detail != "ok":
                answer["detail"] = readiness.detail
            return json_response(answer)
        return json_response(
            {
                "status": "unavailable",
                "model_version": readiness.model_version,
                "detail": readiness.detail,
            },
            503,
        )

    @api.get("/model")
    @documented(
        summary="The model being served: version, features, classes, training",
        responses={200: (ModelInfo, "The loaded model.")},
    )
    def model() -> Response:
        return json_response(dataplane.describe())

    @api.get("/drift")
    @documented(
        summary="Drift: live readings and labels against the training reference (PSI)",
        description=lambda m, s: (
            "Per feature, the population stability index of the readings counted since this"
            " model version was loaded (by every worker, each at most"
            f" {s.metrics_flush_interval:g} s behind: SENSOR_METRICS_FLUSH_INTERVAL) against"
            " the training readings, with both shares per bin; the same for predicted labels."
            " PSI = sum over bins of (o - r) ln(o / r), each share floored at `epsilon`."
        ),
        responses={200: (DriftReport, "The comparison.")},
        errors={
            404: "The model has no drift reference (an artifact from before drift monitoring).",
            503: METRICS_UNAVAILABLE,
        },
    )
    def drift() -> Response:
        return json_response(dataplane.drift())

    @api.get("/metrics")
    @documented(
        summary="Prometheus metrics, summed over all workers",
        responses={200: ("text", "Prometheus text exposition format.")},
        errors={503: METRICS_UNAVAILABLE},
    )
    def metrics_text() -> Response:
        text, content_type = metrics.exposition()
        return Response(text, content_type=content_type)

    return api
