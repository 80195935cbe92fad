"""Physical limits: the known features' defaults, `--limits` parsing, and what training writes."""

from __future__ import annotations

import argparse
import math

import numpy as np
import pytest

from training.limits import feature_limits, known_limits, parse_limit


@pytest.mark.parametrize(
    ("feature", "unit", "low"),
    [
        ("temperature", "°C", -273.15),
        ("temperature", "", -273.15),
        ("temperature", "K", 0.0),
        ("temperature", "°F", -459.67),
        ("vibration", "mm/s", 0.0),
        ("vibration", "g", 0.0),
    ],
)
def test_known_features_are_bounded_below_by_physics(feature: str, unit: str, low: float) -> None:
    assert known_limits(feature, unit) == (low, math.inf)


def test_unknown_features_and_units_are_open() -> None:
    assert known_limits("temperature", "furlongs") == (-math.inf, math.inf)
    assert known_limits("oil_temp", "°C") == (-math.inf, math.inf)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("pressure=0:10", ("pressure", (0.0, 10.0))),
        ("pressure=0:", ("pressure", (0.0, math.inf))),
        ("speed=:3000", ("speed", (-math.inf, 3000.0))),
        ("x=:", ("x", (-math.inf, math.inf))),
        (" t = -5 : 5 ", ("t", (-5.0, 5.0))),
    ],
)
def test_limits_parse_with_either_side_open(text: str, expected: tuple) -> None:
    assert parse_limit(text) == expected


@pytest.mark.parametrize("text", ["pressure", "pressure=0", "=0:1", "p=a:1", "p=2:1", "p=nan:1"])
def test_malformed_limits_are_usage_errors(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        parse_limit(text)


def test_given_limits_win_over_known_ones_and_must_name_features() -> None:
    low, high = feature_limits(
        ("temperature", "vibration"), ("°C", "mm/s"), {"vibration": (0.0, 50.0)}
    )
    assert low == [-273.15, 0.0] and high == [math.inf, 50.0]
    with pytest.raises(ValueError, match="'pressure', which is not a feature"):
        feature_limits(("temperature",), ("°C",), {"pressure": (0.0, 1.0)})
    assert np.isinf(feature_limits(("a",), ("",), {})[0][0])


def test_training_writes_the_limits_into_the_artifact(write_csv, tmp_path, capsys) -> None:
    import model
    from tests.training.test_cli import GOOD_CSV
    from training.cli import main

    path, out = write_csv(GOOD_CSV), tmp_path / "m.npz"
    argv = ["--data", str(path), "--out", str(out), "--quiet", "--epochs", "1"]
    assert main([*argv, "--limits", "vibration=0:20"]) == 0
    clf = model.load(out)
    np.testing.assert_array_equal(clf.lower_limits, [-273.15, 0.0])
    np.testing.assert_array_equal(clf.upper_limits, [math.inf, 20.0])

    # Training data outside the limits is bad data, as is a limit on no feature.
    out.unlink()
    assert main([*argv, "--limits", "vibration=0:3"]) == 2
    assert (
        "readings of 'vibration' lie outside its physical limits [0, 3]" in capsys.readouterr().err
    )
    assert main([*argv, "--limits", "pressure=0:1"]) == 2
    assert "'pressure', which is not a feature" in capsys.readouterr().err
    assert not out.exists()


def test_limits_on_synthetic_data_are_written_and_checked(tmp_path, capsys) -> None:
    import model
    from training.cli import main

    out = tmp_path / "m.npz"
    argv = ["--samples", "3000", "--epochs", "1", "--out", str(out), "--quiet"]
    assert main([*argv, "--limits", "temperature=-40:125"]) == 0
    clf = model.load(out)
    np.testing.assert_array_equal(clf.lower_limits, [-40.0, 0.0])
    np.testing.assert_array_equal(clf.upper_limits, [125.0, math.inf])

    # Synthetic temperatures run from 20 to 80 °C; nothing but the limits checks them here.
    out.unlink()
    assert main([*argv, "--limits", "temperature=30:"]) == 2
    err = capsys.readouterr().err
    assert "'temperature'" in err and "physical limits [30, inf]" in err, err
    assert main([*argv, "--limits", "pressure=0:1"]) == 2
    assert "'pressure', which is not a feature" in capsys.readouterr().err
    assert not out.exists()


def test_training_keeps_the_limits_its_data_was_loaded_with(write_csv) -> None:
    from tests.training.test_cli import GOOD_CSV
    from training import pipeline
    from training.data import load_csv
    from training.fit import FitConfig

    path = write_csv(GOOD_CSV)
    data = load_csv(path, units=("°C", "mm/s"), limits={"vibration": (0.0, 20.0)})
    assert (data.lower_limits, data.upper_limits) == ((-273.15, 0.0), (math.inf, 20.0))
    parts = pipeline.split_parts(data, np.random.default_rng(0), 0.2, 0.2, str(path), "label")
    result = pipeline.train(parts, FitConfig(epochs=1), np.random.default_rng(1))
    np.testing.assert_array_equal(result.classifier.lower_limits, [-273.15, 0.0])
    np.testing.assert_array_equal(result.classifier.upper_limits, [math.inf, 20.0])
