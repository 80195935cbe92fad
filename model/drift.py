"""The drift reference: what training readings and predicted labels looked like, as bin shares.

Live readings are counted into the same bins (by the service, into Prometheus counters) and
compared with these shares by the population stability index (PSI):

    PSI = sum over bins of (o - r) * ln(o / r),  o and r each raised to at least PSI_EPSILON

where o is the observed share of a bin and r the reference share. The floor keeps an empty bin
(the underflow and overflow bins are empty in training by construction) finite: a bin that
training never saw and that now holds a share o contributes about o * ln(o / PSI_EPSILON).
"""

from __future__ import annotations

import bisect
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

# The floor for a share in PSI; Prometheus' recording rules use the same value (rules.yaml).
PSI_EPSILON = 1e-4
DEFAULT_BINS = 10
# Shares must sum to 1 within this (they are ratios of integer counts, written in float64).
_SUM_TOLERANCE = 1e-6
ARRAY_KEYS = ("drift_edges", "drift_edge_counts", "drift_feature_shares", "drift_label_shares")
# Optional (artifacts written before it lack it): validation readings' calibrated probabilities,
# from which the label shares are counted again when only the costs change.
PROBABILITIES_KEY = "drift_validation_probabilities"
# Probabilities are stored in float32: rows sum to 1 within this.
_STORED_SUM_TOLERANCE = 1e-4


def psi(observed: ArrayLike, reference: ArrayLike, epsilon: float = PSI_EPSILON) -> float:
    """The population stability index of ``observed`` shares (n_bins,) against ``reference``.

    Both are floored at ``epsilon`` before the sum; 0 for identical shares, never negative.
    """
    o = np.maximum(np.asarray(observed, dtype=np.float64), epsilon)
    r = np.maximum(np.asarray(reference, dtype=np.float64), epsilon)
    return float(np.sum((o - r) * np.log(o / r)))


def shares(counts: ArrayLike) -> NDArray[np.float64]:
    """Counts (n_bins,) as shares summing to 1; all zeros when nothing was counted."""
    c = np.asarray(counts, dtype=np.float64)
    total = c.sum()
    return c / total if total > 0 else np.zeros_like(c)


def _bin_edges(x: NDArray[np.float64], n_bins: int) -> NDArray[np.float64]:
    # Quantile edges; ties (a discrete feature) merge bins. The last edge is nudged just above
    # the training maximum so that the overflow bin holds exactly the readings above it, and
    # bin 0 (underflow) those below the minimum.
    edges = np.unique(np.quantile(x, np.linspace(0.0, 1.0, n_bins + 1)))
    if edges.size == 1:
        edges = np.append(edges, edges[0])
    edges[-1] = np.nextafter(edges[-1], np.inf)
    return edges


@dataclass(frozen=True, eq=False)
class DriftReference:
    """Bin edges and shares of the training readings, and the shares of each predicted label.

    edges : per feature, a strictly increasing ndarray of k edges making k + 1 bins: bin 0 holds
        readings below edges[0] (underflow), bin i those in [edges[i-1], edges[i]), bin k those
        at or above edges[-1] (overflow). Edges lie at training-data quantiles.
    feature_shares : per feature, ndarray of shape (k + 1,), the share of training readings in
        each bin (the underflow and overflow bins hold 0 for the data the edges came from)
    label_shares : ndarray of shape (n_classes,), the share of validation readings answered
        with each class (the decision the service answers, costs included)
    probabilities : ndarray of shape (m, n_classes), calibrated probabilities of (a sample of)
        the validation readings, so that ``answered`` can count the labels again for other
        costs; None in artifacts written before it
    """

    edges: tuple[NDArray[np.float64], ...]
    feature_shares: tuple[NDArray[np.float64], ...]
    label_shares: NDArray[np.float64]
    probabilities: NDArray[np.float64] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "edges", tuple(np.asarray(e, np.float64) for e in self.edges))
        object.__setattr__(
            self, "feature_shares", tuple(np.asarray(s, np.float64) for s in self.feature_shares)
        )
        object.__setattr__(self, "label_shares", np.asarray(self.label_shares, np.float64))
        if not self.edges:
            raise ValueError("the drift reference has no features")
        if len(self.feature_shares) != len(self.edges):
            raise ValueError(
                f"{len(self.feature_shares)} sets of bin shares for {len(self.edges)} features"
            )
        for j, (e, s) in enumerate(zip(self.edges, self.feature_shares, strict=True)):
            if e.ndim != 1 or e.size < 1 or not np.all(np.isfinite(e)):
                raise ValueError(f"drift bin edges of feature {j} must be a finite 1-d array")
            if np.any(np.diff(e) <= 0):
                raise ValueError(f"drift bin edges of feature {j} are not strictly increasing")
            if s.shape != (e.size + 1,):
                raise ValueError(
                    f"feature {j} has {s.size} bin shares for {e.size} edges (expected {e.size + 1})"
                )
            _check_shares(s, f"bin shares of feature {j}")
        if self.label_shares.ndim != 1 or self.label_shares.size < 2:
            raise ValueError("the drift reference needs label shares for at least two classes")
        _check_shares(self.label_shares, "label shares")
        if self.probabilities is not None:
            P = np.asarray(self.probabilities, np.float64)
            object.__setattr__(self, "probabilities", P)
            if P.ndim != 2 or P.shape[0] < 1 or P.shape[1] != self.label_shares.size:
                raise ValueError(
                    f"validation probabilities of shape {P.shape} for {self.label_shares.size}"
                    " classes"
                )
            if not np.all(np.isfinite(P)) or np.any(P < 0) or np.any(P > 1):
                raise ValueError("validation probabilities must be finite and within [0, 1]")
            if np.any(np.abs(P.sum(axis=1) - 1.0) > _STORED_SUM_TOLERANCE):
                raise ValueError("validation probabilities do not sum to 1 in every row")

    @classmethod
    def fit(
        cls,
        X: ArrayLike,
        labels: ArrayLike,
        n_classes: int,
        n_bins: int = DEFAULT_BINS,
        probabilities: ArrayLike | None = None,
    ) -> DriftReference:
        """The reference of training readings ``X`` (n_samples, n_features) and the labels
        ``labels`` (m,) answered on validation readings (indices into the classes), keeping
        ``probabilities`` (validation readings', see the class) if given."""
        X = np.asarray(X, dtype=np.float64)
        labels = np.asarray(labels, dtype=np.intp)
        if X.ndim != 2 or X.shape[0] == 0 or labels.size == 0:
            raise ValueError("a drift reference needs training readings and validation labels")
        edges = tuple(_bin_edges(X[:, j], n_bins) for j in range(X.shape[1]))
        feature_shares = tuple(
            shares(np.bincount(np.searchsorted(e, X[:, j], side="right"), minlength=e.size + 1))
            for j, e in enumerate(edges)
        )
        label_shares = shares(np.bincount(labels, minlength=n_classes))
        return cls(
            edges=edges,
            feature_shares=feature_shares,
            label_shares=label_shares,
            probabilities=None if probabilities is None else np.asarray(probabilities),
        )

    def answered(self, labels: ArrayLike) -> DriftReference:
        """This reference with the label shares of ``labels`` (m,), the labels another decision
        gives the stored validation ``probabilities`` (indices into the classes)."""
        counts = np.bincount(np.asarray(labels, dtype=np.intp), minlength=self.n_classes)
        return dataclasses.replace(self, label_shares=shares(counts))

    @property
    def n_features(self) -> int:
        return len(self.edges)

    @property
    def n_classes(self) -> int:
        return int(self.label_shares.size)

    @cached_property
    def edge_lists(self) -> tuple[list[float], ...]:
        """The edges as plain lists, for ``bisect`` on one reading."""
        return tuple(e.tolist() for e in self.edges)

    def bin_one(self, reading: Sequence[float]) -> list[int]:
        """The bin of each feature of one raw reading (n_features,)."""
        return [bisect.bisect_right(e, v) for e, v in zip(self.edge_lists, reading, strict=True)]

    def bin_counts(self, X: ArrayLike) -> list[NDArray[np.int64]]:
        """Per feature, how many readings of ``X`` (n_samples, n_features) fall in each bin."""
        X = np.asarray(X, dtype=np.float64)
        return [
            np.bincount(np.searchsorted(e, X[:, j], side="right"), minlength=e.size + 1)
            for j, e in enumerate(self.edges)
        ]

    def to_arrays(self) -> dict[str, NDArray[Any]]:
        """The artifact's arrays for this reference, keyed by ``ARRAY_KEYS`` (and
        ``PROBABILITIES_KEY`` when it has probabilities)."""
        arrays = {
            "drift_edges": np.concatenate(self.edges),
            "drift_edge_counts": np.array([e.size for e in self.edges], dtype=np.int64),
            "drift_feature_shares": np.concatenate(self.feature_shares),
            "drift_label_shares": self.label_shares,
        }
        if self.probabilities is not None:
            arrays[PROBABILITIES_KEY] = self.probabilities.astype(np.float32)
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, NDArray[Any]]) -> DriftReference:
        """Rebuild from an artifact's arrays (``ARRAY_KEYS`` present); raises ValueError naming the problem."""
        counts = arrays["drift_edge_counts"]
        if counts.ndim != 1 or counts.dtype.kind not in "iu" or np.any(counts < 1):
            raise ValueError("key 'drift_edge_counts' must be a 1-d array of positive integers")
        for key in ("drift_edges", "drift_feature_shares", "drift_label_shares"):
            if arrays[key].ndim != 1 or arrays[key].dtype.kind != "f":
                raise ValueError(f"key {key!r} must be a 1-d floating-point array")
        edges, all_shares = arrays["drift_edges"], arrays["drift_feature_shares"]
        if edges.size != counts.sum() or all_shares.size != counts.sum() + counts.size:
            raise ValueError(
                f"{edges.size} drift edges and {all_shares.size} bin shares do not fit "
                f"{counts.tolist()} edges per feature"
            )
        edge_ends = np.cumsum(counts)[:-1]
        share_ends = np.cumsum(counts + 1)[:-1]
        probabilities = arrays.get(PROBABILITIES_KEY)
        if probabilities is not None and probabilities.dtype.kind != "f":
            raise ValueError(f"key {PROBABILITIES_KEY!r} must be floating point")
        return cls(
            edges=tuple(np.split(edges, edge_ends)),
            feature_shares=tuple(np.split(all_shares, share_ends)),
            label_shares=arrays["drift_label_shares"],
            probabilities=probabilities,
        )


def _check_shares(s: NDArray[np.float64], what: str) -> None:
    if not np.all(np.isfinite(s)) or np.any(s < 0):
        raise ValueError(f"drift reference {what} must be finite and non-negative")
    if abs(float(s.sum()) - 1.0) > _SUM_TOLERANCE:
        raise ValueError(f"drift reference {what} sum to {float(s.sum())}, not 1")
