"""The data plane: every operation the service offers, whichever API asks (as MLServer's DataPlane).

`/classify`, `/model`, `/drift`, the health endpoints, the model card at `/` and the Open
Inference Protocol routes only translate HTTP to these calls and their results back; no route
computes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import orjson

import model
from service import inference_protocol as v2
from service.errors import MalformedRequest, MetricsUnavailable, NotFound
from service.metrics import DriftTotals
from service.runtime import LoadedModel, ModelRuntime, Observers
from service.schemas import SingleRequest
from service.settings import Settings

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    """Whether a model is loaded and answers a self-test reading, and if not, why."""

    ready: bool
    model_version: str | None
    detail: str


@dataclass(frozen=True)
class ModelCard:
    """The model card's numbers: the description (`/model`), drift (`/drift`), readiness."""

    description: dict[str, Any]
    readiness: Readiness
    # None when the model has no drift reference; ``no_drift`` then says why.
    drift: dict[str, Any] | None
    no_drift: str
    # Share of the readings this model version answered that were novel (None: none yet).
    novel_rate: float | None


class DataPlane:
    """Classify, infer, readiness, description, drift and the model card, on the model the
    runtime serves now."""

    def __init__(
        self,
        runtime: ModelRuntime,
        settings: Settings,
        observers: Observers,
        totals: Callable[[str], DriftTotals] | None = None,
    ) -> None:
        self.runtime = runtime
        self.settings = settings
        self.observers = observers
        # Readings counted per model version by every worker (`Metrics.drift_totals`).
        self.totals = totals

    # --- classification (`POST /classify`) --------------------------------------------------

    def classify(self, document: Any) -> bytes:
        """The JSON answer to a parsed `/classify` body: one reading or a batch.

        Raises ValidationFailed (422) or MalformedRequest (400) for a body that does not fit.
        """
        loaded = self.runtime.current()
        request = loaded.requests.validate(document)
        if isinstance(request, SingleRequest):
            return orjson.dumps(self._classify_one(loaded, request))
        clf = loaded.classifier
        P = clf.predict_proba(request.X)
        best = clf.decide(P)
        novelty = clf.novelty(request.X)
        self._count(loaded, request.X, best, novelty)
        return loaded.encoder.encode(
            P, best, clf.in_training_range(request.X), novelty, request.ids
        )

    def _classify_one(self, loaded: LoadedModel, reading: SingleRequest) -> dict[str, Any]:
        clf = loaded.classifier
        p = clf.predict_proba_one(reading.values)
        best = clf.decide_one(p)
        novelty = clf.novelty_one(reading.values)
        classes = loaded.classes
        answer = {
            "label": classes[best],
            "confidence": p[best],
            "probabilities": dict(zip(classes, p, strict=True)),
            "in_training_range": clf.in_training_range_one(reading.values),
            "novel": novelty > 1.0,
            "novelty": novelty,
            "model_version": loaded.version,
        }
        if reading.id is not None:
            answer["id"] = reading.id
        self.observers.reading(clf, reading.values, best, novelty > 1.0)
        return answer

    def _count(
        self,
        loaded: LoadedModel,
        X: np.ndarray[Any, Any],
        best: np.ndarray[Any, Any],
        novelty: np.ndarray[Any, Any],
    ) -> None:
        novel = int(np.count_nonzero(novelty > 1.0))
        self.observers.readings(loaded.classifier, X, best, novel)

    # --- the Open Inference Protocol ---------------------------------------------------------

    def served(self, model_name: str, version: str | None = None) -> LoadedModel:
        """The model answering requests for ``model_name`` (and ``version``); else 404."""
        name = self.settings.model_name
        if model_name != name:
            raise NotFound(f"unknown model {model_name!r}; this server serves {name!r}")
        loaded = self.runtime.current()
        if version is not None and version != loaded.version:
            raise NotFound(
                f"model {name!r} has no version {version!r}; it serves version {loaded.version!r}"
            )
        return loaded

    def model_metadata(self, model_name: str, version: str | None = None) -> dict[str, Any]:
        """`GET /v2/models/{name}`: the model's tensors."""
        loaded = self.served(model_name, version)
        return v2.model_metadata(
            self.settings.model_name,
            loaded.version,
            len(loaded.requests.features),
            len(loaded.classes),
        )

    def server_metadata(self) -> dict[str, Any]:
        """`GET /v2`: the server's name, version and the protocol extensions it implements."""
        return v2.server_metadata()

    def infer(
        self,
        model_name: str,
        document: Any,
        version: str | None = None,
        tensor_data: bytes = b"",
    ) -> v2.EncodedResponse:
        """`POST /v2/models/{name}[/versions/{version}]/infer` on a parsed JSON header.

        ``tensor_data``: the binary tensor data that followed the header (binary tensor data
        extension). The answer is JSON, or a JSON header and binary outputs after it.
        """
        loaded = self.served(model_name, version)
        request, X = v2.parse_inference_request(
            document,
            len(loaded.requests.features),
            self.settings.max_batch,
            self.settings.max_json_depth,
            tensor_data,
        )
        if request.model_name is not None and request.model_name != model_name:
            raise MalformedRequest(
                f"the request's model_name {request.model_name!r} is not the model of its path,"
                f" {model_name!r}"
            )
        outside = loaded.requests.outside_limits(X)
        if outside is not None:
            raise MalformedRequest(f"input {request.inputs[0].name!r}, {outside}")
        P = loaded.classifier.predict_proba(X)
        best = loaded.classifier.decide(P)
        novelty = loaded.classifier.novelty(X)
        self._count(loaded, X, best, novelty)
        wanted = v2.requested_outputs(request)
        labels = np.asarray(loaded.classes)[best].tolist()
        answer: dict[str, Any] = {
            "model_name": self.settings.model_name,
            "model_version": loaded.version,
        }
        if request.id is not None:
            answer["id"] = request.id
        tensors = v2.outputs([name for name, _ in wanted], P, labels, novelty > 1.0)
        return v2.encode_response(answer, tensors, [binary for _, binary in wanted])

    # --- drift (`GET /drift`) ---------------------------------------------------------------

    def drift(self) -> dict[str, Any]:
        """What `GET /drift` answers (see `schemas.DriftReport`): PSI of what this version answered.

        Raises NotFound when the model has no drift reference or nothing counts readings, and
        MetricsUnavailable when the counts cannot be read.
        """
        return self._drift(self.runtime.current())

    def _drift(self, loaded: LoadedModel) -> dict[str, Any]:
        clf = loaded.classifier
        reference = clf.drift_reference
        if reference is None or self.totals is None:
            raise NotFound(
                f"model {loaded.version} has no drift reference (written before drift"
                " monitoring); retrain with `python -m training` to monitor drift"
            )
        totals = self.totals(loaded.version)
        features = []
        for name, edges, ref_shares in zip(
            clf.features, reference.edges, reference.feature_shares, strict=True
        ):
            counts = [totals.bins.get((name, str(b)), 0.0) for b in range(ref_shares.size)]
            bounds = [None, *edges.tolist(), None]
            features.append(
                {
                    "name": name,
                    **_compared(counts, ref_shares),
                    "bins": [
                        {"bin": str(b), "lower": bounds[b], "upper": bounds[b + 1], **share}
                        for b, share in enumerate(_shares(counts, ref_shares))
                    ],
                }
            )
        label_counts = [totals.labels.get(label, 0.0) for label in clf.classes]
        return {
            "model_version": loaded.version,
            "epsilon": model.PSI_EPSILON,
            "novel_readings": totals.novel,
            "features": features,
            "labels": {
                **_compared(label_counts, reference.label_shares),
                "classes": [
                    {"label": label, **share}
                    for label, share in zip(
                        clf.classes, _shares(label_counts, reference.label_shares), strict=True
                    )
                ],
            },
        }

    # --- health and description --------------------------------------------------------------

    def ready(self) -> Readiness:
        """Ready means a model is loaded and passes its self-test (`Classifier.self_test`)."""
        loaded = self.runtime.current() if self.runtime.loaded is not None else None
        if loaded is None:
            return Readiness(False, None, f"no model loaded from {self.runtime.path}")
        try:
            loaded.classifier.self_test()
        except ValueError as exc:
            return Readiness(False, loaded.version, f"self-test failed: {exc}")
        except Exception as exc:
            logger.exception("self-test prediction failed")
            return Readiness(False, loaded.version, f"self-test prediction failed: {exc!r}")
        problem = self.runtime.problem
        if problem is None:
            return Readiness(True, loaded.version, "ok")
        return Readiness(True, loaded.version, f"serving the last good model; {problem}")

    def describe(self) -> dict[str, Any]:
        """What `GET /model` answers (see `schemas.ModelInfo`)."""
        return self._describe(self.runtime.current())

    def model_card(self) -> ModelCard:
        """What the page at `/` shows: `/model`, `/drift` and readiness, all of one model."""
        loaded = self.runtime.current()
        try:
            drift: dict[str, Any] | None = self._drift(loaded)
            no_drift = ""
        except (NotFound, MetricsUnavailable) as exc:
            drift, no_drift = None, exc.message
        readings = drift["labels"]["readings"] if drift else 0.0
        return ModelCard(
            description=self._describe(loaded),
            readiness=self.ready(),
            drift=drift,
            no_drift=no_drift,
            novel_rate=drift["novel_readings"] / readings if drift and readings else None,
        )

    def _describe(self, loaded: LoadedModel) -> dict[str, Any]:
        clf = loaded.classifier
        metadata = dict(clf.metadata)
        trained_at = metadata.pop("created_at", None)
        metrics = metadata.pop("metrics", {})
        features = [
            {
                "name": name,
                "unit": unit or None,
                "mean": mean,
                "std": std,
                "min": lo,
                "max": hi,
                "lower_limit": low if np.isfinite(low) else None,
                "upper_limit": high if np.isfinite(high) else None,
            }
            for name, unit, mean, std, lo, hi, low, high in zip(
                clf.features,
                clf.units,
                clf.standardizer.mean.tolist(),
                clf.standardizer.scale.tolist(),
                clf.feature_min.tolist(),
                clf.feature_max.tolist(),
                clf.lower_limits.tolist(),
                clf.upper_limits.tolist(),
                strict=True,
            )
        ]
        detector = clf.novelty_model
        measured = metrics.get("test", {}).get("novelty", {}) if isinstance(metrics, dict) else {}
        return {
            "model_name": self.settings.model_name,
            "model_version": loaded.version,
            "artifact": str(loaded.path),
            "artifact_problem": self.runtime.problem,
            "loaded_at": loaded.loaded_at.isoformat(timespec="seconds"),
            "features": features,
            "classes": list(clf.classes),
            "calibration_temperature": clf.temperature,
            "costs": {
                truth: dict(zip(clf.classes, row, strict=True))
                for truth, row in zip(clf.classes, clf.costs.tolist(), strict=True)
            },
            "novelty": {
                "method": detector.method,
                "threshold": detector.threshold,
                "target_false_alarm_rate": detector.target_rate,
                "false_alarm_rate": measured.get("false_alarm_rate"),
            },
            "trained_at": trained_at if isinstance(trained_at, str) else None,
            "metrics": metrics if isinstance(metrics, dict) else {"value": metrics},
            "training": metadata,
        }


def _compared(counts: list[float], reference: np.ndarray[Any, Any]) -> dict[str, Any]:
    total = sum(counts)
    observed = model.drift.shares(counts)
    return {"readings": total, "psi": model.psi(observed, reference) if total else None}


def _shares(counts: list[float], reference: np.ndarray[Any, Any]) -> list[dict[str, float]]:
    observed = model.drift.shares(counts).tolist()
    return [
        {"count": c, "observed": o, "reference": r}
        for c, o, r in zip(counts, observed, reference.tolist(), strict=True)
    ]
