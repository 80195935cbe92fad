"""Request and response schemas: derived from the loaded model's features and classes, and the API's fixed ones."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import attrgetter, itemgetter
from typing import Annotated, Any, Literal, Union

import numpy as np
import orjson
from numpy.typing import NDArray
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    create_model,
)

from service.errors import MalformedRequest, ValidationFailed

ID_MAX_LENGTH = 128
# Keys of the request bodies themselves; a model with a feature of that name cannot be served.
RESERVED_NAMES = frozenset({"id", "readings"})

# Strict: a JSON string, boolean or null is not a number. NaN and Infinity literals are parsed,
# then refused as non-finite.
_STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
_PROBABILITY = Annotated[float, Field(ge=0.0, le=1.0)]


class SchemaError(ValueError):
    """The loaded model cannot be expressed as this API's request schema."""


def physical_bounds(feature: str, unit: str) -> dict[str, float]:
    """Lower bounds below which a known default feature cannot physically be, given its unit."""
    if feature == "temperature":
        absolute_zero = {"°C": -273.15, "": -273.15, "C": -273.15, "K": 0.0, "°F": -459.67}
        if unit in absolute_zero:
            return {"ge": absolute_zero[unit]}
    if feature == "vibration":
        # An amplitude (RMS velocity, displacement or acceleration) is never negative.
        return {"ge": 0.0}
    return {}


def _no_default(schema: dict[str, Any]) -> None:
    # An optional field that is never null: its schema must not claim `default: null`.
    schema.pop("default", None)


def _describe(feature: str, unit: str, bounds: dict[str, float]) -> str:
    text = f"Reading of `{feature}`" + (f" in {unit}" if unit else "")
    if "ge" in bounds:
        text += f"; physically at least {bounds['ge']:g}"
    return text + "."


@dataclass(frozen=True)
class SingleRequest:
    """One reading: its feature values in model order and the caller's optional id."""

    values: tuple[float, ...]
    id: str | None


@dataclass(frozen=True)
class BatchRequest:
    """Readings ``X`` of shape (n_readings, n_features) and their ids (None where not given)."""

    X: NDArray[np.float64]
    ids: list[str | None] | None


def _kind(value: Any) -> str:
    return "batch" if isinstance(value, dict) and "readings" in value else "reading"


class RequestSchemas:
    """The pydantic models of `POST /classify` for one loaded model, and the parser using them.

    A reading is an object whose keys are exactly the model's feature names (plus an optional
    `id`); a batch is `{"readings": [reading, ...]}` with 1 to ``max_batch`` readings.
    """

    def __init__(
        self,
        features: Sequence[str],
        units: Sequence[str],
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
        for i, (feature, unit) in enumerate(zip(features, units, strict=True)):
            bounds = physical_bounds(feature, unit)
            description = _describe(feature, unit, bounds)
            fields[f"f{i}"] = (
                Annotated[float, Field(alias=feature, description=description, **bounds)],
                ...,
            )
        fields["id"] = (
            Annotated[
                str,
                Field(
                    max_length=ID_MAX_LENGTH,
                    description="Caller's identifier, echoed back in the answer.",
                    # Optional but never null: leave `default: null` out of the schema.
                    json_schema_extra=_no_default,
                ),
            ],
            None,
        )
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
        # Decides by the parsed document, so it is right even where the byte test below is not.
        self._either: TypeAdapter[Any] = TypeAdapter(
            Annotated[
                Union[Annotated[self.reading, Tag("reading")], Annotated[self.batch, Tag("batch")]],  # noqa: UP007
                Discriminator(_kind),
            ]
        )
        getter = attrgetter(*(f"f{i}" for i in range(len(self.features))))
        self._values = getter if len(self.features) > 1 else (lambda r: (getter(r),))
        keys = itemgetter(*self.features)
        self._keys = keys if len(self.features) > 1 else (lambda r: (keys(r),))
        self._lower_bounds = [
            (j, physical_bounds(feature, unit)["ge"])
            for j, (feature, unit) in enumerate(zip(features, units, strict=True))
            if "ge" in physical_bounds(feature, unit)
        ]

    def parse(self, body: bytes) -> SingleRequest | BatchRequest:
        """Validate a `/classify` body; raises MalformedRequest (400) or ValidationFailed (422)."""
        # The bytes say which schema applies in all but contrived cases (an id or an unknown key
        # spelling "readings", escaped keys); anything that fails is re-judged exactly below.
        if b'"readings"' in body:
            batch = self.parse_plain_batch(body)
            if batch is not None:
                return batch
            schema = self.batch
        else:
            schema = self.reading
        try:
            parsed = schema.model_validate_json(body)
        except ValidationError:
            parsed = self._parse_exactly(body)
        if isinstance(parsed, self.batch):
            readings = parsed.readings  # type: ignore[attr-defined]
            n = len(readings)
            X = np.fromiter(
                chain.from_iterable(map(self._values, readings)),
                dtype=np.float64,
                count=n * len(self.features),
            ).reshape(n, len(self.features))
            ids = [r.id for r in readings] if b'"id"' in body else None
            return BatchRequest(X=X, ids=ids)
        return SingleRequest(values=self._values(parsed), id=parsed.id)  # type: ignore[attr-defined]

    def parse_plain_batch(self, body: bytes) -> BatchRequest | None:
        """A batch checked in bulk (orjson, then set and numpy tests), or None if not vouched for.

        Validating a batch through the pydantic model builds one object per reading, about half
        a microsecond each; checking the decoded lists in bulk costs about a third of that. This
        only ever accepts what the pydantic `ReadingBatch` accepts, with the same values (the
        tests compare the two on generated documents); everything else, errors included, goes
        to pydantic, whose verdict and messages are authoritative.
        """
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
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
        ids: list[Any] | None = None
        given = 0
        if b'"id"' in body:
            ids = [reading.get("id") for reading in readings]
            given = n - ids.count(None)
            if not all(type(i) is str and len(i) <= ID_MAX_LENGTH for i in ids if i is not None):
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
        if not np.isfinite(X).all():
            return None
        for j, lowest in self._lower_bounds:
            if not (X[:, j] >= lowest).all():
                return None
        return BatchRequest(X=X, ids=ids)

    def _parse_exactly(self, body: bytes) -> BaseModel:
        try:
            parsed: BaseModel = self._either.validate_json(body)
            return parsed
        except ValidationError as exc:
            errors = exc.errors(include_url=False, include_context=False, include_input=False)
        if errors[0]["type"] == "json_invalid":
            message = errors[0]["msg"]
            if "recursion limit" in message:
                raise MalformedRequest(
                    f"JSON nesting is deeper than the limit of {self.max_json_depth} levels"
                    " (SENSOR_MAX_JSON_DEPTH)"
                ) from None
            raise MalformedRequest(f"malformed JSON: {message.removeprefix('Invalid JSON: ')}")
        if nesting_exceeds(body, self.max_json_depth):
            raise MalformedRequest(
                f"JSON nesting is deeper than the limit of {self.max_json_depth} levels"
                " (SENSOR_MAX_JSON_DEPTH)"
            )
        raise ValidationFailed(
            f"{len(errors)} validation error{'s' if len(errors) > 1 else ''} in the request body",
            details=[_detail(error) for error in errors],
        )


def _detail(error: Any) -> dict[str, Any]:
    # The first location element is the union's tag ("reading" / "batch"), not part of the body.
    loc = list(error["loc"][1:]) if error["loc"] else []
    message = error["msg"]
    if error["type"] == "extra_forbidden":
        message = "unknown field"
    elif error["type"] == "missing":
        message = "field required"
    return {"loc": loc, "message": message}


_JSON_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_INNERMOST = re.compile(rb"\[\]|\{\}")


def nesting_exceeds(document: bytes, limit: int) -> bool:
    """Whether JSON ``document`` nests arrays/objects deeper than ``limit``.

    Strings are blanked, everything but brackets dropped, then innermost pairs removed one level
    per pass: regex passes in C, never more than ``limit`` + 1 of them. Brackets a truncated
    document leaves open count as levels too.
    """
    brackets = _JSON_STRING.sub(b"", document).translate(None, _NOT_BRACKETS)
    for removed in range(limit + 1):
        if not brackets:
            return False
        reduced = _INNERMOST.sub(b"", brackets)
        if len(reduced) == len(brackets):
            return removed + reduced.count(b"[") + reduced.count(b"{") > limit
        brackets = reduced
    return True


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
        "label": (label, Field(description="The most probable class.")),
        "confidence": (_PROBABILITY, Field(description="Calibrated probability of `label`.")),
        "probabilities": (probabilities, ...),
        "in_training_range": (
            bool,
            Field(description="False when any feature lies outside the range seen in training."),
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


class ModelInfo(BaseModel):
    """What model is answering, what it expects, how it was trained and how well it did."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_name: str
    model_version: str
    artifact: str = Field(description="Path of the artifact file that was loaded.")
    loaded_at: str = Field(description="When this worker loaded it (ISO 8601, UTC).")
    features: list[FeatureInfo]
    classes: list[str]
    calibration_temperature: float
    trained_at: str | None = Field(description="When training finished (ISO 8601).")
    metrics: dict[str, Any] = Field(description="Metrics measured by training (held-out data).")
    training: dict[str, Any] = Field(
        description="How it was trained: configuration, data, libraries."
    )
