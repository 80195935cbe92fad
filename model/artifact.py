"""The trained classifier and its `.npz` artifact: atomic save, safe validated load, content version."""

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
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from model.calibration import softmax
from model.drift import ARRAY_KEYS as _DRIFT_KEYS
from model.drift import DriftReference
from model.network import MLP
from model.normalization import Standardizer
from model.novelty import ARRAY_KEYS as _NOVELTY_KEYS
from model.novelty import ClassMahalanobis

FORMAT_VERSION = 2
# Readings are pushed through the network in chunks so that a batch of millions needs only
# a few MB of intermediate activations.
_CHUNK_ROWS = 32_768
_STANDARD_CLIP = 1e6
# Far above any sensible model of this kind; refuses zip bombs before decompressing them.
_MAX_UNCOMPRESSED_BYTES = 256 * 1024 * 1024
_STRING_KEYS = ("features", "units", "classes")
_FLOAT_KEYS = ("mean", "scale", "feature_min", "feature_max", "lower_limits", "upper_limits")
_RETRAIN = "retrain with `python -m training` to write a current artifact"


class ArtifactError(Exception):
    """A model artifact is missing, unreadable or invalid; the message names the file and the problem."""


@dataclass(frozen=True, eq=False)
class Classifier:
    """Everything needed to serve: network, normalization, calibration and what the inputs mean.

    feature_min, feature_max : ndarray of shape (n_features,), the range seen in training
    temperature : calibration temperature; probabilities are ``softmax(logits / temperature)``
    costs : ndarray of shape (n_classes, n_classes), ``costs[i, j]`` what answering class j
        costs when the truth is class i; None gives ``default_costs`` (0 on the diagonal, 1
        elsewhere: the decision is then argmax). ``decide`` answers by least expected cost.
    metadata : JSON-serializable training facts (configuration, data, metrics, creation time)
    lower_limits, upper_limits : ndarray of shape (n_features,), the values each feature can
        physically take (a reading outside them is an error, not an extrapolation); -inf and
        +inf leave a side open. Default: open on both sides.
    novelty_model : how far from every class a standardized reading lies (keyword-only)
    drift_reference : bin edges and shares of the training readings and of the labels answered
        on validation data, for drift monitoring (keyword-only). None for a classifier built
        without one (and for artifacts written before drift monitoring): it then serves, but
        cannot be compared with live readings. Not part of ``version``: it decides no answer.
    """

    network: MLP
    standardizer: Standardizer
    classes: tuple[str, ...]
    features: tuple[str, ...]
    units: tuple[str, ...]
    feature_min: NDArray[np.float64]
    feature_max: NDArray[np.float64]
    temperature: float = 1.0
    costs: NDArray[np.float64] | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)
    # None stands for "open on both sides"; __post_init__ always leaves an array.
    lower_limits: NDArray[np.float64] = None  # type: ignore[assignment]
    upper_limits: NDArray[np.float64] = None  # type: ignore[assignment]
    novelty_model: ClassMahalanobis = field(kw_only=True)
    drift_reference: DriftReference | None = field(default=None, kw_only=True)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))
        object.__setattr__(self, "features", tuple(str(f) for f in self.features))
        object.__setattr__(self, "units", tuple(str(u) for u in self.units))
        for name in ("feature_min", "feature_max"):
            object.__setattr__(self, name, np.asarray(getattr(self, name), dtype=np.float64))
        for name, open_side in (("lower_limits", -np.inf), ("upper_limits", np.inf)):
            value = getattr(self, name)
            value = np.full(len(self.features), open_side) if value is None else value
            object.__setattr__(self, name, np.asarray(value, dtype=np.float64))
        object.__setattr__(self, "temperature", float(self.temperature))
        costs = default_costs(len(self.classes)) if self.costs is None else self.costs
        # A private copy: the matrix decides answers and is part of `version`, so it must not
        # change behind the classifier's back.
        costs = np.array(costs, dtype=np.float64)
        costs.setflags(write=False)
        object.__setattr__(self, "costs", costs)
        _check(self)

    @property
    def n_features(self) -> int:
        return len(self.features)

    @property
    def n_classes(self) -> int:
        return len(self.classes)

    @cached_property
    def version(self) -> str:
        """A digest of everything that decides predictions; metadata (e.g. timestamps) is left out."""
        digest = hashlib.sha256()
        for key, value in sorted(_arrays(self, with_metadata=False).items()):
            digest.update(f"{key}|{value.dtype.str}|{value.shape}|".encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        return digest.hexdigest()[:16]

    def _standardized(self, X: NDArray[np.float64]) -> NDArray[np.float64]:
        # Standardize in float64 (raw readings can be large with a small spread).
        Xs = self.standardizer.transform(X)
        # Any finite reading, however absurd, must give finite probabilities: a million
        # standard deviations is far past where the answer means anything (such readings are
        # flagged by in_training_range and novelty) and still far from overflowing float32.
        np.clip(Xs, -_STANDARD_CLIP, _STANDARD_CLIP, out=Xs)
        return Xs

    def _raw_logits(self, X: NDArray[np.float64]) -> NDArray[np.floating]:
        # Run the network in its own dtype. The live weights are read on every call, so a
        # Classifier wrapping a network that is still being trained follows its updates.
        H = self._standardized(X).astype(self.network.dtype, copy=False)
        coefs, intercepts = self.network.coefs, self.network.intercepts
        last = len(coefs) - 1
        for i, (W, b) in enumerate(zip(coefs, intercepts, strict=True)):
            H = H @ W
            H += b
            if i < last:
                np.maximum(H, 0, out=H)
        return H

    def _as_readings(self, X: ArrayLike) -> NDArray[np.float64]:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(
                f"expected readings of shape (n, {self.n_features}) for features "
                f"{', '.join(self.features)}; got shape {X.shape}"
            )
        return X

    def _chunked(
        self,
        X: ArrayLike,
        per_chunk: Callable[[NDArray[np.float64]], NDArray[np.floating]],
        per_reading: tuple[int, ...] | None = None,
    ) -> NDArray[np.float64]:
        # per_reading: the shape of one reading's answer, (n_classes,) unless given.
        X = self._as_readings(X)
        tail = (self.n_classes,) if per_reading is None else per_reading
        out = np.empty((X.shape[0], *tail), dtype=np.float64)
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            stop = start + _CHUNK_ROWS
            out[start:stop] = per_chunk(X[start:stop])
        return out

    def logits(self, X: ArrayLike) -> NDArray[np.float64]:
        """Uncalibrated logits of raw readings ``X`` (n_samples, n_features).

        Returns an ndarray of shape (n_samples, n_classes).
        """
        return self._chunked(X, self._raw_logits)

    def predict_proba(self, X: ArrayLike, calibrated: bool = True) -> NDArray[np.float64]:
        """Class probabilities of raw readings ``X`` (n_samples, n_features).

        Returns float64 of shape (n_samples, n_classes), rows summing to 1, calibrated by the
        stored temperature unless ``calibrated=False``.
        """
        # The temperature divides the logits in float64 rather than being folded into the
        # float32 output weights: folding rounds each weight, which reorders nearly tied
        # logits so that the most probable class could differ from ``predict``. Division by
        # a positive scalar in float64 keeps the order of every pair of float32 logits.
        temperature = self.temperature if calibrated else 1.0
        return self._chunked(
            X, lambda chunk: softmax(self._raw_logits(chunk).astype(np.float64) / temperature)
        )

    def predict(self, X: ArrayLike) -> NDArray[np.intp]:
        """Index into ``classes`` of the most probable class of each reading -> (n_samples,)."""
        indices: NDArray[np.intp] = self.logits(X).argmax(axis=1)
        return indices

    @cached_property
    def has_default_costs(self) -> bool:
        """Whether the cost matrix is ``default_costs``, so that ``decide`` is argmax."""
        return bool(np.array_equal(self._cost_matrix, default_costs(self.n_classes)))

    @property
    def _cost_matrix(self) -> NDArray[np.float64]:
        costs = self.costs
        assert costs is not None  # set in __post_init__
        return costs

    @cached_property
    def _cost_columns(self) -> list[list[float]]:
        # Column j lists what answering j costs under each true class, for decide_one.
        columns: list[list[float]] = self._cost_matrix.T.tolist()
        return columns

    def expected_costs(self, P: ArrayLike) -> NDArray[np.float64]:
        """Expected cost of each answer under probabilities ``P`` (n_samples, n_classes).

        Returns float64 of shape (n_samples, n_classes): entry (n, j) is sum_i P[n, i] costs[i, j].
        """
        P = self._as_probabilities(P)
        expected: NDArray[np.float64] = P @ self._cost_matrix
        return expected

    def decide(self, P: ArrayLike) -> NDArray[np.intp]:
        """Index into ``classes`` of the least-expected-cost answer per row of ``P`` -> (n_samples,).

        P : ndarray of shape (n_samples, n_classes), calibrated probabilities (``predict_proba``).
        Answers argmin over j of sum_i P[i] costs[i, j]; ties go to the lowest index, as argmax's
        do. With the default costs this is exactly ``P.argmax(axis=1)``: computing 1 - P[j]
        would round nearly equal probabilities to a tie that argmax does not have.
        """
        if self.has_default_costs:
            chosen: NDArray[np.intp] = self._as_probabilities(P).argmax(axis=1)
        else:
            chosen = self.expected_costs(P).argmin(axis=1)
        return chosen

    def decide_one(self, p: Sequence[float]) -> int:
        """``decide`` for one reading's probabilities (n_classes,), in plain Python -> class index."""
        if len(p) != self.n_classes:
            raise ValueError(f"expected {self.n_classes} probabilities, got {len(p)}")
        if self.has_default_costs:
            return max(range(len(p)), key=p.__getitem__)
        expected = [
            sum(q * c for q, c in zip(p, column, strict=True)) for column in self._cost_columns
        ]
        return min(range(len(expected)), key=expected.__getitem__)

    def _as_probabilities(self, P: ArrayLike) -> NDArray[np.float64]:
        P = np.asarray(P, dtype=np.float64)
        if P.ndim != 2 or P.shape[1] != self.n_classes:
            raise ValueError(
                f"expected probabilities of shape (n, {self.n_classes}) for classes "
                f"{', '.join(self.classes)}; got shape {P.shape}"
            )
        return P

    def in_training_range(self, X: ArrayLike) -> NDArray[np.bool_]:
        """Whether every feature of each reading lies within the range seen in training -> (n_samples,)."""
        X = self._as_readings(X)
        within: NDArray[np.bool_] = np.all(
            (self.feature_min <= X) & (self.feature_max >= X), axis=1
        )
        return within

    def novelty(self, X: ArrayLike) -> NDArray[np.float64]:
        """How unusual each raw reading of ``X`` (n_samples, n_features) is -> (n_samples,) float64.

        At least 0, finite for every finite reading, and above 1 exactly for the readings the
        model calls novel: those farther from every class seen in training than the threshold
        chosen on held-out readings (``novelty_model``) allows.
        """
        return self._chunked(
            X, lambda chunk: self.novelty_model.score(self._standardized(chunk)), per_reading=()
        )

    def novelty_one(self, reading: Sequence[float]) -> float:
        """``novelty`` of one raw reading (n_features,), without per-call array overhead."""
        return self.novelty_model.score_one(self._standardized_one(reading))

    def _standardized_one(self, reading: Sequence[float]) -> list[float]:
        mean, scale, _, _ = self._reading_bounds
        return [
            min(max((v - m) / s, -_STANDARD_CLIP), _STANDARD_CLIP)
            for v, m, s in zip(reading, mean, scale, strict=True)
        ]

    @cached_property
    def _reading_bounds(self) -> tuple[list[float], list[float], list[float], list[float]]:
        return (
            self.standardizer.mean.tolist(),
            self.standardizer.scale.tolist(),
            self.feature_min.tolist(),
            self.feature_max.tolist(),
        )

    def predict_proba_one(self, reading: Sequence[float]) -> list[float]:
        """Calibrated probabilities of one raw reading (n_features,) -> list of n_classes floats.

        The same computation as ``predict_proba`` for one row, without its per-call array
        overhead (a web request classifying one reading would pay several times the network's
        own cost for it): standardization and softmax in plain Python, the layers in numpy.
        """
        xs = self._standardized_one(reading)
        coefs, intercepts = self.network.coefs, self.network.intercepts
        H = np.array(xs, dtype=self.network.dtype)
        for W, b in zip(coefs[:-1], intercepts[:-1], strict=False):
            H = H @ W
            H += b
            np.maximum(H, 0, out=H)
        H = H @ coefs[-1]
        H += intercepts[-1]
        z = [v / self.temperature for v in H.tolist()]
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = sum(e)
        return [v / total for v in e]

    def in_training_range_one(self, reading: Sequence[float]) -> bool:
        """Whether every feature of one raw reading (n_features,) lies within the training range."""
        _, _, lows, highs = self._reading_bounds
        return all(lo <= v <= hi for lo, v, hi in zip(lows, reading, highs, strict=True))

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact atomically: a reader sees the old file or the new one, never a mix.

        The data goes to a temporary file in the same directory, is flushed and fsynced, then
        ``os.replace`` puts it in place; a crash at any point leaves the previous file intact.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_stray_temporaries(path)
        fd, tmp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp"
        )
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, allow_pickle=False, **_arrays(self, with_metadata=True))
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


def _check(clf: Classifier) -> None:
    """Raise ValueError naming the first inconsistency; shared by construction and loading."""
    n_features, n_classes = len(clf.features), len(clf.classes)
    if n_features < 1:
        raise ValueError("the model has no features")
    if n_classes < 2:
        raise ValueError(f"the model needs at least two classes, has {n_classes}")
    for kind, names in (("feature", clf.features), ("class", clf.classes)):
        if len(set(names)) != len(names) or any(not name for name in names):
            raise ValueError(f"{kind} names must be unique and non-empty: {list(names)}")
    if len(clf.units) != n_features:
        raise ValueError(f"{len(clf.units)} units for {n_features} features")
    sizes = clf.network.layer_sizes
    if sizes[0] != n_features or sizes[-1] != n_classes:
        raise ValueError(
            f"layer shapes {list(sizes)} do not chain from {n_features} features to {n_classes} classes"
        )
    if not all(np.issubdtype(p.dtype, np.floating) for p in clf.network.params):
        raise ValueError("weights must be floating point")
    for name, value in (
        ("mean", clf.standardizer.mean),
        ("scale", clf.standardizer.scale),
        ("feature_min", clf.feature_min),
        ("feature_max", clf.feature_max),
    ):
        if np.shape(value) != (n_features,):
            raise ValueError(f"{name} has shape {np.shape(value)}, expected ({n_features},)")
    for i, p in enumerate(clf.network.params):
        if not np.all(np.isfinite(p)):
            raise ValueError(f"non-finite weight in parameter array {i}")
    for name, value in (
        ("mean", clf.standardizer.mean),
        ("scale", clf.standardizer.scale),
        ("feature_min", clf.feature_min),
        ("feature_max", clf.feature_max),
    ):
        if not np.all(np.isfinite(value)):
            raise ValueError(f"non-finite value in {name}")
    if not np.all(np.asarray(clf.standardizer.scale) > 0):
        raise ValueError("normalization scale must be positive")
    if np.any(clf.feature_min > clf.feature_max):
        raise ValueError("feature_min exceeds feature_max")
    lower, upper = clf.lower_limits, clf.upper_limits
    for name, value in (("lower_limits", lower), ("upper_limits", upper)):
        if np.shape(value) != (n_features,):
            raise ValueError(f"{name} has shape {np.shape(value)}, expected ({n_features},)")
        if np.isnan(value).any():
            raise ValueError(f"{name} holds NaN (use -inf or inf for an open side)")
    if np.any(lower == np.inf) or np.any(upper == -np.inf) or np.any(lower > upper):
        raise ValueError(f"limits {lower.tolist()} to {upper.tolist()} admit no reading")
    outside = (clf.feature_min < lower) | (clf.feature_max > upper)
    if outside.any():
        name = clf.features[int(np.flatnonzero(outside)[0])]
        raise ValueError(f"training readings of {name!r} lie outside its physical limits")
    if not (np.isfinite(clf.temperature) and clf.temperature > 0):
        raise ValueError(
            f"calibration temperature must be positive and finite, got {clf.temperature}"
        )
    novelty_shape = (clf.novelty_model.n_classes, clf.novelty_model.n_features)
    if novelty_shape != (n_classes, n_features):
        raise ValueError(
            f"the novelty model covers {novelty_shape[0]} classes and {novelty_shape[1]} "
            f"features, the model has {n_classes} and {n_features}"
        )
    check_costs(clf._cost_matrix, clf.classes)
    reference = clf.drift_reference
    if reference is not None and (reference.n_features, reference.n_classes) != (
        n_features,
        n_classes,
    ):
        raise ValueError(
            f"the drift reference covers {reference.n_features} features and "
            f"{reference.n_classes} classes, the model has {n_features} and {n_classes}"
        )


def default_costs(n_classes: int) -> NDArray[np.float64]:
    """The cost matrix of plain argmax: 0 on the diagonal, 1 elsewhere -> (n_classes, n_classes)."""
    return np.ones((n_classes, n_classes)) - np.eye(n_classes)


def check_costs(costs: NDArray[Any], classes: Sequence[str]) -> None:
    """Raise ValueError unless ``costs`` is a valid cost matrix for ``classes``.

    Valid: shape (n_classes, n_classes), every entry finite and >= 0, zero on the diagonal
    (a right answer costs nothing). The message names the first offending entry by class.
    """
    n = len(classes)
    if np.shape(costs) != (n, n):
        raise ValueError(
            f"cost matrix has shape {np.shape(costs)}, expected ({n}, {n}) for classes "
            f"{', '.join(classes)}"
        )
    for problem, bad in (
        ("is not finite", ~np.isfinite(costs)),
        ("is negative", costs < 0),
        ("is not 0 (a right answer costs nothing)", np.eye(n, dtype=bool) & (costs != 0)),
    ):
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"cost of answering {classes[j]!r} when the truth is {classes[i]!r} "
                f"{problem}: {costs[i, j]}"
            )


def load(path: str | os.PathLike[str]) -> Classifier:
    """Load and validate an artifact written by ``Classifier.save``; never unpickles.

    Raises ArtifactError naming the file and the problem: missing, empty, truncated, not a zip,
    wrong format version, missing key, shape mismatch, pickled object, non-finite value.
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
            with zipfile.ZipFile(f) as archive:
                if sum(info.file_size for info in archive.infolist()) > _MAX_UNCOMPRESSED_BYTES:
                    raise fail("archive is implausibly large when decompressed; refused")
            f.seek(0)
            arrays = _read_members(f, fail)
    except OSError as exc:
        raise fail(f"cannot read file ({exc})") from None
    return _from_arrays(arrays, fail)


def _read_members(f: Any, fail: Any) -> dict[str, NDArray[Any]]:
    arrays: dict[str, NDArray[Any]] = {}
    try:
        with np.load(f, allow_pickle=False) as npz:
            for key in npz.files:
                try:
                    value = npz[key]
                except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
                    raise fail(f"file is truncated or corrupt ({exc})") from None
                except ValueError as exc:
                    if "pickle" in str(exc):
                        raise fail(f"key {key!r} holds a pickled object; refused") from None
                    raise fail(f"key {key!r} is unreadable ({exc})") from None
                except Exception as exc:
                    # numpy parses a .npy header with Python's tokenizer: a malformed one can
                    # raise nearly anything (TokenError, SyntaxError, MemoryError for a huge shape).
                    raise fail(f"key {key!r} is unreadable ({type(exc).__name__}: {exc})") from None
                # numpy hands back a member without the .npy suffix as raw bytes.
                if not isinstance(value, np.ndarray):
                    raise fail(f"key {key!r} is not a .npy array")
                arrays[key] = value
    except ArtifactError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, ValueError, KeyError) as exc:
        raise fail(f"file is truncated or corrupt ({exc})") from None
    return arrays


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
    coefs, intercepts = [], []
    for i in range(n_layers):
        W, b = arrays[f"coef_{i}"], arrays[f"intercept_{i}"]
        if W.dtype.kind != "f" or b.dtype.kind != "f":
            raise fail(f"layer {i} weights must be floating point, got {W.dtype} and {b.dtype}")
        if W.dtype != b.dtype or W.dtype != arrays["coef_0"].dtype:
            raise fail(f"layer {i} mixes dtypes {W.dtype} and {b.dtype}")
        coefs.append(W)
        intercepts.append(b)
    temperature = scalar("temperature", "f")
    costs = arrays["costs"]
    if costs.dtype.kind != "f":
        raise fail(f"key 'costs' must be floating point, got {costs.dtype}")
    metadata_text = scalar("metadata", "U")
    try:
        metadata = json.loads(metadata_text)
    except json.JSONDecodeError as exc:
        raise fail(f"metadata is not valid JSON ({exc})") from None
    if not isinstance(metadata, dict):
        raise fail("metadata must be a JSON object")
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
