"""The issue-17 rare-class check: hydraulic cooler cycles with critical kept at a 3 % share.

Imported by the test that runs the check; run as a script
(``python -m tests.training.rare_class [SEED]``) it also fits scikit-learn's
``MLPClassifier((64, 64))`` on the same split, for the comparison the README quotes.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from bench.context import REAL_DATA

RARE_CLASS = "critical"
RARE_SHARE = 0.03


def write_rare_subset(
    source: Path, out: Path, rng: np.random.Generator, share: float = RARE_SHARE
) -> int:
    """Write the rows of all other cycles plus a random set of ``RARE_CLASS`` cycles to ``out``.

    As many rare cycles are kept as make them ``share`` of all kept cycles. Returns that number.
    """
    import pandas as pd

    frame = pd.read_csv(source)
    label_of_cycle = frame.groupby("cycle")["label"].first()
    rare = label_of_cycle.index[label_of_cycle == RARE_CLASS].to_numpy()
    n_other = int((label_of_cycle != RARE_CLASS).sum())
    n_rare = round(share * n_other / (1 - share))
    kept_rare = rng.choice(rare, size=n_rare, replace=False)
    keep = (frame["label"] != RARE_CLASS) | frame["cycle"].isin(kept_rare)
    frame[keep].to_csv(out, index=False)
    return n_rare


def _sklearn_recall(path: Path, seed: int) -> None:
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    from training.data import load_csv
    from training.pipeline import split_parts

    data = load_csv(path, label="label", group_column="cycle")
    # The same split as `python -m training --data FILE --group-column cycle --seed SEED`.
    parts = split_parts(data, np.random.default_rng(seed), 0.1, 0.2, str(path), "label")
    X = np.concatenate([parts.train.X, parts.validation.X])
    y = np.concatenate([parts.train.y, parts.validation.y])
    scaler = StandardScaler().fit(X)
    clf = MLPClassifier((64, 64), random_state=seed).fit(scaler.transform(X), y)
    predicted = clf.predict(scaler.transform(parts.test.X))
    k = data.classes.index(RARE_CLASS)
    is_rare = parts.test.y == k
    print(
        f"scikit-learn MLPClassifier((64, 64)), seed {seed}: {RARE_CLASS} recall "
        f"{np.mean(predicted[is_rare] == k):.4f} ({int(np.sum(predicted[is_rare] == k))} of "
        f"{int(is_rare.sum())}), accuracy {np.mean(predicted == parts.test.y):.4f}"
    )


if __name__ == "__main__":
    seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(f"/tmp/rare_{seed}.csv")
    n = write_rare_subset(REAL_DATA, out, np.random.default_rng(seed))
    print(f"wrote {out}: {n} {RARE_CLASS} cycles kept")
    _sklearn_recall(out, seed)
