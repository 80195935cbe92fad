"""The Open Inference Protocol's (KServe V2) messages for this model, and its tensors to readings and back."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version as distribution_version
from typing import Annotated, Any, Literal

import numpy as np
import orjson
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StrictBool,
    Tag,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)

from service.body import byte_count, nesting_exceeds, shown_number, too_deep, utf8_text
from service.errors import JSON, MalformedRequest

# `GET /v2` names the server by its distribution (pyproject.toml), at the installed version.
SERVER_NAME = "sensor-classifier"
# Only what is implemented: Triton's name for the binary tensor data extension.
EXTENSIONS = ("binary_tensor_data",)
PLATFORM = "numpy-mlp"
INPUT_NAME = "readings"
# The protocol names its element types; these are the ones a reading can arrive as, with their
# little-endian binary form (binary tensor data extension).
INPUT_ELEMENTS = {"FP32": np.dtype("<f4"), "FP64": np.dtype("<f8")}
INPUT_DATATYPES = tuple(INPUT_ELEMENTS)
OUTPUT_NAMES = ("probabilities", "label", "novel")
# The binary tensor data extension: the JSON header's length, when binary tensors follow it.
INFERENCE_HEADER = "Inference-Header-Content-Length"
BINARY = "application/octet-stream"

_Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


def _no_shared_memory(parameters: Any) -> Any:
    # Tensors in a shared memory region the client registered (Triton's extension): answering
    # them inline, or reading no input at all, would be a silent wrong answer.
    if isinstance(parameters, dict) and any(
        isinstance(key, str) and key.startswith("shared_memory") for key in parameters
    ):
        raise ValueError("the shared memory extension is not implemented (see GET /v2)")
    return parameters


_Parameters = Annotated[dict[str, Any], AfterValidator(_no_shared_memory)]


def _integer(value: Any) -> Any:
    # A shape's dimensions are integers in the protocol, not whatever converts to one.
    if type(value) is not int:
        raise ValueError("Input should be a valid integer")
    return value


def _data_layout(data: Any) -> str:
    # `data` is flat (row-major) or nested as rows; errors are located in the layout sent.
    return "rows" if isinstance(data, list) and data and isinstance(data[0], list) else "flat"


OutputName = Literal["probabilities", "label", "novel"]


class OutputParameters(BaseModel):
    """A requested output's parameters; others than these are allowed and ignored."""

    model_config = ConfigDict(extra="allow")
    binary_data: StrictBool | None = None
    """True: this output comes as binary tensor data after the JSON header; false: as JSON
    `data`. Absent: as the request's `binary_data_output` says."""
    classification: None = Field(
        default=None,
        description="Triton's classification extension, which is not implemented: any value but"
        " null (not asked, as if absent) is refused.",
    )

    _shared_memory = model_validator(mode="before")(_no_shared_memory)

    @field_validator("classification", mode="before")
    @classmethod
    def _not_implemented(cls, value: Any) -> None:
        # Ignoring a count would answer raw tensors to a client expecting top-k classes; null
        # asks for none, as a client writing its unset fields as null says it.
        if value is not None:
            raise ValueError("the classification extension is not implemented (see GET /v2)")
        return value


class RequestParameters(BaseModel):
    """The inference request's parameters; others than these are allowed and ignored."""

    model_config = ConfigDict(extra="allow")
    binary_data_output: StrictBool = False
    """True: every output without its own `binary_data` comes as binary tensor data."""


class RequestOutput(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: OutputName
    parameters: OutputParameters | None = None


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
        shape=(
            tuple[
                Annotated[int, Field(strict=True, ge=1, le=max_batch)],
                Annotated[Literal[n_features], BeforeValidator(_integer)],
            ],
            Field(description='JSON integers: 1.0, "1" and true are refused.'),
        ),
        datatype=(Literal[INPUT_DATATYPES], ...),  # type: ignore[valid-type]
        parameters=(_Parameters | None, None),
        # None only when the values come as binary tensor data (the binary_data_size parameter).
        data=(
            Annotated[
                Annotated[
                    list[_Number],
                    Field(min_length=1, max_length=max_batch * n_features),
                    Tag("flat"),
                ]
                | Annotated[list[row], Field(min_length=1, max_length=max_batch), Tag("rows")],  # type: ignore[valid-type]
                Discriminator(_data_layout),
            ]
            | None,
            Field(
                None,
                description="Required, unless the input's `binary_data_size` parameter says its"
                " values follow the JSON header as binary tensor data.",
            ),
        ),
    )
    return create_model(
        "InferenceRequest",
        __config__=ConfigDict(extra="forbid", title="InferenceRequest", protected_namespaces=()),
        __doc__="`POST /v2/models/{name}/infer`: one FP32 input of shape [N, n_features].",
        # As KServe's clients send it; when given, it must name the model of the path.
        model_name=(str | None, None),
        id=(Annotated[str, AfterValidator(utf8_text)] | None, None),
        parameters=(RequestParameters | None, None),
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


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


def server_metadata() -> dict[str, Any]:
    """`GET /v2`: the server's name, version and the protocol extensions it implements."""
    return {
        "name": SERVER_NAME,
        "version": distribution_version(SERVER_NAME),
        "extensions": list(EXTENSIONS),
    }


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


def split_body(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensor data after it, as ``header_length`` divides ``body``.

    ``header_length``: the request's `Inference-Header-Content-Length` (None: all JSON).
    """
    if header_length is None:
        return body, b""
    length = byte_count(INFERENCE_HEADER, header_length.strip(), len(body))
    if length is None:
        raise MalformedRequest(
            f"{INFERENCE_HEADER} is {shown_number(header_length.strip())}, but the body is only"
            f" {len(body)} bytes"
        )
    return body[:length], body[length:]


def _binary_data_size(tensor: Any, where: str) -> int | None:
    parameters = tensor.get("parameters") if isinstance(tensor, dict) else None
    if not isinstance(parameters, dict) or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if type(size) is not int or size < 0:
        raise MalformedRequest(
            f"invalid inference request at {where}.parameters.binary_data_size:"
            f" must be a non-negative integer, got {size!r}"
        )
    return size


def binary_inputs(document: Any, tensor_data: bytes) -> dict[int, np.ndarray[Any, Any]]:
    """The values of each input that has the `binary_data_size` parameter, by input index.

    Each takes that many bytes of ``tensor_data``, in input order: little-endian FP32 or FP64
    values, as float64. Their count is checked against the validated shape later
    (``parse_inference_request``), as is that every byte belongs to an input. Raises 400.
    """
    offset = 0
    values: dict[int, np.ndarray[Any, Any]] = {}
    inputs = document.get("inputs") if isinstance(document, dict) else None
    for i, tensor in enumerate(inputs if isinstance(inputs, list) else ()):
        where = f"inputs.{i}"
        size = _binary_data_size(tensor, where)
        if size is None:
            continue
        if "data" in tensor:
            raise MalformedRequest(
                f"invalid inference request at {where}: `data` and the binary_data_size"
                " parameter exclude each other"
            )
        datatype = tensor.get("datatype")
        element = INPUT_ELEMENTS.get(datatype) if isinstance(datatype, str) else None
        if element is None:
            raise MalformedRequest(
                f"invalid inference request at {where}.datatype: binary data must be"
                f" {' or '.join(INPUT_DATATYPES)}, got {datatype!r}"
            )
        if offset + size > len(tensor_data):
            raise MalformedRequest(
                f"input {tensor.get('name')!r}: binary_data_size {size} bytes at offset"
                f" {offset}, but {len(tensor_data)} bytes follow the JSON header"
            )
        if size % element.itemsize:
            raise MalformedRequest(
                f"input {tensor.get('name')!r}: binary_data_size {size} bytes is not a"
                f" whole number of {datatype} values ({element.itemsize} bytes each)"
            )
        raw = np.frombuffer(tensor_data, element, size // element.itemsize, offset)
        values[i] = raw.astype(np.float64)
        offset += size
    return values


def parse_inference_request(
    document: Any, n_features: int, max_batch: int, max_depth: int, tensor_data: bytes = b""
) -> tuple[Any, np.ndarray[Any, Any]]:
    """The validated request and its readings (N, n_features) as float64; raises 400.

    ``tensor_data``: the binary tensor data that followed the JSON header, if any. A request
    nesting deeper than ``max_depth`` levels is refused, as on `/classify`.
    """
    binary = binary_inputs(document, tensor_data)
    try:
        request: Any = inference_request_model(n_features, max_batch).model_validate(document)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        if first["loc"] == ("inputs",) and first["type"] == "too_long":
            # Most often one tensor per feature, as MLServer's pandas codec sends a table.
            raise MalformedRequest(
                f"invalid inference request at inputs: the model takes one input,"
                f" {INPUT_NAME!r} (FP32, shape [N, {n_features}]: each row a reading, its"
                f" features in the order GET /model lists them), not"
                f" {len(document['inputs'])}"
            ) from None
        raise MalformedRequest(_message(exc)) from None
    # Only the free-form `parameters` objects can nest deeper than a valid request's fixed
    # shape (5 levels); they sit 1 level (the request's) or 3 levels (an input's or an
    # output's) below the top.
    parameters = [(document.get("parameters"), 1)] + [
        (tensor.get("parameters"), 3)
        for tensor in (*document["inputs"], *(document.get("outputs") or ()))
    ]
    if any(nesting_exceeds(p, max_depth - above) for p, above in parameters if p is not None):
        raise too_deep(max_depth)
    names = [output.name for output in request.outputs or ()]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise MalformedRequest(
                f"invalid inference request at outputs.{i}.name: {name!r} is requested twice"
            )
    tensor = request.inputs[0]
    n = tensor.shape[0]
    if 0 in binary:
        return request, _binary_readings(tensor, binary[0], n_features, len(tensor_data))
    data = tensor.data
    if data is None:
        raise MalformedRequest("invalid inference request at inputs.0.data: Field required")
    if len(tensor_data):
        raise _unclaimed(len(tensor_data), 0)
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


def _binary_readings(
    tensor: Any, values: np.ndarray[Any, Any], n_features: int, received: int
) -> np.ndarray[Any, Any]:
    """The readings of a validated input whose ``values`` came as binary tensor data."""
    n, itemsize = tensor.shape[0], INPUT_ELEMENTS[tensor.datatype].itemsize
    size = values.size * itemsize
    if values.size != n * n_features:
        raise MalformedRequest(
            f"input {tensor.name!r}: binary_data_size {size} bytes for shape"
            f" {list(tensor.shape)} of {tensor.datatype} ({n * n_features * itemsize} expected)"
        )
    if received != size:
        raise _unclaimed(received - size, size)
    finite = np.isfinite(values)
    if not finite.all():
        i = int(np.argmin(finite))
        raise MalformedRequest(
            f"input {tensor.name!r}: binary value {i} (row {i // n_features}, column"
            f" {i % n_features}) is not a finite number"
        )
    return values.reshape(n, n_features)


def _unclaimed(extra: int, claimed: int) -> MalformedRequest:
    return MalformedRequest(
        f"{extra} bytes of binary data after the JSON header belong to no input (the inputs'"
        f" binary_data_size add up to {claimed})"
    )


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


def requested_outputs(request: Any) -> list[tuple[str, bool]]:
    """The outputs to answer, in order, each with whether it goes as binary tensor data.

    An output's own `binary_data` parameter decides; without it, the request's
    `binary_data_output` (false by default). No `outputs` in the request: all of them.
    """
    default = bool(request.parameters and request.parameters.binary_data_output)
    if request.outputs is None:
        return [(name, default) for name in OUTPUT_NAMES]
    wanted = []
    for output in request.outputs:
        binary = output.parameters.binary_data if output.parameters else None
        wanted.append((output.name, default if binary is None else binary))
    return wanted


@dataclass(frozen=True)
class EncodedResponse:
    """An inference response as sent: the body, and the JSON header's length if binary follows."""

    body: bytes
    header_length: int | None = None

    @property
    def content_type(self) -> str:
        return JSON if self.header_length is None else BINARY

    @property
    def headers(self) -> dict[str, str]:
        if self.header_length is None:
            return {}
        return {INFERENCE_HEADER: str(self.header_length)}


def _tensor_bytes(datatype: str, data: Any) -> bytes:
    """A tensor's binary form: little-endian, BOOL one byte each, BYTES length-prefixed."""
    if datatype == "BYTES":
        encoded = [str(item).encode("utf-8") for item in data]
        return b"".join(len(item).to_bytes(4, "little") + item for item in encoded)
    element = {"FP32": "<f4", "BOOL": "?"}[datatype]
    return np.ascontiguousarray(data, dtype=element).tobytes()


def encode_response(
    response: dict[str, Any], tensors: list[dict[str, Any]], binary: list[bool]
) -> EncodedResponse:
    """``response`` with its output ``tensors``, those flagged ``binary`` as binary tensor data.

    A binary output carries `parameters.binary_data_size` instead of `data`; its bytes follow
    the JSON header in output order. With no binary output the body is plain JSON.
    """
    outputs, tail = [], []
    for tensor, as_binary in zip(tensors, binary, strict=True):
        if as_binary:
            raw = _tensor_bytes(tensor["datatype"], tensor["data"])
            tail.append(raw)
            tensor = {k: v for k, v in tensor.items() if k != "data"}
            tensor["parameters"] = {"binary_data_size": len(raw)}
        outputs.append(tensor)
    header = orjson.dumps({**response, "outputs": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
    if not tail:
        return EncodedResponse(header)
    return EncodedResponse(header + b"".join(tail), len(header))


def _message(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"invalid inference request at {where}: {first['msg']}{more}"
