"""The application factory: settings in, a Flask app serving the loaded model out."""

from __future__ import annotations

from flask import Flask

from service import metrics as request_metrics
from service.api import create_api
from service.body import BodyBudget
from service.card import create_card
from service.dataplane import DataPlane
from service.errors import register_error_handlers
from service.kserve import create_v2
from service.metrics import Metrics
from service.openapi import create_docs
from service.runtime import ModelRuntime, Observers
from service.settings import Settings


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app for ``settings`` (default: from the environment).

    Loads the model first and raises `runtime.ModelLoadError` if it cannot be served: a service
    without a model must not start (and never answers 500 on every request instead).
    """
    settings = settings or Settings()
    metrics = Metrics(settings.metrics_flush_interval)
    observers = Observers(
        reading=metrics.reading,
        readings=metrics.readings_batch,
        serving=metrics.serving,
        reloaded=metrics.reloaded,
        artifact_problem=metrics.artifact_problem_changed,
    )
    runtime = ModelRuntime(settings, observers)
    runtime.start()
    dataplane = DataPlane(runtime, settings, observers, metrics.drift_totals)

    app = Flask(__name__)
    # Flask's own 413 handling is not used: bodies are read and limited by `service.body`.
    app.config.update(MAX_CONTENT_LENGTH=None)
    # A doubled slash inside a path is unknown (a JSON 404), not Werkzeug's HTML 308 redirect.
    app.url_map.merge_slashes = False
    app.extensions["sensor"] = {
        "settings": settings,
        "runtime": runtime,
        "dataplane": dataplane,
        "metrics": metrics,
    }
    register_error_handlers(app)
    app.register_blueprint(create_api(dataplane, settings, metrics))
    app.register_blueprint(create_v2(dataplane, settings))
    app.register_blueprint(create_docs(runtime, settings))
    app.register_blueprint(create_card(dataplane))
    request_metrics.init_app(app, metrics)
    # Outermost: a request's bytes count until its answer (an error's included) is sent.
    app.wsgi_app = BodyBudget(settings.max_bytes_in_flight).middleware(app.wsgi_app)  # type: ignore[method-assign]
    return app
