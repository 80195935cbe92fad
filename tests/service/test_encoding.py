"""The bulk batch encoder writes exactly what orjson writes for the equivalent dicts."""

from __future__ import annotations

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from service.encoding import BatchEncoder


def reference(classes, version, P, best, within, novelty, ids) -> bytes:
    results = []
    for i, row in enumerate(P.tolist()):
        result = {
            "label": classes[best[i]],
            "confidence": row[best[i]],
            "probabilities": dict(zip(classes, row, strict=True)),
            "in_training_range": bool(within[i]),
            "novel": bool(novelty[i] > 1.0),
            "novelty": float(novelty[i]),
        }
        if ids is not None and ids[i] is not None:
            result["id"] = ids[i]
        results.append(result)
    return orjson.dumps({"model_version": version, "results": results})


names = st.text(min_size=1, max_size=12)


@settings(max_examples=200, deadline=None)
@given(
    classes=st.lists(names, min_size=2, max_size=5, unique=True),
    n=st.integers(1, 30),
    seed=st.integers(0, 2**32 - 1),
    with_ids=st.booleans(),
    id_text=st.text(max_size=20),
    version=st.text(max_size=20),
)
def test_bytes_equal_orjson_of_the_dicts(classes, n, seed, with_ids, id_text, version) -> None:
    rng = np.random.default_rng(seed)
    k = len(classes)
    P = rng.dirichlet(np.full(k, 0.3), size=n)
    # Extremes of float formatting: zeros, ones, subnormals, tiny and near-one values.
    specials = np.array([0.0, 1.0, 5e-324, 1e-300, 1 - 1e-16, 0.1, 1e-5, 123456789e-20])
    mask = rng.random(P.shape) < 0.2
    P[mask] = rng.choice(specials, size=int(mask.sum()))
    best = P.argmax(axis=1)
    within = rng.random(n) < 0.5
    novelty = rng.exponential(size=n) * rng.choice([1e-9, 1.0, 1e9], size=n)
    novelty[rng.random(n) < 0.2] = 1.0  # exactly at the threshold: not novel
    ids = [id_text + "%s%%" if rng.random() < 0.5 else None for _ in range(n)] if with_ids else None
    encoder = BatchEncoder(classes, version)
    expected = reference(classes, version, P, best, within, novelty, ids)
    assert encoder.encode(P, best, within, novelty, ids) == expected


@pytest.mark.parametrize("classes", [("a%s", "b%%"), ('quote"d', "back\\slash"), ("é", "名")])
def test_class_names_that_look_like_format_codes_or_need_escaping(classes) -> None:
    P = np.array([[0.25, 0.75], [0.5, 0.5]])
    best = P.argmax(axis=1)
    within = np.array([True, False])
    novelty = np.array([0.5, 3.0])
    encoded = BatchEncoder(classes, "v").encode(P, best, within, novelty, None)
    assert encoded == reference(classes, "v", P, best, within, novelty, None)
    assert orjson.loads(encoded)["results"][0]["label"] == classes[1]
