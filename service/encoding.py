"""The JSON of a batch answer, written in bulk rather than built one dict per reading."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import orjson
from numpy.typing import NDArray


class BatchEncoder:
    """Writes `{"model_version", "results": [...]}` for one model's classes.

    Building a dict per reading and serializing it costs about 1 µs per reading in Python; here
    one orjson call writes every number, numpy lays the values out between the fixed pieces of
    a row, and one join makes the answer (100 readings with ids: 64 µs, against 95 µs for the
    %-formatted row template this replaced and 114 µs for orjson of the dicts; timeit, 2 CPUs).
    The bytes are identical to `orjson.dumps` of the dicts (same key order, same number
    formatting), which the tests check.
    """

    def __init__(self, classes: Sequence[str], version: str) -> None:
        names = [orjson.dumps(name) for name in classes]
        # The fixed text before each value of a row: label, confidence, each probability,
        # in_training_range, novel, novelty; then the id fragment and the row's end.
        self._pieces = np.array(
            [
                b'{"label":',
                b',"confidence":',
                *[
                    (b',"probabilities":{' if j == 0 else b",") + name + b":"
                    for j, name in enumerate(names)
                ],
                b'},"in_training_range":',
                b',"novel":',
                b',"novelty":',
            ],
            dtype=object,
        )
        self._labels = np.array(names, dtype=object)
        self._booleans = np.array([b"false", b"true"], dtype=object)
        self._head = b'{"model_version":' + orjson.dumps(version) + b',"results":['

    def encode(
        self,
        P: NDArray[np.float64],
        best: NDArray[np.intp],
        within: NDArray[np.bool_],
        novelty: NDArray[np.float64],
        ids: Sequence[str | None] | None,
    ) -> bytes:
        """The answer's bytes.

        P : ndarray of shape (n, n_classes), calibrated probabilities
        best : ndarray of shape (n,), index of each reading's label
        within : ndarray of shape (n,), in-training-range flags
        novelty : ndarray of shape (n,), novelty scores (novel where > 1)
        ids : the readings' ids (None where absent), or None when no reading has one
        """
        n, k = P.shape
        # Each row's numbers in the order they are written: confidence, k probabilities, novelty.
        numbers = np.empty((n, k + 2), dtype=np.float64)
        numbers[:, 0] = P[np.arange(n), best]
        numbers[:, 1 : k + 1] = P
        numbers[:, k + 1] = novelty
        text = orjson.dumps(numbers.ravel(), option=orjson.OPT_SERIALIZE_NUMPY)
        values = np.array(text[1:-1].split(b","), dtype=object).reshape(n, k + 2)
        # A row: piece, value, piece, value, ..., then the id fragment and "},".
        cells = np.empty((n, 2 * (k + 5) + 2), dtype=object)
        cells[:, 0 : 2 * (k + 5) : 2] = self._pieces
        cells[:, 1] = self._labels[best]
        cells[:, 3 : 2 * k + 4 : 2] = values[:, : k + 1]
        cells[:, 2 * k + 5] = self._booleans[within.astype(np.intp)]
        cells[:, 2 * k + 7] = self._booleans[(novelty > 1.0).astype(np.intp)]
        cells[:, 2 * k + 9] = values[:, k + 1]
        if ids is None:
            cells[:, 2 * k + 10] = b""
        else:
            cells[:, 2 * k + 10] = [b"" if i is None else b',"id":' + orjson.dumps(i) for i in ids]
        cells[:, 2 * k + 11] = b"},"
        rows = b"".join(cells.ravel().tolist())
        return self._head + rows[:-1] + b"]}"
