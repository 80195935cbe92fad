"""What users would pick instead: a minimal FastAPI + uvicorn version of single-reading /classify.

Issue 4 names it as the fastest alternative, so the HTTP benchmark measures it in the same run as
the service (`uvicorn --workers N bench.fastapi_app:app`). It is the service's answer to one
reading and no more: the same model file (``SENSOR_MODEL_PATH``), forward pass, decision and
novelty score, pydantic validation of the two synthetic features with their physical limits, the
same JSON answer; no metrics, no batch, no reloading. The endpoint is ``async``: the model answers
in microseconds, and FastAPI would otherwise hand every request to a thread pool.
"""

from __future__ import annotations

import os

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

import model

_classifier = model.load(os.environ["SENSOR_MODEL_PATH"])
_classes = list(_classifier.classes)


class Reading(BaseModel):
    """One reading of the default model's features (the benchmark sends only these)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    temperature: float = Field(ge=-273.15)
    vibration: float = Field(ge=0)
    id: str | None = Field(default=None, max_length=128)


app = FastAPI()


@app.post("/classify")
async def classify(reading: Reading) -> dict[str, object]:
    values = (reading.temperature, reading.vibration)
    p = _classifier.predict_proba_one(values)
    best = _classifier.decide_one(p)
    novelty = _classifier.novelty_one(values)
    answer: dict[str, object] = {
        "label": _classes[best],
        "confidence": p[best],
        "probabilities": dict(zip(_classes, p, strict=True)),
        "in_training_range": _classifier.in_training_range_one(values),
        "novel": novelty > 1.0,
        "novelty": novelty,
        "model_version": _classifier.version,
    }
    if reading.id is not None:
        answer["id"] = reading.id
    return answer
