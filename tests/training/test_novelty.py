"""Novelty of the default model: what issue 15 asks of it on synthetic, fresh and far readings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from numpy.typing import NDArray

import model
from model.novelty import threshold_for_rate
from tests.training.conftest import TINY_TRAIN
from training import pipeline
from training.cli import main
from training.data import SYNTHETIC_BOXES, synthetic
from training.fit import FitConfig

# Every class box widened by this much on each side (°C, mm/s): readings outside all of them
# are unlike any training reading.
WIDEN = (5.0, 0.5)


@pytest.fixture(scope="module")
def default_classifier(tmp_path_factory: pytest.TempPathFactory) -> model.Classifier:
    """The model `python -m training` writes with no options (300,000 readings, seed 0)."""
    path = tmp_path_factory.mktemp("default") / "model.npz"
    assert main(["--out", str(path), "--quiet", "--json"]) == 0
    return model.load(path)


def far_from_every_box(n: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """Uniform over [0, 100] °C x [0, 10] mm/s, kept only outside every widened class box."""
    X = rng.random((n, 2)) * [100.0, 10.0]
    outside = np.ones(n, dtype=bool)
    for (t_lo, t_hi), (v_lo, v_hi) in SYNTHETIC_BOXES.values():
        inside = (
            (X[:, 0] >= t_lo - WIDEN[0])
            & (X[:, 0] <= t_hi + WIDEN[0])
            & (X[:, 1] >= v_lo - WIDEN[1])
            & (X[:, 1] <= v_hi + WIDEN[1])
        )
        outside &= ~inside
    return X[outside]


def test_far_from_every_box_keeps_the_issue_examples() -> None:
    rng = np.random.default_rng(0)
    kept = far_from_every_box(100_000, rng)
    assert 0.5 < kept.shape[0] / 100_000 < 0.9
    # The filter itself: nothing kept lies inside a widened box, and the issue's examples
    # would be kept.
    for (t_lo, t_hi), (v_lo, v_hi) in SYNTHETIC_BOXES.values():
        inside = (
            (kept[:, 0] >= t_lo - WIDEN[0])
            & (kept[:, 0] <= t_hi + WIDEN[0])
            & (kept[:, 1] >= v_lo - WIDEN[1])
            & (kept[:, 1] <= v_hi + WIDEN[1])
        )
        assert not inside.any()
        for t, v in ((25.0, 6.5), (75.0, 0.6)):
            assert not (
                t_lo - WIDEN[0] <= t <= t_hi + WIDEN[0] and v_lo - WIDEN[1] <= v <= v_hi + WIDEN[1]
            )


def test_default_model_flags_readings_unlike_any_training_reading(
    default_classifier: model.Classifier,
) -> None:
    X = far_from_every_box(200_000, np.random.default_rng(1))
    flagged = np.mean(default_classifier.novelty(X) > 1)
    assert flagged >= 0.95
    for reading in ([25.0, 6.5], [75.0, 0.6]):
        assert default_classifier.novelty_one(reading) > 1


def test_default_model_rarely_flags_fresh_training_distribution_readings(
    default_classifier: model.Classifier,
) -> None:
    fresh = synthetic(300_000, np.random.default_rng(12345)).X
    assert np.mean(default_classifier.novelty(fresh) > 1) <= 0.01


def test_a_reading_a_million_standard_deviations_out_is_novel(
    default_classifier: model.Classifier,
) -> None:
    clf = default_classifier
    mean, scale = clf.standardizer.mean, clf.standardizer.scale
    for direction in ([1, 0], [0, 1], [-1, 0], [0, -1], [1, 1], [-1, 1]):
        reading = mean + 1e6 * np.asarray(direction) * scale
        assert clf.novelty(reading[None, :])[0] > 1
        assert clf.novelty_one(reading.tolist()) > 1


def test_default_model_stores_what_it_measured(default_classifier: model.Classifier) -> None:
    novelty = default_classifier.metadata["metrics"]["test"]["novelty"]
    assert novelty["method"] == default_classifier.novelty_model.method == "class_mahalanobis"
    assert novelty["threshold"] == default_classifier.novelty_model.threshold
    assert novelty["target_false_alarm_rate"] == default_classifier.novelty_model.target_rate
    assert novelty["target_false_alarm_rate"] == 0.005
    assert novelty["validation_false_alarm_rate"] <= 0.005
    assert 0.0 < novelty["false_alarm_rate"] <= 0.01


def test_threshold_comes_from_validation_readings_not_training_ones() -> None:
    parts = pipeline.synthetic_parts(3000, np.random.default_rng(4))
    result = pipeline.train(parts, FitConfig(epochs=1), np.random.default_rng(5), novelty_rate=0.02)
    clf = result.classifier
    expected = threshold_for_rate(
        clf.novelty_model.distance(clf.standardizer.transform(parts.validation.X)), 0.02
    )
    assert clf.novelty_model.threshold == expected
    on_train = threshold_for_rate(
        clf.novelty_model.distance(clf.standardizer.transform(parts.train.X)), 0.02
    )
    assert clf.novelty_model.threshold != on_train


def test_novelty_rate_flag_sets_the_target(tmp_path: Path, capsys) -> None:
    out = tmp_path / "m.npz"
    assert main([*TINY_TRAIN, "--novelty-rate", "0.05", "--out", str(out), "--json"]) == 0
    novelty = json.loads(capsys.readouterr().out.splitlines()[-1])["novelty"]
    assert novelty["target_false_alarm_rate"] == 0.05
    assert 0.04 <= novelty["validation_false_alarm_rate"] <= 0.05
    assert model.load(out).novelty_model.target_rate == 0.05


def test_metrics_table_names_the_novel_share(tmp_path: Path, capsys) -> None:
    assert main([*TINY_TRAIN, "--out", str(tmp_path / "m.npz")]) == 0
    assert "of test readings flagged (target 0.50%" in capsys.readouterr().out


@pytest.mark.parametrize("rate", ["1", "-0.01", "1.5", "x"])
def test_novelty_rate_outside_0_to_1_exits_2(rate: str, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        main([*TINY_TRAIN, "--novelty-rate", rate])
    assert raised.value.code == 2
    assert "--novelty-rate" in capsys.readouterr().err


def test_evaluate_reports_the_novel_share(tiny_artifact: Path, tmp_path: Path, capsys) -> None:
    data = tmp_path / "data.csv"
    assert main(["generate", "--samples", "600", "--out", str(data)]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny_artifact), "--data", str(data), "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0.0 <= metrics["novel"] <= 0.05
