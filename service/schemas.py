"""Request and response schemas: derived from the loaded model's features and classes, and the API's fixed ones."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
)

from service.body import nesting_exceeds, printable, too_deep, utf8_text
from service.errors import ValidationFailed

ID_MAX_LENGTH = 128
# Keys of the request bodies themselves; a model with a feature of that name cannot be served.
RESERVED_NAMES = frozenset({"id", "readings"})

# Strict: a JSON string, boolean or null is not a number. NaN and Infinity literals are parsed,
# then refused as non-finite.
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
_PROBABILITY = Annotated[float, Field(ge=0.0, le=1.0)]


class SchemaError(ValueError):
    """The loaded model cannot be expressed as this API's request schema."""


def _no_default(schema: dict[str, Any]) -> None:
    # An optional field that is never null: its schema must not claim `default: null`.
    schema.pop("default", None)


def _bounds(low: float, high: float) -> dict[str, float]:
    return {key: value for key, value in (("ge", low), ("le", high)) if math.isfinite(value)}


def code(text: str) -> str:
    """``text`` as a CommonMark code span, for the artifact's names in API descriptions.

    The names come from a user's CSV header; Swagger UI renders descriptions as Markdown, so a
    name like `<img src=...>` would otherwise become HTML on `/docs`. A span shows any text
    literally: its fence is longer than any run of backticks inside, and line breaks are
    written as ``\\n``, since a blank line would end the span.
    """
    text = text.replace("\r", "\\r").replace("\n", "\\n")
    fence = "`" * (max(map(len, re.findall("`+", text)), default=0) + 1)
    pad = " " if text[:1] in ("`", " ") or text[-1:] in ("`", " ") else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _describe(feature: str, unit: str, bounds: dict[str, float]) -> str:
    text = f"Reading of {code(feature)}" + (f" in {code(unit)}" if unit else "")
    if bounds:
        sides = [
            f"at least {bounds['ge']:g}" if "ge" in bounds else "",
            f"at most {bounds['le']:g}" if "le" in bounds else "",
        ]
        text += "; physically " + " and ".join(side for side in sides if side)
    return text + "."


RequestId = Annotated[
    str,
    Field(
        max_length=ID_MAX_LENGTH,
        description="Caller's identifier, echoed back in the answer.",
        # Optional but never null: leave `default: null` out of the schema.
        json_schema_extra=_no_default,
    ),
    AfterValidator(utf8_text),
]


@dataclass(frozen=True)
class SingleRequest:
    """One reading: its feature values in model order and the caller's optional id."""

    values: tuple[float, ...]
    id: str | None


@dataclass(frozen=True)
class BatchRequest:
    """Readings ``X`` of shape (n_readings, n_features) and their ids (None when no reading has one)."""

    X: NDArray[np.float64]
    ids: list[str | None] | None


def is_batch(document: Any) -> bool:
    """Whether a parsed `/classify` body is a batch (an object with `readings`) or one reading."""
    return isinstance(document, dict) and "readings" in document


class RequestSchemas:
    """The pydantic models of `POST /classify` for one loaded model, and the validator using them.

    A reading is an object whose keys are exactly the model's feature names (plus an optional
    `id`), each value a finite number within the feature's physical limits (from the artifact);
    a batch is `{"readings": [reading, ...]}` with 1 to ``max_batch`` readings.
    """

    def __init__(
        self,
        features: Sequence[str],
        units: Sequence[str],
        limits: Sequence[tuple[float, float]],
        max_batch: int,
        max_json_depth: int,
    ) -> None:
        clash = RESERVED_NAMES.intersection(features)
        if clash:
            raise SchemaError(
                f"feature name {sorted(clash)[0]!r} is reserved by the request format"
                " (`id`, `readings`); rename the column and retrain"
            )
        self.features = tuple(features)
        self.max_batch = max_batch
        self.max_json_depth = max_json_depth
        # Features become fields under their own name (the alias); the attribute names are
        # positional so that any column name works, even one that is no Python identifier.
        fields: dict[str, Any] = {}
        for i, (feature, unit, (low, high)) in enumerate(zip(features, units, limits, strict=True)):
            bounds = _bounds(low, high)
            fields[f"f{i}"] = (
                Annotated[
                    float,
                    Field(alias=feature, description=_describe(feature, unit, bounds), **bounds),
                ],
                ...,
            )
        fields["id"] = (RequestId, None)
        self.reading: type[BaseModel] = create_model(
            "Reading",
            __config__=ConfigDict(_STRICT, title="Reading"),
            __doc__="One sensor reading: every feature of the model, plus an optional `id`.",
            **fields,
        )
        self.batch: type[BaseModel] = create_model(
            "ReadingBatch",
            __config__=ConfigDict(_STRICT, title="ReadingBatch"),
            __doc__=f"Between 1 and {max_batch} readings, answered in order.",
            readings=(
                Annotated[list[self.reading], Field(min_length=1, max_length=max_batch)],  # type: ignore[name-defined]
                ...,
            ),
        )
        getter = attrgetter(*(f"f{i}" for i in range(len(self.features))))
        self._values = getter if len(self.features) > 1 else (lambda r: (getter(r),))
        keys = itemgetter(*self.features)
        self._keys = keys if len(self.features) > 1 else (lambda r: (keys(r),))
        self._low = np.array([low for low, _ in limits], dtype=np.float64)
        self._high = np.array([high for _, high in limits], dtype=np.float64)

    def validate(self, document: Any) -> SingleRequest | BatchRequest:
        """Validate a parsed `/classify` body; raises ValidationFailed (422) or MalformedRequest.

        A batch longer than ``max_batch`` is refused from its length alone, before any of its
        readings is looked at.
        """
        if is_batch(document):
            readings = document["readings"]
            if isinstance(readings, list) and len(readings) > self.max_batch:
                raise ValidationFailed(
                    f"the batch holds {len(readings)} readings; at most {self.max_batch} are"
                    " accepted (SENSOR_MAX_BATCH)",
                    details=[
                        {"loc": ["readings"], "message": f"at most {self.max_batch} readings"}
                    ],
                )
            fast = self.bulk_batch(document)
            if fast is not None:
                return fast
            batch = self._validated(self.batch, document)
            rows = batch.readings  # type: ignore[attr-defined]
            n = len(rows)
            X = np.fromiter(
                chain.from_iterable(map(self._values, rows)),
                dtype=np.float64,
                count=n * len(self.features),
            ).reshape(n, len(self.features))
            ids = [r.id for r in rows]
            return BatchRequest(X=X, ids=None if ids.count(None) == n else ids)
        reading = self._validated(self.reading, document)
        return SingleRequest(values=self._values(reading), id=reading.id)  # type: ignore[attr-defined]

    def bulk_batch(self, document: Any) -> BatchRequest | None:
        """A batch checked in bulk (set and numpy tests), or None if not vouched for.

        Validating a batch through the pydantic model builds one object per reading; checking
        the decoded lists in bulk is faster (measured with timeit on readings with ids, 2 CPUs,
        commit of this note: 36 µs against 68 µs for 100 readings, 2.8 ms against 9.7 ms for
        10,000, pydantic's figure not yet counting the array built from its objects). This
        only ever accepts what the pydantic `ReadingBatch` accepts, with the same values (the
        tests compare the two on generated documents); everything else, errors included, goes
        to pydantic, whose verdict and messages are authoritative.
        """
        if type(document) is not dict or len(document) != 1:
            return None
        readings = document.get("readings")
        if type(readings) is not list or not 1 <= len(readings) <= self.max_batch:
            return None
        if set(map(type, readings)) != {dict}:
            return None
        try:
            rows = list(map(self._keys, readings))
        except KeyError:
            return None
        n, f = len(readings), len(self.features)
        ids = [reading.get("id") for reading in readings]
        given = n - ids.count(None)
        # Non-ASCII ids go to pydantic, which also refuses lone surrogates.
        if given and not all(
            type(i) is str and len(i) <= ID_MAX_LENGTH and i.isascii() for i in ids if i is not None
        ):
            return None
        # Every reading has all features (above); with the ids counted, equal totals mean no
        # reading has any other key.
        if sum(map(len, readings)) != n * f + given:
            return None
        # Exactly int and float: bool is a subclass of int, and JSON true is not a number.
        if not set(map(type, chain.from_iterable(rows))) <= {float, int}:
            return None
        try:
            X = np.fromiter(chain.from_iterable(rows), dtype=np.float64, count=n * f)
        except OverflowError:  # an integer beyond float range
            return None
        X = X.reshape(n, f)
        if not np.isfinite(X).all() or self.outside_limits(X) is not None:
            return None
        return BatchRequest(X=X, ids=ids if given else None)

    def outside_limits(self, X: NDArray[np.float64]) -> str | None:
        """None when every finite reading in ``X`` (model order) is within its features'
        physical limits; else which reading and feature is the first that is not."""
        inside = (self._low <= X) & (self._high >= X)
        if inside.all():
            return None
        row, column = (int(i) for i in np.argwhere(~inside)[0])
        value, low, high = X[row, column], self._low[column], self._high[column]
        side = (
            f"below its lower limit {low:g}" if value < low else f"above its upper limit {high:g}"
        )
        return f"row {row}: {self.features[column]!r} is {value:g}, {side}"

    def _validated(self, schema: type[BaseModel], document: Any) -> BaseModel:
        try:
            return schema.model_validate(document)
        except ValidationError as exc:
            if nesting_exceeds(document, self.max_json_depth):
                raise too_deep(self.max_json_depth) from None
            raise validation_failed(exc) from None


def validation_failed(exc: ValidationError) -> ValidationFailed:
    """The 422 for pydantic's errors, each located in the body."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    return ValidationFailed(
        f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} in the request body",
        details=[_detail(error) for error in errors],
    )


def _detail(error: Any) -> dict[str, Any]:
    loc = [printable(part) if isinstance(part, str) else part for part in error["loc"]]
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "field required"
    return {"loc": loc, "message": message}


# --- response schemas: what the service answers, for the OpenAPI document and the tests ---------


@dataclass(frozen=True)
class ResponseSchemas:
    """Models of the answers for one loaded model (classes become an enum and named fields)."""

    probabilities: type[BaseModel]
    classification: type[BaseModel]
    answer: type[BaseModel]
    batch_answer: type[BaseModel]


def response_schemas(classes: Sequence[str]) -> ResponseSchemas:
    """Build the answer models for a model with ``classes`` (in output order)."""
    forbid = ConfigDict(extra="forbid")
    probabilities = create_model(
        "Probabilities",
        __config__=ConfigDict(forbid, title="Probabilities"),
        __doc__="Calibrated probability of every class; they sum to 1.",
        **{
            f"c{i}": (Annotated[float, Field(alias=name, ge=0.0, le=1.0)], ...)
            for i, name in enumerate(classes)
        },
    )
    label = Literal[tuple(classes)]  # type: ignore[valid-type]
    common: dict[str, Any] = {
        "label": (
            label,
            Field(
                description="The answer: the class of least expected cost under the model's cost"
                " matrix (see `GET /model`); with no costs set, the most probable class."
            ),
        ),
        "confidence": (_PROBABILITY, Field(description="Calibrated probability of `label`.")),
        "probabilities": (probabilities, ...),
        "in_training_range": (
            bool,
            Field(description="False when any feature lies outside the range seen in training."),
        ),
        "novel": (
            bool,
            Field(
                description="True when the reading lies farther from every class seen in training"
                " than held-out readings do: the answer is then an extrapolation. Exactly when"
                " `novelty` > 1."
            ),
        ),
        "novelty": (
            Annotated[float, Field(ge=0.0)],
            Field(
                description="How unusual the reading is: its distance to the nearest class over"
                " the novelty threshold (above 1: novel)."
            ),
        ),
    }
    optional_id = (
        Annotated[
            str, Field(max_length=ID_MAX_LENGTH, description="The reading's `id`, if given.")
        ],
        Field(default=None, json_schema_extra=_no_default),
    )
    version = (str, Field(description="Version of the model that answered."))
    classification = create_model(
        "Classification",
        __config__=ConfigDict(forbid, title="Classification"),
        __doc__="The answer for one reading of a batch.",
        **common,
        id=optional_id,
    )
    answer = create_model(
        "ClassificationAnswer",
        __config__=ConfigDict(forbid, title="ClassificationAnswer"),
        __doc__="The answer to one reading.",
        **common,
        id=optional_id,
        model_version=version,
    )
    batch_answer = create_model(
        "BatchAnswer",
        __config__=ConfigDict(forbid, title="BatchAnswer"),
        __doc__="The answers to a batch, in request order.",
        model_version=version,
        results=(list[classification], ...),  # type: ignore[valid-type]
    )
    return ResponseSchemas(probabilities, classification, answer, batch_answer)


class ErrorDetail(BaseModel):
    """Where in the request body a problem is, and what it is."""

    model_config = ConfigDict(extra="forbid")
    loc: list[str | int] = Field(
        description='Path into the body, e.g. `["readings", 3, "temperature"]`.'
    )
    message: str


class ErrorBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: int = Field(ge=400, le=599, description="The HTTP status, repeated.")
    message: str
    details: list[ErrorDetail] = Field(description="Problems inside the body (422), else empty.")


class ErrorResponse(BaseModel):
    """The one error envelope of every error status."""

    model_config = ConfigDict(extra="forbid")
    error: ErrorBody


class Health(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: Literal["ok", "unavailable"]
    model_version: str | None = Field(default=None, description="Model that is answering.")
    detail: str | None = Field(default=None, description="Why the service is not ready.")


class FeatureInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    unit: str | None = Field(description="Unit of the readings, null when unknown.")
    mean: float = Field(description="Training mean.")
    std: float = Field(description="Training standard deviation (1 for a constant feature).")
    min: float = Field(description="Smallest value seen in training.")
    max: float = Field(description="Largest value seen in training.")
    lower_limit: float | None = Field(
        description="Lowest value the feature can physically take (null: no limit); a reading"
        " below it is refused with 422."
    )
    upper_limit: float | None = Field(
        description="Highest value the feature can physically take (null: no limit)."
    )


class NoveltyInfo(BaseModel):
    """How the model tells a novel reading, and how often it says so of ordinary ones."""

    model_config = ConfigDict(extra="forbid")
    method: str = Field(description="The detector, e.g. `class_mahalanobis`.")
    threshold: float = Field(description="Distance above which a reading is novel.")
    target_false_alarm_rate: float = Field(
        description="Share of held-out readings the threshold was chosen to flag."
    )
    false_alarm_rate: float | None = Field(
        description="Share of the test readings flagged novel, measured by training."
    )


class ModelInfo(BaseModel):
    """What model is answering, what it expects, how it was trained and how well it did."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_name: str
    model_version: str
    artifact: str = Field(description="Path of the artifact file that was loaded.")
    artifact_problem: str | None = Field(
        description="Why SENSOR_MODEL_PATH cannot be served right now (missing, unreadable or"
        " refused), while this last good model answers; null when it is the one served."
    )
    loaded_at: str = Field(description="When this worker loaded it (ISO 8601, UTC).")
    features: list[FeatureInfo]
    classes: list[str]
    calibration_temperature: float
    costs: dict[str, dict[str, float]] = Field(
        description="What answering each class (inner key) costs when the truth is each class"
        " (outer key); the answer is the label of least expected cost."
    )
    novelty: NoveltyInfo
    trained_at: str | None = Field(description="When training finished (ISO 8601).")
    metrics: dict[str, Any] = Field(description="Metrics measured by training (held-out data).")
    training: dict[str, Any] = Field(
        description="How it was trained: configuration, data, libraries."
    )


class DriftBin(BaseModel):
    model_config = ConfigDict(extra="forbid")
    bin: str = Field(description="The `bin` label of `sensor_feature_bin_readings_total`.")
    lower: float | None = Field(description="Lowest value in the bin (null: below training).")
    upper: float | None = Field(
        description="The bin holds values below this (null: above the training maximum)."
    )
    count: float = Field(description="Readings counted in the bin.")
    observed: float = Field(description="Share of the counted readings in the bin.")
    reference: float = Field(description="Share of the training readings in the bin.")


class FeatureDrift(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    readings: float = Field(
        description="Readings this model version answered (a rollback to it resumes them)."
    )
    psi: float | None = Field(
        description="Population stability index of the observed against the reference shares"
        " (null before any reading)."
    )
    bins: list[DriftBin]


class LabelShare(BaseModel):
    model_config = ConfigDict(extra="forbid")
    label: str
    count: float = Field(description="Readings answered with this label.")
    observed: float = Field(description="Share of the counted readings answered with it.")
    reference: float = Field(description="Share of validation readings answered with it.")


class LabelDrift(BaseModel):
    model_config = ConfigDict(extra="forbid")
    readings: float
    psi: float | None = Field(description="PSI of the predicted labels against the reference.")
    classes: list[LabelShare]


class DriftReport(BaseModel):
    """Live readings against the model's training reference, summed over every worker."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_version: str
    epsilon: float = Field(description="Floor of every share in PSI (an empty bin counts as it).")
    novel_readings: float = Field(description="Readings flagged novel by this model version.")
    features: list[FeatureDrift]
    labels: LabelDrift
