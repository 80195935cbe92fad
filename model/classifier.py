"""The trained classifier: network, normalization, calibration, costs and what its inputs mean."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from model.calibration import MAX_TEMPERATURE, MIN_TEMPERATURE, softmax
from model.drift import DriftReference
from model.network import MLP
from model.normalization import Standardizer
from model.novelty import ClassMahalanobis

# Readings are pushed through the network in chunks small enough that a chunk's activations
# stay in cache between layers (4,096 x 64 float32 is 1 MB): at 32,768 rows each layer's
# in-place bias and ReLU went out to memory and back.
_CHUNK_ROWS = 4_096
_STANDARD_CLIP = 1e6
# float32 is what training writes; float64 serves exact computations (gradient checks, models
# written by hand). float16 overflows at 65,504, which standardized readings reach (they are
# clipped at _STANDARD_CLIP), and answers NaN; longdouble differs from platform to platform.
_WEIGHT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# The largest cost of a wrong answer. Costs weigh mistakes against each other, and a mistake a
# trillion times worse than a false alarm is already beyond any sense; the bound keeps every
# sum of costs finite: an expected cost is at most MAX_COST (probabilities sum to 1), and 1000
# readings' worth over 10,000 classes is at most 1e19, far from float64's 1.8e308.
MAX_COST = 1e12
# The most classes a model may have. Every answer lists every class's probability (a batch of
# SENSOR_MAX_BATCH = 10,000 readings of a 100-class model answers 29 MB of JSON, about 1 s of a
# worker), the model card and the metrics show each class: a machine's states are a handful,
# fault codes a few dozen, and more classes than this come from a column that names none (a
# serial number, a timestamp). 1,024 classes answered 300 MB and took the card 30 s to draw.
MAX_CLASSES = 100


@dataclass(frozen=True, eq=False)
class Classifier:
    """Everything needed to serve: network, normalization, calibration and what the inputs mean.

    feature_min, feature_max : ndarray of shape (n_features,), the range seen in training
    temperature : calibration temperature; probabilities are ``softmax(logits / temperature)``;
        between ``MIN_TEMPERATURE`` and ``MAX_TEMPERATURE``, the range ``fit_temperature`` searches
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
        # change behind the classifier's back. Adding 0.0 turns -0.0 into 0.0: the same costs,
        # the same bytes, the same version.
        costs = np.array(costs, dtype=np.float64) + 0.0
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
        from model import artifact

        return artifact.version(self)

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
        return self.network.forward(self._standardized(X).astype(self.network.dtype, copy=False))

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
        per_chunk: Callable[[NDArray[np.float64], NDArray[np.float64]], object],
        per_reading: tuple[int, ...] | None = None,
    ) -> NDArray[np.float64]:
        # per_chunk(readings, out) writes its answers into out; per_reading: the shape of one
        # reading's answer, (n_classes,) unless given.
        X = self._as_readings(X)
        tail = (self.n_classes,) if per_reading is None else per_reading
        out = np.empty((X.shape[0], *tail), dtype=np.float64)
        for start in range(0, X.shape[0], _CHUNK_ROWS):
            stop = start + _CHUNK_ROWS
            per_chunk(X[start:stop], out[start:stop])
        return out

    def logits(self, X: ArrayLike) -> NDArray[np.float64]:
        """Uncalibrated logits of raw readings ``X`` (n_samples, n_features).

        Returns an ndarray of shape (n_samples, n_classes).
        """
        return self._chunked(X, lambda chunk, out: np.copyto(out, self._raw_logits(chunk)))

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
            X,
            lambda chunk, out: softmax(
                np.divide(self._raw_logits(chunk), temperature, out=out, dtype=np.float64),
                out=out,
            ),
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
            X,
            lambda chunk, out: np.copyto(out, self.novelty_model.score(self._standardized(chunk))),
            per_reading=(),
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
        xs = np.array(self._standardized_one(reading), dtype=self.network.dtype)
        z = [v / self.temperature for v in self.network.forward(xs).tolist()]
        top = max(z)
        e = [math.exp(v - top) for v in z]
        total = sum(e)
        return [v / total for v in e]

    def in_training_range_one(self, reading: Sequence[float]) -> bool:
        """Whether every feature of one raw reading (n_features,) lies within the training range."""
        _, _, lows, highs = self._reading_bounds
        return all(lo <= v <= hi for lo, v, hi in zip(lows, reading, highs, strict=True))

    def self_test(self) -> None:
        """Raise ValueError unless logits, probabilities and novelty are finite at a few readings,
        and the probabilities of one reading, as both prediction paths give them, a distribution.

        Finite weights can still overflow (weights of 3e38 answer NaN for any reading). The
        readings: the training mean, ``feature_min`` and ``feature_max``, and the farthest any
        reading reaches after standardization, every feature ``_STANDARD_CLIP`` standard
        deviations below or above the mean. A probe, not a proof. Part of construction, so of
        every load; it reads the live weights, so the service's readiness check calls it again.
        """
        mean, far = self.standardizer.mean, _STANDARD_CLIP * self.standardizer.scale
        probes = {
            "the training mean": mean,
            "feature_min": self.feature_min,
            "feature_max": self.feature_max,
            f"{_STANDARD_CLIP:g} standard deviations below the mean": mean - far,
            f"{_STANDARD_CLIP:g} standard deviations above the mean": mean + far,
        }
        X = np.array(list(probes.values()))
        with np.errstate(all="ignore"):  # overflow is what is looked for
            answers = np.hstack([self.logits(X), self.predict_proba(X), self.novelty(X)[:, None]])
        finite = np.isfinite(answers).all(axis=1)
        if not finite.all():
            where = list(probes)[int(np.argmin(finite))]
            raise ValueError(
                f"the model's logits, probabilities or novelty are not finite at {where}: "
                "its parameters overflow"
            )
        for p in (
            self.predict_proba(mean[None, :])[0].tolist(),
            self.predict_proba_one(mean.tolist()),
        ):
            if len(p) != len(self.classes) or not all(0.0 <= v <= 1.0 for v in p):
                raise ValueError(
                    f"the probabilities at the training mean are not a distribution: {p}"
                )
            if abs(sum(p) - 1.0) >= 1e-6:
                raise ValueError(f"the probabilities at the training mean do not sum to 1: {p}")

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the artifact atomically (``model.artifact.save``)."""
        # Imported here: the file format depends on the classifier, not the other way round.
        from model import artifact

        artifact.save(self, path)


def _check(clf: Classifier) -> None:
    """Raise ValueError naming the first inconsistency; shared by construction and loading."""
    n_features, n_classes = len(clf.features), len(clf.classes)
    if n_features < 1:
        raise ValueError("the model has no features")
    if n_classes < 2:
        raise ValueError(f"the model needs at least two classes, has {n_classes}")
    if n_classes > MAX_CLASSES:
        raise ValueError(
            f"the model has {n_classes} classes, more than the {MAX_CLASSES} a model may have"
        )
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
    dtypes = sorted({str(p.dtype) for p in clf.network.params})
    if len(dtypes) != 1 or np.dtype(dtypes[0]) not in _WEIGHT_DTYPES:
        allowed = " or all ".join(map(str, _WEIGHT_DTYPES))
        raise ValueError(f"weights must be all {allowed}, got {', '.join(dtypes)}")
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
    if not MIN_TEMPERATURE <= clf.temperature <= MAX_TEMPERATURE:
        raise ValueError(
            f"calibration temperature must be between {MIN_TEMPERATURE:g} and "
            f"{MAX_TEMPERATURE:g} (the range fit_temperature searches), got {clf.temperature}"
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
    clf.self_test()


def default_costs(n_classes: int) -> NDArray[np.float64]:
    """The cost matrix of plain argmax: 0 on the diagonal, 1 elsewhere -> (n_classes, n_classes)."""
    return np.ones((n_classes, n_classes)) - np.eye(n_classes)


def check_costs(costs: NDArray[Any], classes: Sequence[str]) -> None:
    """Raise ValueError unless ``costs`` is a valid cost matrix for ``classes``.

    Valid: shape (n_classes, n_classes), every entry finite, >= 0 and at most ``MAX_COST``,
    zero on the diagonal (a right answer costs nothing). The message names the first offending
    entry by class.
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
        (f"is more than {MAX_COST:g}", costs > MAX_COST),
        ("is not 0 (a right answer costs nothing)", np.eye(n, dtype=bool) & (costs != 0)),
    ):
        if bad.any():
            i, j = (int(v) for v in np.argwhere(bad)[0])
            raise ValueError(
                f"cost of answering {classes[j]!r} when the truth is {classes[i]!r} "
                f"{problem}: {costs[i, j]}"
            )
