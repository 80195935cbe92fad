"""The classifier's `.npz` artifact: atomic save, safe validated load, content version."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any, BinaryIO

import numpy as np
from numpy.typing import NDArray

from model.classifier import Classifier
from model.drift import ARRAY_KEYS as _DRIFT_KEYS
from model.drift import PROBABILITIES_KEY as _DRIFT_PROBABILITIES
from model.drift import DriftReference
from model.network import MLP
from model.normalization import Standardizer
from model.novelty import ARRAY_KEYS as _NOVELTY_KEYS
from model.novelty import ClassMahalanobis

FORMAT_VERSION = 2
# Far above any sensible model of this kind; refuses zip bombs before decompressing them.
_MAX_UNCOMPRESSED_BYTES = 256 * 1024 * 1024
# Per member, read from its .npy header before any of its data: 256 times the default model's
# largest array (64 x 64), room for a 1024 x 1024 layer. A file cannot make a worker build more
# than this many strings (about 0.3 s and 100 MB for 1-character names).
MAX_ELEMENTS = 1 << 20
# Training writes 7 levels (counting the values at the bottom); the service renders metadata
# inside its answers, and pydantic refuses to serialize past a few hundred.
_MAX_METADATA_DEPTH = 32
_STRING_KEYS = ("features", "units", "classes")
_FLOAT_KEYS = ("mean", "scale", "feature_min", "feature_max", "lower_limits", "upper_limits")
_RETRAIN = "retrain with `python -m training` to write a current artifact"


class ArtifactError(Exception):
    """A model artifact is missing, unreadable or invalid; the message names the file and the problem."""


def save(clf: Classifier, path: str | os.PathLike[str]) -> None:
    """Write the artifact atomically: a reader sees the old file or the new one, never a mix.

    The data goes to a temporary file in the same directory, is flushed and fsynced, then
    ``os.replace`` puts it in place; a crash at any point leaves the previous file intact.
    """
    path = Path(path)
    arrays = _arrays(clf, with_metadata=True)
    for key, value in arrays.items():  # never write a file that `load` would refuse
        problem = _member_problem(key, value.dtype, value.shape)
        if problem is not None:
            raise ValueError(f"cannot save {path}: {problem}")
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stray_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)
            f.flush()
            os.fchmod(f.fileno(), 0o644)
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    # Make the rename itself durable.
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def version(clf: Classifier) -> str:
    """A digest of everything that decides predictions; metadata (e.g. timestamps) is left out."""
    digest = hashlib.sha256()
    for key, value in sorted(_arrays(clf, with_metadata=False).items()):
        digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    return digest.hexdigest()[:16]


def _remove_stray_temporaries(path: Path) -> None:
    """Delete temporary files that an earlier save of ``path`` left when it was killed.

    Their names carry the writing process's id (`.model.npz.<pid>.<random>.tmp`): one whose
    process is gone is stray; one of a live process may be a save under way and is kept. A name
    without an id comes from a build before ids were written, and is stray too.
    """
    prefix = f".{path.name}."
    for entry in path.parent.glob(f"{glob.escape(prefix)}*.tmp"):
        pid_text = entry.name[len(prefix) :].partition(".")[0]
        if pid_text.isdigit() and _process_exists(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            entry.unlink()


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _arrays(clf: Classifier, with_metadata: bool) -> dict[str, NDArray[Any]]:
    arrays: dict[str, NDArray[Any]] = {
        "format_version": np.array(FORMAT_VERSION, dtype=np.int64),
        "n_layers": np.array(len(clf.network.coefs), dtype=np.int64),
        "features": np.array(clf.features, dtype=np.str_),
        "units": np.array(clf.units, dtype=np.str_),
        "classes": np.array(clf.classes, dtype=np.str_),
        "mean": np.asarray(clf.standardizer.mean, dtype=np.float64),
        "scale": np.asarray(clf.standardizer.scale, dtype=np.float64),
        "feature_min": clf.feature_min,
        "feature_max": clf.feature_max,
        "temperature": np.array(clf.temperature, dtype=np.float64),
        "lower_limits": clf.lower_limits,
        "upper_limits": clf.upper_limits,
    }
    arrays["costs"] = clf._cost_matrix
    for i, (W, b) in enumerate(zip(clf.network.coefs, clf.network.intercepts, strict=True)):
        arrays[f"coef_{i}"] = W
        arrays[f"intercept_{i}"] = b
    arrays.update(clf.novelty_model.to_arrays())
    if with_metadata:
        # Facts about the training data, not the decision: outside the version digest.
        if clf.drift_reference is not None:
            arrays.update(clf.drift_reference.to_arrays())
        arrays["metadata"] = np.array(
            json.dumps(dict(clf.metadata), allow_nan=False, sort_keys=True)
        )
    return arrays


def load(path: str | os.PathLike[str]) -> Classifier:
    """Load and validate an artifact written by ``Classifier.save``; never unpickles.

    Raises ArtifactError naming the file and the problem: missing, empty, truncated, not a zip,
    wrong format version, missing key, shape mismatch, pickled object, non-finite value. Each
    member's dtype and size are checked from its .npy header before its data is read.
    """
    path = Path(path)

    def fail(problem: str) -> ArtifactError:
        return ArtifactError(f"model artifact {path}: {problem}")

    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise fail("file does not exist") from None
    except OSError as exc:
        raise fail(f"cannot read file ({exc.strerror})") from None
    if path.is_dir():
        raise fail("is a directory, not a file")
    if size == 0:
        raise fail("file is empty")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
            f.seek(0)
            if not zipfile.is_zipfile(f):
                if head == b"PK\x03\x04":
                    raise fail("file is truncated or corrupt (incomplete zip archive)")
                raise fail("not a zip archive (.npz)")
            f.seek(0)
            arrays = _read_members(f, fail)
    except OSError as exc:
        raise fail(f"cannot read file ({exc})") from None
    return _from_arrays(arrays, fail)


def _read_members(f: BinaryIO, fail: Callable[[str], ArtifactError]) -> dict[str, NDArray[Any]]:
    """Every member of the archive as an array; each .npy header is checked before its data."""
    arrays: dict[str, NDArray[Any]] = {}
    try:
        with zipfile.ZipFile(f) as archive:
            infos = archive.infolist()
            if sum(info.file_size for info in infos) > _MAX_UNCOMPRESSED_BYTES:
                raise fail("archive is implausibly large when decompressed; refused")
            for info in infos:
                key = info.filename.removesuffix(".npy")
                if key == info.filename:
                    raise fail(f"key {key!r} is not a .npy array")
                with archive.open(info) as member:
                    arrays[key] = _read_array(member, info.file_size, key, fail)
    except ArtifactError:
        raise
    except Exception as exc:
        # A damaged archive makes zipfile raise nearly anything: BadZipFile, zlib.error,
        # EOFError, OSError for an offset before the start, NotImplementedError for an unknown
        # compression method, RuntimeError for an encrypted member.
        raise fail(f"file is truncated or corrupt ({type(exc).__name__}: {exc})") from None
    return arrays


def _read_array(
    member: IO[bytes], size: int, key: str, fail: Callable[[str], ArtifactError]
) -> NDArray[Any]:
    """The array in one .npy member of ``size`` bytes, refused from its header if it does not fit."""
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(member)
        elif version == (2, 0):
            shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(member)
        else:
            raise ValueError(f".npy format version {version} is not one numpy writes for arrays")
    except (zipfile.BadZipFile, zlib.error, EOFError):
        raise  # damage to the archive itself
    except Exception as exc:
        # numpy parses a .npy header with Python's tokenizer: a malformed one can raise nearly
        # anything (TokenError, SyntaxError, ValueError).
        raise fail(f"key {key!r} is unreadable ({type(exc).__name__}: {exc})") from None
    problem = _member_problem(key, dtype, shape)
    if problem is not None:
        raise fail(problem)
    declared, held = math.prod(shape) * dtype.itemsize, size - member.tell()
    if declared != held:
        raise fail(
            f"key {key!r} declares {declared} bytes of data, its member holds {held}; "
            "truncated or corrupt"
        )
    # Read to the end of the member: zipfile checks its CRC only there.
    data = member.read()
    return np.frombuffer(data, dtype=dtype).reshape(shape, order="F" if fortran_order else "C")


def _member_problem(key: str, dtype: np.dtype[Any], shape: tuple[int, ...]) -> str | None:
    """What keeps an array of ``dtype`` and ``shape`` out of an artifact as ``key``, if anything.

    The one check of a member's type and size, made by ``load`` on the .npy header before any
    data is read and by ``save`` before anything is written.
    """
    if dtype.hasobject:
        return f"key {key!r} holds a pickled object; refused"
    if dtype.kind not in "iufU" or dtype.fields is not None or dtype.subdtype is not None:
        return f"key {key!r} has unsupported dtype {dtype} (an artifact holds numbers and strings)"
    if dtype.itemsize == 0:
        return f"key {key!r} has items of size zero (dtype {dtype.str}); refused"
    if any(n < 0 for n in shape):
        return f"key {key!r} is unreadable (negative dimension in shape {shape})"
    if math.prod(shape) > MAX_ELEMENTS:
        return f"key {key!r} has {math.prod(shape)} elements, more than the {MAX_ELEMENTS} allowed"
    return None


def _from_arrays(arrays: dict[str, NDArray[Any]], fail: Any) -> Classifier:
    def get(key: str) -> NDArray[Any]:
        if key not in arrays:
            raise fail(f"missing key {key!r}")
        return arrays[key]

    def scalar(key: str, kind: str) -> Any:
        value = get(key)
        if value.shape != () or value.dtype.kind not in kind:
            raise fail(
                f"key {key!r} must be a scalar of kind {kind!r}, got {value.dtype} {value.shape}"
            )
        return value.item()

    version = scalar("format_version", "iu")
    if version != FORMAT_VERSION:
        raise fail(
            f"format version {version} is not supported (this build reads {FORMAT_VERSION}); "
            f"{_RETRAIN}"
        )
    if "novelty_method" not in arrays:
        raise fail(f"has no novelty model (written before novelty detection); {_RETRAIN}")
    n_layers = scalar("n_layers", "iu")
    if not 1 <= n_layers <= 64:
        raise fail(f"n_layers must be between 1 and 64, got {n_layers}")
    expected = {
        "format_version", "n_layers", "metadata", "temperature", *_STRING_KEYS, *_FLOAT_KEYS,
        "costs",
        *(f"coef_{i}" for i in range(n_layers)), *(f"intercept_{i}" for i in range(n_layers)),
        *_NOVELTY_KEYS,
    }  # fmt: skip
    # The drift block is all or nothing; without it the artifact predates drift monitoring.
    present = [key for key in _DRIFT_KEYS if key in arrays]
    if present and len(present) != len(_DRIFT_KEYS):
        missing = sorted(set(_DRIFT_KEYS) - set(present))
        raise fail(f"incomplete drift reference: missing keys {missing}")
    expected.update(present)
    if present and _DRIFT_PROBABILITIES in arrays:
        expected.add(_DRIFT_PROBABILITIES)
    for key in sorted(expected):
        get(key)
    unexpected = sorted(set(arrays) - expected)
    if unexpected:
        raise fail(f"unexpected keys {unexpected}")
    strings: dict[str, tuple[str, ...]] = {}
    for key in _STRING_KEYS:
        value = arrays[key]
        if value.ndim != 1 or value.dtype.kind != "U":
            raise fail(
                f"key {key!r} must be a 1-d array of strings, got {value.dtype} {value.shape}"
            )
        strings[key] = tuple(str(s) for s in value)
    floats: dict[str, NDArray[np.float64]] = {}
    for key in _FLOAT_KEYS:
        value = arrays[key]
        if value.dtype.kind != "f":
            raise fail(f"key {key!r} must be floating point, got {value.dtype}")
        floats[key] = value.astype(np.float64)
    # Their dtypes are the classifier's to check.
    coefs = [arrays[f"coef_{i}"] for i in range(n_layers)]
    intercepts = [arrays[f"intercept_{i}"] for i in range(n_layers)]
    temperature = scalar("temperature", "f")
    costs = arrays["costs"]
    if costs.dtype.kind != "f":
        raise fail(f"key 'costs' must be floating point, got {costs.dtype}")
    try:
        metadata = json.loads(
            scalar("metadata", "U"), parse_constant=_refuse_number, parse_float=_finite_float
        )
    except RecursionError:
        raise fail("metadata is nested too deeply to parse") from None
    except ValueError as exc:  # JSONDecodeError among them
        raise fail(f"metadata is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise fail("metadata must be a JSON object")
    if _depth(metadata) > _MAX_METADATA_DEPTH:
        raise fail(f"metadata is nested more than {_MAX_METADATA_DEPTH} levels deep")
    try:
        novelty_model = ClassMahalanobis.from_arrays(arrays)
    except ValueError as exc:
        raise fail(f"invalid novelty model: {exc}") from None
    try:
        drift_reference = DriftReference.from_arrays(arrays) if present else None
    except ValueError as exc:
        raise fail(f"invalid drift reference: {exc}") from None
    try:
        network = MLP(coefs, intercepts)
        return Classifier(
            network=network,
            standardizer=Standardizer(mean=floats["mean"], scale=floats["scale"]),
            classes=strings["classes"],
            features=strings["features"],
            units=strings["units"],
            feature_min=floats["feature_min"],
            feature_max=floats["feature_max"],
            temperature=temperature,
            costs=costs,
            metadata=metadata,
            lower_limits=floats["lower_limits"],
            upper_limits=floats["upper_limits"],
            novelty_model=novelty_model,
            drift_reference=drift_reference,
        )
    except ValueError as exc:
        raise fail(f"shape mismatch or invalid value: {exc}") from None


def _refuse_number(text: str) -> float:
    # Python's json reads NaN and Infinity; every later save (`allow_nan=False`) would fail.
    raise ValueError(f"{text} is not a finite number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        _refuse_number(text)
    return value


def _depth(value: Any) -> int:
    """How many levels of lists and objects ``value`` has, the values at the bottom included."""
    depth, level = 0, [value]
    while level:
        depth += 1
        level = [
            child
            for v in level
            if isinstance(v, dict | list)
            for child in (v.values() if isinstance(v, dict) else v)
        ]
    return depth
