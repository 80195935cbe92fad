"""Open Inference Protocol (KServe V2) REST endpoints beside `/classify`, on the same runtime."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
from flask import Blueprint, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from service.api import body_deadline, read_json_body
from service.errors import MalformedRequest, NotFound, json_response
from service.runtime import LoadedModel, ModelRuntime
from service.schemas import nesting_exceeds
from service.settings import Settings

PLATFORM = "numpy-mlp"
INPUT_NAME = "readings"
# The protocol names its element types; these are the ones a reading can arrive as.
INPUT_DATATYPES = ("FP32", "FP64")

_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_Parameters = dict[str, Any]


OUTPUT_NAMES = ("probabilities", "label")


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["probabilities", "label"]
    parameters: _Parameters | None = None


@lru_cache(maxsize=8)
def inference_request_model(n_features: int, max_batch: int) -> type[BaseModel]:
    """The inference request for a model with ``n_features`` inputs, as tight as JSON Schema allows.

    One input, FP32 (or FP64), shape [N, n_features] with 1 <= N <= ``max_batch``; ``data`` flat in
    row-major order or nested as rows. Only "data holds N rows" is left to the handler: JSON
    Schema cannot tie an array's length to another field.
    """
    row = Annotated[list[_Number], Field(min_length=n_features, max_length=n_features)]
    request_input = create_model(
        "RequestInput",
        __config__=ConfigDict(extra="forbid", title="RequestInput"),
        __doc__=f"One input tensor of shape [N, {n_features}]: data flat (row-major) or as rows.",
        name=(str, ...),
        shape=(tuple[Annotated[int, Field(ge=1, le=max_batch)], Literal[n_features]], ...),
        datatype=(Literal[INPUT_DATATYPES], ...),  # type: ignore[valid-type]
        parameters=(_Parameters | None, None),
        data=(
            Annotated[list[_Number], Field(min_length=1, max_length=max_batch * n_features)]
            | Annotated[list[row], Field(min_length=1, max_length=max_batch)],  # type: ignore[valid-type]
            ...,
        ),
    )
    return create_model(
        "InferenceRequest",
        __config__=ConfigDict(extra="forbid", title="InferenceRequest"),
        __doc__="`POST /v2/models/{name}/infer`: one FP32 input of shape [N, n_features].",
        id=(str | None, None),
        parameters=(_Parameters | None, None),
        inputs=(Annotated[list[request_input], Field(min_length=1, max_length=1)], ...),  # type: ignore[valid-type]
        outputs=(list[RequestOutput] | None, None),
    )


class ResponseOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Literal["probabilities", "label"]
    shape: list[int]
    datatype: Literal["FP32", "BYTES"]
    data: list[float] | list[str]


class InferenceResponse(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())
    model_name: str
    model_version: str
    id: str | None = None
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class Live(BaseModel):
    live: bool


class Ready(BaseModel):
    ready: bool


class ModelReady(BaseModel):
    name: str
    ready: bool


class V2Error(BaseModel):
    """The protocol's error body."""

    error: str


def _model_metadata(name: str, loaded: LoadedModel) -> dict[str, Any]:
    n_features, n_classes = len(loaded.requests.features), len(loaded.classes)
    return {
        "name": name,
        "versions": [loaded.version],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, n_features]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, n_classes]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
        ],
    }


def _readings(request: Any, n_features: int) -> np.ndarray[Any, Any]:
    """The (validated) input tensor as float64 readings (N, n_features); 400 if data and N disagree."""
    tensor = request.inputs[0]
    n = tensor.shape[0]
    data = tensor.data
    if isinstance(data[0], list):
        if len(data) != n:
            raise MalformedRequest(
                f"input {tensor.name!r}: {len(data)} rows for shape [{n}, {n_features}]"
            )
        return np.array(data, dtype=np.float64)
    if len(data) != n * n_features:
        raise MalformedRequest(
            f"input {tensor.name!r}: {len(data)} values for shape [{n}, {n_features}]"
            f" ({n * n_features} expected)"
        )
    return np.array(data, dtype=np.float64).reshape(n, n_features)


def create_v2(runtime: ModelRuntime, settings: Settings) -> Blueprint:
    """The protocol's health, metadata and inference endpoints for the one served model."""
    v2 = Blueprint("v2", __name__, url_prefix="/v2")
    deadline = body_deadline()
    name = settings.model_name

    def served(model_name: str) -> LoadedModel:
        if model_name != name:
            raise NotFound(f"unknown model {model_name!r}; this server serves {name!r}")
        return runtime.current()

    def ready_or_503() -> tuple[bool, str]:
        if runtime.loaded is not None:
            runtime.current()
        return runtime.self_test()

    @v2.get("/health/live")
    def live() -> Response:
        return json_response({"live": True})

    @v2.get("/health/ready")
    def ready() -> Response:
        ok, detail = ready_or_503()
        if ok:
            return json_response({"ready": True})
        return json_response({"error": f"not ready: {detail}"}, 503)

    @v2.get("/models/<model_name>")
    def metadata(model_name: str) -> Response:
        return json_response(_model_metadata(name, served(model_name)))

    @v2.get("/models/<model_name>/ready")
    def model_ready(model_name: str) -> Response:
        served(model_name)
        ok, detail = ready_or_503()
        if ok:
            return json_response({"name": name, "ready": True})
        return json_response({"error": f"not ready: {detail}"}, 503)

    @v2.post("/models/<model_name>/infer")
    def infer(model_name: str) -> Response:
        loaded = served(model_name)
        body = read_json_body(settings, deadline)
        if nesting_exceeds(body, settings.max_json_depth):
            raise MalformedRequest(
                f"JSON nesting is deeper than the limit of {settings.max_json_depth} levels"
                " (SENSOR_MAX_JSON_DEPTH)"
            )
        n_features = len(loaded.requests.features)
        try:
            request: Any = inference_request_model(
                n_features, settings.max_batch
            ).model_validate_json(body)
        except ValidationError as exc:
            raise MalformedRequest(_v2_message(exc)) from None
        wanted = list(OUTPUT_NAMES)
        if request.outputs is not None:
            wanted = [output.name for output in request.outputs]
        X = _readings(request, n_features)
        P = runtime.probabilities(loaded, X)
        n = X.shape[0]
        outputs = []
        for output in wanted:
            if output == "probabilities":
                outputs.append(
                    {
                        "name": "probabilities",
                        "shape": [n, len(loaded.classes)],
                        "datatype": "FP32",
                        # orjson writes float32 arrays with float32's shortest repr.
                        "data": P.astype(np.float32).ravel(),
                    }
                )
            else:
                labels = np.asarray(loaded.classes)[P.argmax(axis=1)].tolist()
                outputs.append({"name": "label", "shape": [n], "datatype": "BYTES", "data": labels})
        answer: dict[str, Any] = {
            "model_name": name,
            "model_version": loaded.version,
            "outputs": outputs,
        }
        if request.id is not None:
            answer["id"] = request.id
        return json_response(answer)

    return v2


def _v2_message(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    if first["type"] == "json_invalid":
        return f"malformed JSON: {first['msg'].removeprefix('Invalid JSON: ')}"
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid inference request at {where}: {first['msg']}{more}"
