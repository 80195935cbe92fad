"""The Open Inference Protocol's (KServe V2) messages for this model, and its tensors to readings and back."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, create_model

from service.body import utf8_text
from service.errors import MalformedRequest

PLATFORM = "numpy-mlp"
INPUT_NAME = "readings"
# The protocol names its element types; these are the ones a reading can arrive as.
INPUT_DATATYPES = ("FP32", "FP64")
OUTPUT_NAMES = ("probabilities", "label", "novel")

_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]
_Parameters = dict[str, Any]


OutputName = Literal["probabilities", "label", "novel"]


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: OutputName
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
        id=(Annotated[str, AfterValidator(utf8_text)] | None, None),
        parameters=(_Parameters | None, None),
        inputs=(Annotated[list[request_input], Field(min_length=1, max_length=1)], ...),  # type: ignore[valid-type]
        outputs=(list[RequestOutput] | None, None),
    )


class ResponseOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: OutputName
    shape: list[int]
    datatype: Literal["FP32", "BYTES", "BOOL"]
    data: list[float] | list[str] | list[bool]


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


def model_metadata(name: str, version: str, n_features: int, n_classes: int) -> dict[str, Any]:
    """`GET /v2/models/{name}`: the one input and the outputs, with their shapes."""
    return {
        "name": name,
        "versions": [version],
        "platform": PLATFORM,
        "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, n_features]}],
        "outputs": [
            {"name": "probabilities", "datatype": "FP32", "shape": [-1, n_classes]},
            {"name": "label", "datatype": "BYTES", "shape": [-1]},
            {"name": "novel", "datatype": "BOOL", "shape": [-1]},
        ],
    }


def parse_inference_request(
    document: Any, n_features: int, max_batch: int
) -> tuple[Any, np.ndarray[Any, Any]]:
    """The validated request and its readings (N, n_features) as float64; raises 400."""
    try:
        request: Any = inference_request_model(n_features, max_batch).model_validate(document)
    except ValidationError as exc:
        raise MalformedRequest(_message(exc)) from None
    tensor = request.inputs[0]
    n = tensor.shape[0]
    data = tensor.data
    if isinstance(data[0], list):
        if len(data) != n:
            raise MalformedRequest(
                f"input {tensor.name!r}: {len(data)} rows for shape [{n}, {n_features}]"
            )
        return request, np.array(data, dtype=np.float64)
    if len(data) != n * n_features:
        raise MalformedRequest(
            f"input {tensor.name!r}: {len(data)} values for shape [{n}, {n_features}]"
            f" ({n * n_features} expected)"
        )
    return request, np.array(data, dtype=np.float64).reshape(n, n_features)


def outputs(
    wanted: list[str], P: np.ndarray[Any, Any], labels: list[str], novel: np.ndarray[Any, Any]
) -> list[dict[str, Any]]:
    """The requested output tensors (all of ``OUTPUT_NAMES`` by default), in request order."""
    n, k = P.shape
    tensors = {
        # orjson writes float32 arrays with float32's shortest repr.
        "probabilities": lambda: {
            "name": "probabilities",
            "shape": [n, k],
            "datatype": "FP32",
            "data": P.astype(np.float32).ravel(),
        },
        "label": lambda: {"name": "label", "shape": [n], "datatype": "BYTES", "data": labels},
        "novel": lambda: {
            "name": "novel",
            "shape": [n],
            "datatype": "BOOL",
            "data": novel.tolist(),
        },
    }
    return [tensors[name]() for name in wanted]


def _message(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid inference request at {where}: {first['msg']}{more}"
