"""Issue 17's rare-class check on real data: critical kept at a 3 % share of hydraulic cycles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import model
from tests.training.conftest import needs_real_data
from tests.training.rare_class import REAL_DATA, write_rare_subset
from training.cli import main

# scikit-learn's MLPClassifier((64, 64)) on the same split (seed 0), trained on the training
# and validation cycles together: 346 of 540 critical test readings. Measured with
# `python -m tests.training.rare_class 0` (scikit-learn 1.9.1); see the README.
SKLEARN_CRITICAL_RECALL = 346 / 540
MISS_COSTS_10 = ["--cost", "critical:normal=10", "--cost", "critical:warning=10"]


def _train(data: Path, out: Path, capsys, *extra: str) -> dict:
    argv = ["--data", str(data), "--group-column", "cycle", "--seed", "0", "--out", str(out)]
    assert main([*argv, "--json", "-q", *extra]) == 0
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@needs_real_data
def test_rare_critical_class_recall_calibration_and_costs(tmp_path: Path, capsys) -> None:
    data = tmp_path / "rare.csv"
    assert write_rare_subset(REAL_DATA, data, np.random.default_rng(0)) == 46
    plain = _train(data, tmp_path / "plain.npz", capsys)
    critical = plain["per_class"]["critical"]
    assert critical["support"] == 540
    assert plain["decision"] == "argmax"
    assert critical["recall"] >= SKLEARN_CRITICAL_RECALL

    costly = _train(data, tmp_path / "costly.npz", capsys, *MISS_COSTS_10)
    # Costs change the decision only: the same network, the same probabilities.
    a, b = model.load(tmp_path / "plain.npz"), model.load(tmp_path / "costly.npz")
    for p, q in zip(a.network.params, b.network.params, strict=True):
        np.testing.assert_array_equal(p, q)
    assert costly["log_loss"] == plain["log_loss"] and costly["ece"] == plain["ece"]
    assert costly["decision"] == "least expected cost"
    assert costly["per_class"]["critical"]["recall"] >= critical["recall"]
    # On this split argmax misses 192 critical readings; the costs catch 27 of them (README).
    assert costly["expected_cost_per_1000"] < costly["expected_cost_per_1000_argmax"]


@needs_real_data
@pytest.mark.xfail(
    strict=True,
    reason="known shortfall: on this split the test ECE is 0.01005 (seeds 1-4: 0.0025-0.0049); "
    "the validation cycles do not show the test's confidently wrong ones (README)",
)
def test_rare_class_test_ece_at_most_one_percent(tmp_path: Path, capsys) -> None:
    data = tmp_path / "rare.csv"
    write_rare_subset(REAL_DATA, data, np.random.default_rng(0))
    assert _train(data, tmp_path / "plain.npz", capsys)["ece"] <= 0.01
