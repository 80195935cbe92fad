"""Which novelty method: class Mahalanobis (what training fits) beside k-nearest-neighbour distance.

Run ``python -m bench.novelty_methods [--real-data FILE.csv]``; prints one Markdown table, the
one behind the README's choice. Thresholds come from validation readings at 0.5 %, as in
training. k-NN quality is computed with scipy's k-d tree; its cost is that of the brute-force
numpy version a numpy-only ``model/`` would have to ship, timed on 100,000 readings and scaled.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

import model
from bench.context import REAL_DATA
from model.novelty import threshold_for_rate
from training.data import SYNTHETIC_BOXES, load_csv, synthetic
from training.pipeline import Parts, split_parts, synthetic_parts

RATE = 0.005
Scorer = Callable[[NDArray[np.float64]], NDArray[np.float64]]


def far_readings(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Uniform over [0, 100] °C x [0, 10] mm/s, outside every class box widened by 5 °C, 0.5 mm/s."""
    X = rng.random((n, 2)) * [100.0, 10.0]
    outside = np.ones(n, dtype=bool)
    for (t_lo, t_hi), (v_lo, v_hi) in SYNTHETIC_BOXES.values():
        outside &= ~(
            (X[:, 0] >= t_lo - 5)
            & (X[:, 0] <= t_hi + 5)
            & (X[:, 1] >= v_lo - 0.5)
            & (X[:, 1] <= v_hi + 0.5)
        )
    return X[outside]


def knn_scorers(Xs_train: NDArray[np.float64], m: int, k: int, seed: int) -> tuple[Scorer, Scorer]:
    """Distance to the k-th nearest of ``m`` training readings: (k-d tree, brute-force numpy)."""
    from scipy.spatial import cKDTree

    reference = Xs_train[np.random.default_rng(seed).choice(Xs_train.shape[0], m, replace=False)]
    tree = cKDTree(reference)
    squared_norms = (reference**2).sum(axis=1)

    def tree_score(Xs: NDArray[np.float64]) -> NDArray[np.float64]:
        distances: NDArray[np.float64] = tree.query(Xs, k=[k])[0][:, 0]
        return distances

    def brute_score(Xs: NDArray[np.float64]) -> NDArray[np.float64]:
        out = np.empty(Xs.shape[0])
        for start in range(0, Xs.shape[0], 4096):
            chunk = Xs[start : start + 4096]
            D = squared_norms - 2.0 * chunk @ reference.T
            D += (chunk**2).sum(axis=1, keepdims=True)
            out[start : start + 4096] = np.sqrt(
                np.maximum(np.partition(D, k - 1, axis=1)[:, k - 1], 0)
            )
        return out

    return tree_score, brute_score


def seconds(call: Callable[[], object]) -> float:
    """The fastest of 3 calls."""
    return min(timeit.repeat(call, number=1, repeat=3))


def compare(name: str, parts: Parts, synthetic_data: bool) -> list[str]:
    """One table row per method for one data set."""
    standardizer = model.Standardizer.fit(parts.train.X)
    Xs_train = standardizer.transform(parts.train.X)
    Xs_validation = standardizer.transform(parts.validation.X)
    mahalanobis = model.ClassMahalanobis.fit(Xs_train, parts.train.y, len(parts.train.classes))
    methods: list[tuple[str, Scorer, Scorer]] = [
        ("class Mahalanobis", mahalanobis.distance, mahalanobis.distance)
    ]
    for k, m in ((5, 2000), (10, 10_000)):
        tree, brute = knn_scorers(Xs_train, m, k, seed=0)
        methods.append((f"k-NN, k = {k}, m = {m:,}", tree, brute))
    if synthetic_data:
        far = standardizer.transform(far_readings(200_000, np.random.default_rng(1)))
        fresh = standardizer.transform(synthetic(300_000, np.random.default_rng(2)).X)
    timing = standardizer.transform(synthetic(100_000, np.random.default_rng(3)).X)
    rows = []
    for label, score, brute in methods:
        threshold = threshold_for_rate(score(Xs_validation), RATE)
        test = np.mean(score(standardizer.transform(parts.test.X)) > threshold)
        cells = [name, label, f"{test:.2%}"]
        if synthetic_data:
            cells += [
                f"{np.mean(score(far) > threshold):.2%}",
                f"{np.mean(score(fresh) > threshold):.2%}",
            ]
        else:
            cells += ["", ""]
        cells.append(f"{seconds(lambda b=brute: b(timing)) * 10:.3f} s")
        rows.append("| " + " | ".join(cells) + " |")
    # The forward pass costs the same whatever its weights: random ones of the default shape.
    network = model.MLP.initialize(
        [Xs_train.shape[1], 64, 64, len(parts.train.classes)], np.random.default_rng(0)
    )
    classifier = model.Classifier(
        network=network,
        standardizer=standardizer,
        classes=parts.train.classes,
        features=parts.train.features,
        units=parts.train.units,
        feature_min=parts.train.X.min(axis=0),
        feature_max=parts.train.X.max(axis=0),
        novelty_model=mahalanobis,
    )
    raw = standardizer.mean + timing * standardizer.scale
    proba = seconds(lambda: classifier.predict_proba(raw)) * 10
    rows.append(f"| {name} | `predict_proba` (64x64 network), for scale | | | | {proba:.3f} s |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.novelty_methods", description=__doc__)
    parser.add_argument("--real-data", type=Path, default=REAL_DATA, metavar="FILE.csv")
    args = parser.parse_args()
    from threadpoolctl import threadpool_limits

    rows = [
        "| data | method | test flagged | far flagged | 300,000 fresh flagged "
        "| 1,000,000 readings, 1 BLAS thread |",
        "|---|---|---:|---:|---:|---:|",
    ]
    with threadpool_limits(limits=1, user_api="blas"):
        rows += compare("synthetic", synthetic_parts(300_000, np.random.default_rng(0)), True)
        if args.real_data.exists():
            data = load_csv(args.real_data, group_column="cycle")
            parts = split_parts(data, np.random.default_rng(0), 0.1, 0.2, "real", "label")
            rows += compare("hydraulic, by cycle", parts, False)
    print("\n".join(rows))


if __name__ == "__main__":
    main()
