"""The floor of the HTTP benchmark: a bare Flask app answering POST /classify with constant JSON.

Served by the same `gunicorn.conf.py` as the service (`gunicorn -c gunicorn.conf.py
'bench.bare_app:create_app()'`), so the difference between the two is the service's own work:
parsing, validation, the model, metrics. It reads the body, as any endpoint must, and answers
with the shape and size of a real /classify answer, but computes nothing.
"""

from __future__ import annotations

import functools

import orjson
from flask import Flask, Response, request

_CLASSES = ("normal", "warning", "critical")
_PROBABILITIES = (0.9731, 0.0265, 0.0004)
_VERSION = "0123456789abcdef"
_RESULT = {
    "label": _CLASSES[0],
    "confidence": _PROBABILITIES[0],
    "probabilities": dict(zip(_CLASSES, _PROBABILITIES, strict=True)),
    "in_training_range": True,
    "novel": False,
    "novelty": 0.3127,
}
SINGLE_ANSWER = orjson.dumps(_RESULT | {"model_version": _VERSION})


@functools.lru_cache(maxsize=16)
def batch_answer(n_readings: int) -> bytes:
    """The constant answer to a batch of ``n_readings``, built once per size."""
    return orjson.dumps({"model_version": _VERSION, "results": [_RESULT] * n_readings})


def create_app() -> Flask:
    """The bare app; gunicorn calls this factory in each worker."""
    app = Flask(__name__)

    @app.post("/classify")
    def classify() -> Response:
        body = request.get_data()
        if body.lstrip().startswith(b'{"readings"'):
            # Every reading is one JSON object inside the outer one: counting braces is the
            # cheapest way to answer with as many results as a real batch answer has.
            answer = batch_answer(max(body.count(b"{") - 1, 0))
        else:
            answer = SINGLE_ANSWER
        return Response(answer, content_type="application/json")

    return app
