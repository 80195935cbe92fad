"""Drift test helpers: the metrics a scrape shows, PSI worked out independently, a V2 body."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

Samples = dict[str, list[tuple[dict[str, str], float]]]


def samples(text: str) -> Samples:
    """Every sample of a Prometheus text exposition: name -> [(labels, value), ...]."""
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def series(found: Samples, name: str, version: str, key: str, **match: str) -> dict[str, float]:
    """``name``'s values for ``version`` keyed by the label ``key``, among those matching ``match``."""
    return {
        labels[key]: value
        for labels, value in found.get(name, [])
        if labels.get("model_version") == version
        and all(labels.get(k) == v for k, v in match.items())
    }


def hand_psi(counts: dict[str, float], reference: dict[str, float]) -> float:
    """PSI of ``counts`` against ``reference`` shares, in plain Python: the oracle for model.psi."""
    total = sum(counts.values())
    psi = 0.0
    for key, share in reference.items():
        o, r = max(counts.get(key, 0.0) / total, 1e-4), max(share, 1e-4)
        psi += (o - r) * math.log(o / r)
    return psi


def v2_body(X: np.ndarray) -> dict[str, Any]:
    """An Open Inference Protocol request classifying readings ``X`` (n, n_features)."""
    return {
        "inputs": [
            {"name": "x", "shape": list(X.shape), "datatype": "FP64", "data": X.ravel().tolist()}
        ]
    }
