"""Files as plants export them: ragged CSV rows, gzip-compressed CSV, Parquet."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from tests.training.conftest import TINY_TRAIN
from training.cli import main
from training.data import DataError, load_csv, load_data, load_parquet

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

GOOD = (
    "temperature,vibration,label,cycle\n"
    "30,1,normal,0\n31,1.5,normal,0\n45,2.5,warning,1\n46,3,warning,1\n70,5,critical,2\n"
)


def write_parquet(path: Path, columns: dict[str, list]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(
    ("text", "line", "found"),
    [
        ("temperature,vibration,label\n1,2,normal\n1,2,normal,9\n3,4,warning\n", 3, 4),
        ("temperature,vibration,label\n1,2,normal\n3,4,warning\n1,normal\n", 4, 2),
        # The only bad row is the last, without a final newline.
        ("temperature,vibration,label\n1,2,normal\n\n3,4,warning\n5,6", 5, 2),
        ("temperature,vibration,label\r\n1,2,normal\r\n3,4,warning,,\r\n", 3, 5),
        # Quotes: a quoted comma is part of a value, not a separator.
        ('temperature,vibration,label\n1,2,"nor,mal"\n3,4,warning,x\n', 3, 4),
        # Old Mac line endings: a lone \r ends a line, as an editor shows it.
        ("temperature,vibration,label\r1,2,normal\r3,4\r5,6,warning\r", 3, 2),
        ("temperature,vibration,label\r1,2,normal\r\r5,6,warning,7", 4, 4),
        # A quoted newline is part of a value: the line named is the one the row starts on.
        ('temperature,vibration,label\n1,2,"nor\nmal",9\n3,4,warning\n', 2, 4),
        ('temperature,vibration,label\n1,2,"nor\nmal"\n3,4\n', 4, 2),
    ],
)
def test_ragged_rows_name_file_and_line(write_csv, text: str, line: int, found: int) -> None:
    path = write_csv(text)
    for drop_invalid in (False, True):
        with pytest.raises(DataError) as error:
            load_csv(path, drop_invalid=drop_invalid)
        message = str(error.value)
        assert message.startswith(f"{path}, line {line}: {found} field")
        assert "where the header has 3" in message


def test_ragged_row_exits_2_from_the_command_line(write_csv, tmp_path: Path, capsys) -> None:
    path = write_csv("temperature,vibration,label\n1,2,normal\n1,2,normal,9\n")
    out = tmp_path / "m.npz"
    assert main(["--data", str(path), "--out", str(out), "-q"]) == 2
    assert f"{path}, line 3: 4 fields" in capsys.readouterr().err
    assert not out.exists()


def test_quoted_commas_and_blank_lines_are_not_ragged(write_csv) -> None:
    path = write_csv('temperature,vibration,label\n1,2,"normal"\n3,4,warning\n5,6,"critical"\n')
    assert load_csv(path).classes == ("normal", "warning", "critical")


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Spreadsheets set to a European locale separate columns with ';' (and write 30,5).
        (b"temperature;vibration;label\n30,5;1,2;normal\n", "columns separated by ';'"),
        (b"temperature\tvibration\tlabel\n30.5\t1.2\tnormal\n", "columns separated by tabs"),
        # Excel's "Unicode text", and a file saved as Latin-1 / Windows-1252.
        ("temperature,vibration,label\n30,1,normal\n".encode("utf-16"), ": UTF-16 text"),
        (
            b"temperature,vibration,label\n30,1,normal\r\n31,1,norm\xe9l\n",
            "line 3: cannot read as CSV: not UTF-8",
        ),
    ],
    ids=["semicolons", "tabs", "utf-16", "latin-1"],
)
def test_a_csv_a_spreadsheet_wrote_otherwise_says_what_to_change(
    tmp_path: Path, data: bytes, expected: str
) -> None:
    path = tmp_path / "export.csv"
    path.write_bytes(data)
    with pytest.raises(DataError) as error:
        load_csv(path)
    message = str(error.value)
    assert message.startswith(str(path)) and expected in message
    assert "UTF-8" in message or "commas" in message


def test_csv_gz_reads_like_csv(tmp_path: Path, write_csv) -> None:
    plain = write_csv(GOOD)
    packed = tmp_path / "data.csv.gz"
    packed.write_bytes(gzip.compress(GOOD.encode()))
    a, b = load_csv(plain, group_column="cycle"), load_data(packed, group_column="cycle")
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.groups, b.groups)
    np.testing.assert_array_equal(a.lines, b.lines)
    bad = tmp_path / "bad.csv.gz"
    bad.write_bytes(gzip.compress(b"temperature,vibration,label\n1,2,normal\n3,x,warning\n"))
    with pytest.raises(DataError, match=r"bad\.csv\.gz, line 3, column 'vibration'"):
        load_data(bad)
    ragged = tmp_path / "ragged.csv.gz"
    ragged.write_bytes(gzip.compress(b"temperature,vibration,label\n1,2,normal\n3,warning\n"))
    with pytest.raises(DataError, match=r"ragged\.csv\.gz, line 3: 2 fields"):
        load_data(ragged)


def _gzipped_rows(n: int) -> bytes:
    rng = np.random.default_rng(0)
    rows = "".join(f"{t:.6f},{v:.6f},normal\n" for t, v in rng.uniform(0, 9, (n, 2)))
    return gzip.compress(("temperature,vibration,label\n" + rows).encode())


def _damaged(packed: bytes, at: float) -> bytes:
    i = int(at * len(packed))
    return packed[:i] + bytes(b ^ 0x5A for b in packed[i : i + 16]) + packed[i + 16 :]


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda b: b[: len(b) // 2], id="cut in half"),
        pytest.param(lambda b: b[:-4], id="trailer cut"),
        pytest.param(lambda b: _damaged(b, 0.2), id="corrupt early"),
        pytest.param(lambda b: _damaged(b, 0.9), id="corrupt late"),
        pytest.param(lambda b: b"not gzip at all", id="not gzip"),
    ],
)
@pytest.mark.parametrize("rows", [20, 20_000])
def test_damaged_csv_gz_exits_2_naming_the_file(damage, rows: int, tmp_path: Path, capsys) -> None:
    path = tmp_path / "data.csv.gz"
    path.write_bytes(damage(_gzipped_rows(rows)))
    out = tmp_path / "m.npz"
    assert main(["--data", str(path), "--out", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"error: {path}: cannot read" in err
    assert not out.exists()


def test_parquet_reads_like_csv(tmp_path: Path, write_csv) -> None:
    a = load_csv(write_csv(GOOD), group_column="cycle")
    path = write_parquet(
        tmp_path / "data.parquet",
        {
            "cycle": [0, 0, 1, 1, 2],
            "label": ["normal", "normal", "warning", "warning", "critical"],
            "temperature": [30, 31, 45, 46, 70],  # integers, as an export may write them
            "vibration": [1.0, 1.5, 2.5, 3.0, 5.0],
        },
    )
    b = load_data(path, group_column="cycle")
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.groups, b.groups)
    assert a.classes == b.classes
    np.testing.assert_array_equal(b.lines, [1, 2, 3, 4, 5])
    assert b.description["source"] == "parquet"


def test_parquet_and_csv_agree_on_labels_and_groups(tmp_path: Path, write_csv) -> None:
    # Text as written, without surrounding spaces: " m1" is machine m1, "07" is not "7".
    labels, machines = ["07", " 7", "07 ", "7"], ["m1", " m1", "m2 ", "m2"]
    rows = "".join(
        f"{i},{lab},{m}\n" for i, (lab, m) in enumerate(zip(labels, machines, strict=True))
    )
    a = load_csv(write_csv("x,label,machine\n" + rows), features=("x",), group_column="machine")
    b = load_parquet(
        write_parquet(
            tmp_path / "d.parquet", {"x": [0, 1, 2, 3], "label": labels, "machine": machines}
        ),
        features=("x",),
        group_column="machine",
    )
    for data in (a, b):
        assert data.classes == ("07", "7")
        np.testing.assert_array_equal(data.y, [0, 1, 0, 1])
        np.testing.assert_array_equal(data.groups, [0, 0, 1, 1])


GOOD_COLUMNS = {
    "temperature": [30.0, 31.0, 45.0, 46.0],
    "vibration": [1.0, 1.5, 2.5, 3.0],
    "label": ["normal", "normal", "warning", "warning"],
}


@pytest.mark.parametrize(
    ("changes", "where", "problem"),
    [
        ({"vibration": [1.0, None, 2.5, 3.0]}, "row 2, column 'vibration'", "missing value"),
        (
            {"temperature": [30.0, 31.0, float("nan"), 46.0]},
            "row 3, column 'temperature'",
            "NaN or infinite value",
        ),
        (
            {"temperature": ["30", "31", "45", "hot"]},
            "row 4, column 'temperature'",
            "non-numeric value 'hot'",
        ),
        (
            {"vibration": [1.0, 1.5, 2.5, 1e300]},
            "row 4, column 'vibration'",
            "value beyond ±1e+100 '1e+300'",
        ),
        (
            {"label": ["normal", None, "warning", "warning"]},
            "row 2, column 'label'",
            "missing label",
        ),
        ({"label": ["normal", "normal", " ", "warning"]}, "row 3, column 'label'", "missing label"),
    ],
)
def test_bad_parquet_cells_are_named_by_row_and_column(
    tmp_path: Path, changes: dict, where: str, problem: str
) -> None:
    path = write_parquet(tmp_path / "bad.parquet", GOOD_COLUMNS | changes)
    with pytest.raises(DataError) as error:
        load_parquet(path)
    message = str(error.value)
    assert message.startswith(f"{path}, {where}: {problem}")
    assert "--drop-invalid skips them" in message
    assert len(load_parquet(path, drop_invalid=True)) == 3


def test_parquet_unknown_class_and_missing_column(tmp_path: Path) -> None:
    path = write_parquet(tmp_path / "d.parquet", GOOD_COLUMNS)
    with pytest.raises(DataError, match=r"row 3, column 'label': unknown class 'warning'"):
        load_parquet(path, classes=("normal", "critical"))
    with pytest.raises(DataError, match=r"d\.parquet, column 'cycle': missing group column"):
        load_parquet(path, group_column="cycle")


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (lambda p: None, "does not exist"),
        (
            lambda p: p.write_text("temperature,vibration,label\n1,2,normal\n"),
            "cannot read as Parquet",
        ),
        (lambda p: p.write_bytes(b""), "cannot read as Parquet"),
    ],
)
def test_unreadable_parquet(tmp_path: Path, setup, expected: str) -> None:
    path = tmp_path / "data.parquet"
    setup(path)
    with pytest.raises(DataError, match=expected) as error:
        load_parquet(path)
    assert str(path) in str(error.value)


def test_train_and_evaluate_on_parquet(tmp_path: Path, capsys) -> None:
    rng = np.random.default_rng(0)
    n = 600
    y = np.arange(n) % 3
    lows = np.array([[20, 0.5], [35, 1.5], [50, 3.5]])
    X = lows[y] + rng.random((n, 2)) * [20, 1.5]
    names = np.array(["normal", "warning", "critical"])[y]
    path = write_parquet(
        tmp_path / "d.parquet",
        {"temperature": X[:, 0], "vibration": X[:, 1], "label": names.tolist()},
    )
    out = tmp_path / "m.npz"
    assert main(["--data", str(path), "--out", str(out), *TINY_TRAIN[2:]]) == 0
    assert main(["evaluate", "--model", str(out), "--data", str(path), "--json"]) == 0
    assert '"n": 600' in capsys.readouterr().out


@pytest.mark.parametrize(
    "labels",
    [
        [1.0, 2.0, 0.5, 1.0, None],  # a column with a gap is float in pandas: 1.0, not 1
        [1, 2, 3, 1, None],  # float too: 1.0, 2.0, 3.0
        [True, False, True, False, None],
    ],
    ids=["float", "int-with-gap", "bool"],
)
def test_a_frame_exported_as_parquet_and_as_csv_gives_the_same_labels(
    tmp_path: Path, labels: list
) -> None:
    # A plant's export of one pandas frame to both formats: a model trained on the Parquet
    # file must know the classes that the CSV file names, so a label that is not text is read
    # from Parquet as the text pandas writes for it in a CSV.
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame(
        {"x": [0.0, 1.0, 2.0, 3.0, 4.0], "label": labels, "machine": [7.0, 7.0, 8.0, 8.0, 9.5]}
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    a, b = (
        load_data(tmp_path / name, features=("x",), group_column="machine", drop_invalid=True)
        for name in ("d.csv", "d.parquet")
    )
    assert a.classes == b.classes
    assert set(a.classes) == set(frame["label"].dropna().map(str))
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.groups, b.groups)
    with pytest.raises(DataError, match=r"row 5, column 'label': missing label"):
        load_data(tmp_path / "d.parquet", features=("x",))


def test_nullable_integer_and_binary_labels_read_as_a_csv_export_names_them(
    tmp_path: Path,
) -> None:
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    # pandas' nullable Int64: its CSV export writes 1, 2, not 1.0, 2.0 (pyarrow hands the column
    # to numpy as float when it has a null).
    frame = pd.DataFrame(
        {
            "x": [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],
            "label": pd.array([1, 2, 3, 1, 2, None], dtype="Int64"),
            "machine": pd.array([7, 7, 8, None, 9, 9], dtype="Int64"),
        }
    )
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet", index=False)
    a, b = (
        load_data(tmp_path / name, features=("x",), group_column="machine", drop_invalid=True)
        for name in ("d.csv", "d.parquet")
    )
    assert a.classes == b.classes == ("1", "2", "3")
    np.testing.assert_array_equal(a.groups, b.groups)
    # Text stored as Parquet binary (BYTE_ARRAY without the string annotation) is UTF-8 text.
    names = [b"normal", b"warning", b"normal", b"critical", b"warning"]
    table = pa.table({"x": frame["x"].to_numpy()[:5], "label": pa.array(names, type=pa.binary())})
    pq.write_table(table, tmp_path / "binary.parquet")
    assert load_data(tmp_path / "binary.parquet", features=("x",)).classes == (
        "normal",
        "warning",
        "critical",
    )


@pytest.mark.parametrize(
    "values",
    [[["a"], ["b"]], [{"k": 1}, {"k": 2}]],
    ids=["list", "struct"],
)
def test_a_nested_label_column_is_bad_data_naming_it(tmp_path: Path, values: list) -> None:
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    pq.write_table(pa.table({"x": [0.0, 1.0], "label": values}), tmp_path / "n.parquet")
    with pytest.raises(DataError, match=r"column 'label' holds .* values: a label"):
        load_data(tmp_path / "n.parquet", features=("x",))


@pytest.mark.parametrize(
    ("make", "what"),
    [
        (lambda text: gzip.compress(text.encode()), "gzip-compressed; name it .csv.gz"),
        (
            lambda text: b"PK\x03\x04\x14\x00\x00\x00\x08\x00\xa5\x9b" + text.encode(),
            "a zip archive",
        ),
        (lambda text: b"PAR1\x15\x04\x15\xc0\x9a\x0c" + text.encode(), "Parquet; name it .parquet"),
    ],
    ids=["gzip", "zip", "parquet"],
)
def test_a_file_that_is_no_csv_under_a_csv_name_says_what_it_is(
    tmp_path: Path, make, what: str
) -> None:
    path = tmp_path / "readings.csv"
    path.write_bytes(make("temperature,vibration,label\n1,2,normal\n"))
    with pytest.raises(DataError, match=f"readings.csv: cannot read as CSV: the file is {what}"):
        load_csv(path)


def test_a_quote_that_never_closes_says_where_it_opened(tmp_path: Path) -> None:
    rows = [f"{i},{i % 5},normal" for i in range(20_000)]
    rows[100] = '"' + rows[100]
    path = tmp_path / "readings.csv"
    # Longer than the csv module's field limit (131,072 characters) after the stray quote.
    path.write_text("temperature,vibration,label\n" + "\n".join(rows) + "\n")
    with pytest.raises(DataError, match="a quote opened on line 102 or after it is never closed"):
        load_csv(path)


def test_a_long_bad_value_is_quoted_short(tmp_path: Path) -> None:
    path = tmp_path / "readings.csv"
    path.write_text("temperature,vibration,label\n" + "x" * 5000 + ",1,normal\n")
    with pytest.raises(DataError) as raised:
        load_csv(path)
    message = str(raised.value)
    assert (
        f"line 2, column 'temperature': non-numeric value of 5000 characters {'x' * 60!r}..."
        in message
    )
    assert len(message) < 300


def test_header_names_with_spaces_around_them_are_the_names_without(tmp_path: Path) -> None:
    # A hand-edited or Excel header: " temperature" and "vibration " are those columns.
    rows = "".join(
        f"{20 + i % 50},{i % 7 * 0.5},{'normal' if i % 2 else 'warning'}\n" for i in range(60)
    )
    path = tmp_path / "spaced.csv"
    path.write_text(" temperature,vibration , label\n" + rows)
    plain = tmp_path / "plain.csv"
    plain.write_text("temperature,vibration,label\n" + rows)
    a, b = load_csv(path), load_csv(plain)
    np.testing.assert_array_equal(a.X, b.X)
    assert a.features == ("temperature", "vibration") and a.classes == b.classes
    # Two spellings of one name: which was meant is not for the reader to guess.
    four = "".join(f"1,{row}" for row in rows.splitlines(keepends=True))
    path.write_text("temperature,temperature ,vibration,label\n" + four)
    with pytest.raises(
        DataError, match=r"names 'temperature' twice \('temperature', 'temperature '\)"
    ):
        load_csv(path)
    missing = tmp_path / "missing.csv"
    missing.write_text("temp ,vibration,label\n" + rows)
    with pytest.raises(DataError, match=r"\(the header has: 'temp ', 'vibration', 'label'\)"):
        load_csv(missing)
