"""Input standardization whose statistics are fitted on training data and stored with the weights."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike, NDArray


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Maps raw features to zero mean and unit variance: ``(X - mean) / scale``.

    mean : ndarray of shape (n_features,)
    scale : ndarray of shape (n_features,), strictly positive
    """

    mean: NDArray[np.float64]
    scale: NDArray[np.float64]

    @classmethod
    def fit(cls, X: ArrayLike) -> Standardizer:
        """Fit on training readings ``X`` of shape (n_samples, n_features).

        A constant (or numerically constant) feature gets scale 1, so it maps to 0 instead of
        NaN or infinity.
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] == 0:
            raise ValueError(
                f"Standardizer.fit needs X of shape (n_samples, n_features), got {X.shape}"
            )
        mean = X.mean(axis=0)
        std = X.std(axis=0)
        tiny = 10 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(mean))
        scale = np.where(std > tiny, std, 1.0)
        return cls(mean=mean, scale=scale)

    def transform(self, X: ArrayLike) -> NDArray[np.float64]:
        """Standardize ``X`` of shape (n_samples, n_features); returns a new float64 array."""
        Xs = np.asarray(X, dtype=np.float64) - self.mean
        Xs /= self.scale
        return Xs
