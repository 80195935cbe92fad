"""The synthetic generator's distribution and CSV loading, valid and invalid."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from training.data import (
    SYNTHETIC_BOXES,
    DataError,
    load_csv,
    load_data,
    order_classes,
    synthetic,
    write_csv,
)

# The seed tutorial's boxes, written out again here so the test does not check the code
# against itself: class -> ((temperature low, high), (vibration low, high)).
TUTORIAL = {
    "normal": ((20, 40), (0.5, 2.0)),
    "warning": ((35, 55), (1.5, 4.0)),
    "critical": ((50, 80), (3.5, 7.0)),
}


@pytest.mark.parametrize("n", [3, 10, 3001, 30_000])
def test_generator_class_counts_are_equal(n: int) -> None:
    data = synthetic(n, np.random.default_rng(0))
    counts = np.bincount(data.y, minlength=3)
    assert counts.sum() == n == data.X.shape[0]
    assert counts.max() - counts.min() <= (0 if n % 3 == 0 else 1)
    assert data.classes == ("normal", "warning", "critical")
    assert data.features == ("temperature", "vibration")
    assert data.units == ("°C", "mm/s")


def test_generator_draws_uniformly_from_each_tutorial_box() -> None:
    data = synthetic(60_000, np.random.default_rng(1))
    assert SYNTHETIC_BOXES == TUTORIAL
    for k, name in enumerate(data.classes):
        X = data.X[data.y == k]
        for j, (low, high) in enumerate(TUTORIAL[name]):
            values = X[:, j]
            assert values.min() >= low and values.max() <= high
            width = high - low
            # 20,000 uniform draws: the extremes come within 0.1 % of the edges, the mean and
            # variance match U(low, high) to well under 2 %.
            assert values.min() - low < 1e-3 * width and high - values.max() < 1e-3 * width
            assert values.mean() == pytest.approx((low + high) / 2, abs=0.01 * width)
            assert values.var() == pytest.approx(width**2 / 12, rel=0.03)
            # Each tenth of the range holds about a tenth of the draws.
            deciles = np.histogram(values, bins=10, range=(low, high))[0] / values.size
            assert np.all(np.abs(deciles - 0.1) < 0.01)


def test_generator_is_shuffled_and_seeded() -> None:
    a = synthetic(900, np.random.default_rng(5))
    b = synthetic(900, np.random.default_rng(5))
    c = synthetic(900, np.random.default_rng(6))
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.array_equal(a.X, c.X)
    # Not three sorted blocks: the first hundred rows hold every class.
    assert set(a.y[:100]) == {0, 1, 2}


def test_class_order() -> None:
    assert order_classes({"critical", "normal", "warning"}) == ("normal", "warning", "critical")
    assert order_classes({"critical", "normal"}) == ("normal", "critical")
    assert order_classes({"ok", "broken", "worn"}) == ("broken", "ok", "worn")
    assert order_classes({"normal", "broken"}) == ("broken", "normal")


def test_load_csv_reads_features_labels_groups_and_lines(write_csv) -> None:
    path = write_csv(
        "id,vibration,temperature,label,machine\n"
        "a,1.0,30,normal,m1\n"
        "b,2.5,45,warning,m2\n"
        "c,5.0,70,critical,m1\n"
        "d,1.2,31,normal ,m3\n"
    )
    data = load_csv(path, features=("temperature", "vibration"), group_column="machine")
    np.testing.assert_array_equal(data.X, [[30, 1.0], [45, 2.5], [70, 5.0], [31, 1.2]])
    assert data.classes == ("normal", "warning", "critical")
    np.testing.assert_array_equal(data.y, [0, 1, 2, 0])
    assert data.groups is not None
    assert data.groups[0] == data.groups[2] and len(set(data.groups)) == 3
    np.testing.assert_array_equal(data.lines, [2, 3, 4, 5])
    assert data.units == ("", "")
    assert data.description["rows_dropped"] == 0


def test_labels_are_the_text_in_the_file(write_csv) -> None:
    # pandas would read these as the numbers 1.0 (twice) and 7.0 (twice).
    path = write_csv("p,label\n1,1\n2,1.0\n3,007\n4, 7\n5,1\n")
    data = load_csv(path, features=("p",))
    assert data.classes == ("007", "1", "1.0", "7")
    np.testing.assert_array_equal(data.y, [1, 2, 0, 3, 1])


def test_load_csv_any_number_of_features_and_classes(write_csv) -> None:
    path = write_csv("p,label\n1,b\n2,a\n3,c\n4,a\n")
    data = load_csv(path, features=("p",))
    assert data.X.shape == (4, 1)
    assert data.classes == ("a", "b", "c")
    np.testing.assert_array_equal(data.y, [1, 0, 2, 0])


@pytest.mark.parametrize(
    ("text", "line", "column", "problem"),
    [
        ("temperature,label\n1,normal\n", 1, "vibration", "missing feature 2 column"),
        ("temperature,vibration,kind\n1,2,normal\n", 1, "label", "missing label column"),
        (
            "temperature,vibration,label\n1,2,normal\n3,x7,warning\n",
            3,
            "vibration",
            "non-numeric value 'x7'",
        ),
        (
            "temperature,vibration,label\n1,2,normal\n3,4,warning\nnan,1,normal\n",
            4,
            "temperature",
            "NaN",
        ),
        ("temperature,vibration,label\n1,2,normal\n3,inf,warning\n", 3, "vibration", "infinite"),
        (
            "temperature,vibration,label\n1,2,normal\n3,-Infinity,warning\n",
            3,
            "vibration",
            "infinite",
        ),
        (
            "temperature,vibration,label\n1,2,normal\n,4,warning\n",
            3,
            "temperature",
            "missing value",
        ),
        ("temperature,vibration,label\n1,2,normal\n3,4,\n", 3, "label", "missing label"),
        # The first bad line wins, whichever column it is in.
        (
            "temperature,vibration,label\n1,2,normal\n3,abc,warning\nzz,4,normal\n",
            3,
            "vibration",
            "non-numeric",
        ),
        (
            "temperature,vibration,label\n1,2,normal\n\n3,4,warning\n",
            3,
            "temperature",
            "missing value",
        ),
        # A quoted newline belongs to the value: the lines are those an editor shows.
        (
            'temperature,vibration,label\n1,2,"nor\nmal"\n3,x7,warning\n',
            4,
            "vibration",
            "non-numeric value 'x7'",
        ),
        (
            'temperature,vibration,label\r1,2,"nor\r\nmal"\r3,,warning\r',
            4,
            "vibration",
            "missing value",
        ),
        # True/False is no reading, though pandas would read it as 1/0.
        (
            "temperature,vibration,label\n1,True,normal\n3,False,warning\n",
            2,
            "vibration",
            "non-numeric value 'True'",
        ),
        # Squares of readings this large overflow float64: the variance would be infinite.
        (
            "temperature,vibration,label\n1,2,normal\n-1e200,4,warning\n",
            3,
            "temperature",
            "value beyond ±1e+100 '-1e+200'",
        ),
        # Each column once: pandas would quietly read the second as 'temperature.1'.
        (
            "temperature,vibration,label,temperature\n1,2,normal,3\n",
            1,
            "temperature",
            "the header names 'temperature' twice",
        ),
    ],
)
def test_bad_cells_are_named_by_file_line_and_column(
    write_csv, text: str, line: int, column: str, problem: str
) -> None:
    path = write_csv(text)
    with pytest.raises(DataError) as error:
        load_csv(path)
    message = str(error.value)
    assert str(path) in message
    assert f"line {line}," in message
    assert f"column '{column}'" in message
    assert problem in message


def test_drop_invalid_skips_bad_rows_and_counts_them(write_csv) -> None:
    path = write_csv(
        "temperature,vibration,label\n1,2,normal\nx,2,normal\n3,4,warning\n5,,critical\n6,7,critical\n"
    )
    data = load_csv(path, drop_invalid=True)
    assert data.description["rows_dropped"] == 2
    assert data.description["rows_read"] == 5
    np.testing.assert_array_equal(data.X, [[1, 2], [3, 4], [6, 7]])
    np.testing.assert_array_equal(data.lines, [2, 4, 6])
    assert data.classes == ("normal", "warning", "critical")


def test_missing_group_column_and_value(write_csv) -> None:
    path = write_csv("temperature,vibration,label\n1,2,normal\n")
    with pytest.raises(DataError, match=r"line 1, column 'cycle': missing group column"):
        load_csv(path, group_column="cycle")
    path = write_csv("temperature,vibration,label,cycle\n1,2,normal,0\n1,2,normal,\n", "g.csv")
    with pytest.raises(DataError, match=r"line 3, column 'cycle': missing group"):
        load_csv(path, group_column="cycle")


def test_unknown_class_for_an_existing_model(write_csv) -> None:
    path = write_csv("temperature,vibration,label\n1,2,normal\n3,4,broken\n")
    with pytest.raises(DataError, match=r"line 3, column 'label': unknown class 'broken'"):
        load_csv(path, classes=("normal", "warning", "critical"))


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda p: None, "does not exist"),
        (lambda p: p.write_text(""), "empty"),
        (lambda p: p.write_text("temperature,vibration,label\n"), "no data rows"),
        (lambda p: p.write_bytes(b"temperature,vibration,label\n\xff\xfe,1,\x00\n"), "cannot read"),
    ],
)
def test_unreadable_files(tmp_path: Path, setup, expected: str) -> None:
    path = tmp_path / "data.csv"
    setup(path)
    with pytest.raises(DataError, match=expected) as error:
        load_csv(path)
    assert str(path) in str(error.value)


@pytest.mark.parametrize("name", ["synthetic.csv", "synthetic.csv.gz", "synthetic.parquet"])
def test_written_synthetic_csv_reads_back(tmp_path: Path, name: str) -> None:
    # `python -m training generate --out NAME` writes what the name says, as --data reads it.
    data = synthetic(300, np.random.default_rng(2))
    path = tmp_path / "out" / name
    write_csv(data, path)
    back = load_data(path)
    np.testing.assert_allclose(back.X, data.X, rtol=1e-5)
    np.testing.assert_array_equal(back.y, data.y)
    assert back.classes == data.classes
