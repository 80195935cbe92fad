"""Labelled readings for training: the built-in synthetic generator and validated CSV / Parquet loading."""

from __future__ import annotations

import codecs
import contextlib
import csv
import gzip
import io
import logging
import os
import tempfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from training.limits import Limits, feature_limits

logger = logging.getLogger(__name__)

# The seed tutorial's sensor distribution: per class, a uniform box over (temperature °C,
# vibration mm/s). The boxes overlap, so even the Bayes-optimal rule errs on ~2.5 % of readings.
SYNTHETIC_FEATURES = ("temperature", "vibration")
SYNTHETIC_UNITS = ("°C", "mm/s")
SYNTHETIC_CLASSES = ("normal", "warning", "critical")
SYNTHETIC_BOXES: dict[str, tuple[tuple[float, float], tuple[float, float]]] = {
    "normal": ((20.0, 40.0), (0.5, 2.0)),
    "warning": ((35.0, 55.0), (1.5, 4.0)),
    "critical": ((50.0, 80.0), (3.5, 7.0)),
}
# Class names in this order when a data set uses (some of) them; other names are sorted.
CANONICAL_CLASSES = SYNTHETIC_CLASSES
DEFAULT_FEATURES = SYNTHETIC_FEATURES
DEFAULT_LABEL = "label"
# A reading beyond this magnitude is refused like infinity. No sensor measures anything near
# it, and below it the squared deviations the Standardizer sums stay inside float64 for any
# number of rows (from about 1e154 a single square overflows).
LARGEST_READING = 1e100


class DataError(Exception):
    """Unusable input data; the message names the file and, where there is one, line and column."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Labelled readings.

    X : ndarray of shape (n_samples, n_features), float64 raw readings
    y : ndarray of shape (n_samples,), int indices into ``classes``
    lower_limits, upper_limits : per feature, the physical limits every reading lies within
        (``training.limits``): checked where the readings were loaded or drawn, and written
        into the artifact by training; open (-inf, inf) where nothing was checked
    groups : ndarray of shape (n_samples,) of int group ids, or None (rows are independent)
    lines : ndarray of shape (n_samples,) of the rows' line numbers in the source file, or None
    description : JSON-serializable facts about the source, for the artifact's metadata
    """

    X: NDArray[np.float64]
    y: NDArray[np.intp]
    classes: tuple[str, ...]
    features: tuple[str, ...]
    units: tuple[str, ...]
    lower_limits: tuple[float, ...]
    upper_limits: tuple[float, ...]
    groups: NDArray[np.intp] | None = None
    lines: NDArray[np.int64] | None = None
    description: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def subset(self, index: NDArray[np.intp]) -> Dataset:
        """The rows at ``index`` (n_rows,), in that order, with the same classes and features."""
        return Dataset(
            X=self.X[index],
            y=self.y[index],
            classes=self.classes,
            features=self.features,
            units=self.units,
            lower_limits=self.lower_limits,
            upper_limits=self.upper_limits,
            groups=None if self.groups is None else self.groups[index],
            lines=None if self.lines is None else self.lines[index],
            description=self.description,
        )


def class_counts(n_samples: int, n_classes: int) -> NDArray[np.intp]:
    """Per-class counts of a balanced data set of ``n_samples``: equal, the first classes get the remainder."""
    counts = np.full(n_classes, n_samples // n_classes, dtype=np.intp)
    counts[: n_samples % n_classes] += 1
    return counts


def synthetic(
    n_samples: int, rng: np.random.Generator, limits: Mapping[str, Limits] | None = None
) -> Dataset:
    """``n_samples`` readings from the seed tutorial's distribution, shuffled, classes balanced.

    Returns a Dataset with X of shape (n_samples, 2) (temperature °C, vibration mm/s) and labels
    normal / warning / critical in equal counts (differing by at most one when ``n_samples`` is
    not a multiple of three). ``limits`` (feature -> (low, high), as ``--limits`` gives them)
    replace the features' known physical limits; raises DataError for a name that is no feature
    or limits that do not hold the distribution.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    boxes = np.array(
        [SYNTHETIC_BOXES[name] for name in SYNTHETIC_CLASSES]
    )  # (class, feature, lo/hi)
    lower, upper = _physical_limits(SYNTHETIC_FEATURES, SYNTHETIC_UNITS, limits or {})
    # Every draw lies in its class's box, so limits that hold the boxes hold every reading, of
    # any number and seed: the boxes are what is checked, before anything is drawn.
    for j, name in enumerate(SYNTHETIC_FEATURES):
        least, most = boxes[:, j, 0].min(), boxes[:, j, 1].max()
        if least < lower[j] or most > upper[j]:
            raise DataError(
                f"synthetic readings of {name!r} range over [{least:g}, {most:g}], beyond its"
                f" physical limits [{lower[j]:g}, {upper[j]:g}] given with --limits"
            )
    y = np.repeat(np.arange(len(SYNTHETIC_CLASSES), dtype=np.intp), class_counts(n_samples, 3))
    y = y[rng.permutation(n_samples)]
    low, high = boxes[y, :, 0], boxes[y, :, 1]
    # The same arithmetic as Generator.uniform(low, high), drawn for all rows in one call.
    X = low + (high - low) * rng.random((n_samples, len(SYNTHETIC_FEATURES)))
    return Dataset(
        X=X,
        y=y,
        classes=SYNTHETIC_CLASSES,
        features=SYNTHETIC_FEATURES,
        units=SYNTHETIC_UNITS,
        lower_limits=lower,
        upper_limits=upper,
        description={
            "source": "synthetic",
            "rows": int(n_samples),
            "distribution": "uniform boxes per class, equal class counts",
            "boxes": {name: [list(t), list(v)] for name, (t, v) in SYNTHETIC_BOXES.items()},
        },
    )


def _physical_limits(
    features: tuple[str, ...], units: tuple[str, ...], given: Mapping[str, Limits]
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """``feature_limits`` as tuples; a name in ``given`` that is no feature is a DataError."""
    try:
        lower, upper = feature_limits(features, units, given)
    except ValueError as exc:
        raise DataError(str(exc)) from None
    return tuple(lower), tuple(upper)


def order_classes(names: set[str]) -> tuple[str, ...]:
    """Output order of class names: normal, warning, critical when the names are among those, else sorted."""
    if names <= set(CANONICAL_CLASSES):
        return tuple(name for name in CANONICAL_CLASSES if name in names)
    return tuple(sorted(names))


def _location(
    path: Path, line: int | None = None, column: str | None = None, row: int | None = None
) -> str:
    where = f"{path}"
    if line is not None:
        where += f", line {line}"
    if row is not None:
        where += f", row {row}"
    if column is not None:
        where += f", column '{column}'"
    return where


def _check_columns(
    path: Path,
    header: list[str],
    features: tuple[str, ...],
    label: str,
    group_column: str | None,
    line: int | None,
) -> list[str]:
    """The header's names of the columns to read: ``features``, ``label`` and the group column
    if any, in that order. A name written with spaces around it in the header (" temperature,")
    is the name without them, as labels and groups are.

    Raises DataError naming the first of them that ``header`` (a CSV file's line ``line``, or a
    Parquet file's schema when ``line`` is None) lacks or names twice.
    """
    wanted = {f"feature {i + 1}": name for i, name in enumerate(features)} | {"label": label}
    if group_column is not None:
        wanted["group"] = group_column
    holder = "the header" if line is not None else "the file"
    found = []
    for role, column in wanted.items():
        where = _location(path, line, column)
        named = [h for h in header if h.strip() == column]
        if not named:
            raise DataError(
                f"{where}: missing {role} column {column!r} ({holder} has:"
                f" {', '.join(map(repr, header))})"
                + (_separator_hint(header[0]) if line is not None and len(header) == 1 else "")
            )
        if len(named) > 1:
            times = "twice" if len(named) == 2 else f"{len(named)} times"
            spelt = f" ({', '.join(map(repr, named))})" if set(named) != {column} else ""
            raise DataError(f"{where}: {holder} names {column!r} {times}{spelt}")
        found.append(named[0])
    return found


def _wanted(features: tuple[str, ...], label: str, group_column: str | None) -> list[str]:
    """The names the columns ``_check_columns`` found go by: features, label, group."""
    return [*features, label, *([group_column] if group_column is not None else [])]


def _separator_hint(header: str) -> str:
    """What to change when a one-column header line holds another separator (a spreadsheet set
    to a European locale writes ';', and "30,5" for 30.5)."""
    for separator, name in ((";", "';'"), ("\t", "tabs")):
        if separator in header:
            return (
                f"; the file has columns separated by {name}: save it as CSV with commas"
                " between columns and points in numbers"
            )
    return ""


def _numeric_column(values: Any) -> tuple[NDArray[np.float64], list[tuple[NDArray[np.bool_], str]]]:
    """Parse one feature column (a pandas Series of n_rows) into float64 values (n_rows,).

    Also returns, per kind of problem, a boolean mask (n_rows,) of the rows that have it (see
    ``LARGEST_READING`` for what is too large). The C
    parser already turned clean numeric columns into numbers; a column with any text in it
    arrives as strings and is converted in one vectorized pass. True and False are text here
    (pandas reads them as booleans, which would be 1 and 0): a switch is no reading.
    """
    import pandas as pd

    missing = values.isna().to_numpy()
    if values.dtype.kind in "fiu":
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        not_number = np.zeros_like(missing)
    else:
        numbers = pd.to_numeric(values.astype(str), errors="coerce").to_numpy(
            dtype=np.float64, na_value=np.nan
        )
        not_number = np.isnan(numbers) & ~missing
        # to_numeric reads the text "nan" as NaN: that cell is reported as NaN, not as text.
        # Only the few cells that failed are looked at as strings.
        suspects = np.flatnonzero(not_number)
        spelled_nan = [str(v).strip().lower() == "nan" for v in values.iloc[suspects]]
        not_number[suspects[np.asarray(spelled_nan, dtype=bool)]] = False
    finite = np.isfinite(numbers)
    return numbers, [
        (missing, "missing value"),
        (not_number, "non-numeric value"),
        (~finite & ~missing & ~not_number, "NaN or infinite value"),
        (finite & (np.abs(numbers) > LARGEST_READING), f"value beyond ±{LARGEST_READING:g}"),
    ]


def _describe(what: str, column: Any, row: int) -> str:
    if what == "missing value":
        return what
    value = str(column.iloc[row])
    if len(value) <= _SHOWN_VALUE:
        return f"{what} {value!r}"
    return f"{what} of {len(value)} characters {value[:_SHOWN_VALUE]!r}..."


# The most characters of a bad value an error message quotes.
_SHOWN_VALUE = 60


_MISSING, _UNKNOWN = -1, -2


def _text_codes(values: Any) -> tuple[NDArray[np.intp], list[str]]:
    """Codes (n_rows,) and names of a label or group column (a pandas Series of text).

    Labels and groups are the text in the file without surrounding spaces: "normal " in a
    hand-edited file is "normal", and " m1" is machine m1 (else its rows could land on both
    sides of a split). A blank or missing one gets code -1. Names are numbered in order of
    first appearance, so a file's groups keep their ids whatever they are called. CSV and
    Parquet both go through here.
    """
    import pandas as pd

    codes, raw = pd.factorize(values)
    # Stripping the few distinct values, not every row, then merging those that now agree.
    index: dict[str, int] = {}
    merged = [index.setdefault(name, len(index)) if name else _MISSING for name in raw.str.strip()]
    return np.array([*merged, _MISSING], dtype=np.intp)[codes], list(index)


def _label_codes(
    codes: NDArray[np.intp], names: list[str], classes: tuple[str, ...] | None
) -> tuple[NDArray[np.intp], tuple[str, ...]]:
    """Class index per row (n_rows,) from a label column's ``_text_codes``, and the class order.

    A missing label gets code -1; with ``classes`` given, a label outside them gets -2.
    Without ``classes`` the order is made from the data (``order_classes``).
    """
    ordered = classes if classes is not None else order_classes(set(names))
    index = {name: i for i, name in enumerate(ordered)}
    # One lookup per name instead of one per row; the last entry serves code -1.
    lookup = np.array([index.get(n, _UNKNOWN) for n in names] + [_MISSING], dtype=np.intp)
    return lookup[codes], tuple(ordered)


def is_parquet(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a Parquet file (by its suffix, as plants' exports are named)."""
    return Path(path).suffix.lower() in (".parquet", ".pq")


def load_data(
    path: str | os.PathLike[str],
    features: tuple[str, ...] = DEFAULT_FEATURES,
    label: str = DEFAULT_LABEL,
    group_column: str | None = None,
    drop_invalid: bool = False,
    classes: tuple[str, ...] | None = None,
    units: tuple[str, ...] | None = None,
    limits: Mapping[str, Limits] | None = None,
) -> Dataset:
    """``load_parquet`` for a ``.parquet`` file, ``load_csv`` (plain or ``.gz``) otherwise.

    ``limits`` (feature -> (low, high), as ``--limits`` gives them): readings outside each
    feature's physical limits (``training.limits.feature_limits``) are invalid cells; None
    leaves them unchecked.
    """
    reader = load_parquet if is_parquet(path) else load_csv
    return reader(path, features, label, group_column, drop_invalid, classes, units, limits)


def _check_arguments(
    features: tuple[str, ...],
    label: str,
    group_column: str | None,
    units: tuple[str, ...] | None,
) -> None:
    if not features:
        raise DataError("at least one feature column is needed")
    if len(set(features)) != len(features):
        raise DataError(f"feature columns must be distinct, got {', '.join(features)}")
    if label in features:
        raise DataError(f"the label column '{label}' cannot also be a feature")
    if group_column is not None and (group_column in features or group_column == label):
        raise DataError(f"the group column '{group_column}' cannot also be a feature or the label")
    if units is not None and len(units) != len(features):
        raise DataError(f"{len(units)} units given for {len(features)} features")


def _read_bytes(path: Path) -> bytes:
    """The whole file, decompressed when its name ends in ``.gz``; raises DataError when unreadable."""
    try:
        if path.suffix.lower() != ".gz":
            return path.read_bytes()
        with gzip.open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file does not exist") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, not a CSV file") from None
    except (OSError, EOFError, zlib.error) as exc:
        # A damaged or cut-short .gz raises BadGzipFile (an OSError), EOFError or zlib.error.
        raise DataError(f"{path}: cannot read ({exc})") from None


# Files that are no text at all, by their first bytes, under a name that does not say so (only
# asked of a file that is not UTF-8: a CSV header may start with "PAR1" too).
_NOT_CSV = (
    (b"\x1f\x8b", "gzip-compressed; name it .csv.gz"),
    (b"PK\x03\x04", "a zip archive; unzip it, or for an Excel workbook save the sheet as CSV"),
    (b"PAR1", "Parquet; name it .parquet"),
    (b"BZh", "bzip2-compressed; decompress it (or recompress it as .csv.gz)"),
)


def _check_utf8(path: Path, data: bytes) -> None:
    """Raise DataError naming the line of the first byte that is not UTF-8 (a file saved as
    Latin-1 or Windows-1252), or saying the file is UTF-16 (Excel's "Unicode text")."""
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise DataError(f"{path}: cannot read as CSV: UTF-16 text; save the file as CSV in UTF-8")
    try:
        if not data.isascii():  # checked without a copy; most exports are ASCII
            data.decode("utf-8")
    except UnicodeDecodeError as exc:
        for magic, what in _NOT_CSV:
            if data.startswith(magic):
                raise DataError(f"{path}: cannot read as CSV: the file is {what}") from None
        before = data[: exc.start]
        # Lines as `_records` counts them: LF, CR LF and a lone CR each end one.
        line = before.count(b"\n") + before.count(b"\r") - before.count(b"\r\n") + 1
        raise DataError(
            f"{_location(path, line)}: cannot read as CSV: not UTF-8 text (byte 0x{data[exc.start]:02x});"
            " save the file as CSV in UTF-8"
        ) from None


def _records(path: Path, data: bytes) -> tuple[list[str], NDArray[np.int64], NDArray[np.int64]]:
    """The header's column names, and per data record the line it starts on and its field count.

    Lines are counted as an editor shows them: LF, CR LF and a lone CR each end one, and a
    quoted line break is part of a value, not the end of a record. A blank line is a
    record of 0 fields (pandas reads it as a row of missing values). Without quote characters
    a field is what lies between commas, counted in one vectorized pass; a file with quotes
    goes through the csv module, which knows that a quoted comma or newline is no separator.
    """
    if not data.strip():
        raise DataError(f"{path}: file is empty (expected a header line)")
    if b'"' in data:
        reader = csv.reader(io.StringIO(data.decode("utf-8-sig", errors="replace"), newline=""))
        last = 1  # the line the last whole record ended on
        try:
            header = next(reader)
            starts, counts, last = [], [], reader.line_num
            for fields in reader:
                # line_num is where a record ends; the next one starts on the line after.
                starts.append(last + 1)
                counts.append(len(fields))
                last = reader.line_num
        except csv.Error as exc:
            hint = ""
            if "field larger than field limit" in str(exc):
                # A quote that never closes swallows the rest of the file into one field.
                hint = (
                    f"; a quote opened on line {last + 1} or after it is never closed"
                    ' (a value with a " of its own is written ""quoted"" in a CSV)'
                )
            raise DataError(f"{path}: cannot read as CSV ({exc}){hint}") from None
        return header, np.asarray(starts, dtype=np.int64), np.asarray(counts, dtype=np.int64)
    raw = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(raw == ord("\n"))
    carriages = np.flatnonzero(raw == ord("\r"))
    # A \r ends a line unless a \n follows it (then the \n does).
    lone = carriages[raw[np.minimum(carriages + 1, raw.size - 1)] != ord("\n")]
    if lone.size:
        ends = np.union1d(ends, lone)
    if ends.size == 0 or ends[-1] != raw.size - 1:
        ends = np.append(ends, raw.size)  # a last line without a line ending
    starts = np.concatenate(([0], ends[:-1] + 1))
    commas = np.bincount(
        np.searchsorted(ends, np.flatnonzero(raw == ord(","))), minlength=ends.size
    )
    length = ends - starts
    # A line holding nothing, or only the \r of a \r\n ending, is blank.
    crlf = (length == 1) & (raw[np.minimum(starts, raw.size - 1)] == ord("\r"))
    counts = np.where((length == 0) | crlf, 0, commas + 1)
    header = data[: ends[0]].decode("utf-8-sig", errors="replace").rstrip("\r").split(",")
    return header, np.arange(2, ends.size + 1, dtype=np.int64), counts[1:]


def _ragged(path: Path, line: int, found: int, expected: int) -> None:
    raise DataError(
        f"{_location(path, line)}: {found} field{'s' if found != 1 else ''} where the header has "
        f"{expected}; the row is cut short or has extra values (bad data)"
    )


def load_csv(
    path: str | os.PathLike[str],
    features: tuple[str, ...] = DEFAULT_FEATURES,
    label: str = DEFAULT_LABEL,
    group_column: str | None = None,
    drop_invalid: bool = False,
    classes: tuple[str, ...] | None = None,
    units: tuple[str, ...] | None = None,
    limits: Mapping[str, Limits] | None = None,
) -> Dataset:
    """Read labelled readings from a CSV file with a header line (``.csv.gz``: gzip-compressed).

    ``features`` name the input columns in model order, ``label`` the class column and
    ``group_column`` (optional) rows that must stay on one side of a split. With ``classes``
    given (evaluating an existing model) labels must be among them and keep that order;
    otherwise the classes come from the data (see ``order_classes``).

    A line with more or fewer fields than the header raises DataError naming it, with or
    without ``drop_invalid``: the file's structure is broken, not one value. Every cell is
    checked: missing, non-numeric, NaN, infinite and huge readings and missing labels or
    groups raise DataError naming the file, the first bad line and its column, unless
    ``drop_invalid`` skips those rows (the count is logged and kept in ``description``).
    Returns a Dataset whose ``lines`` hold the line each row starts on in the file.
    """
    import pandas as pd

    path = Path(path)
    features = tuple(features)
    _check_arguments(features, label, group_column, units)

    data = _read_bytes(path)
    _check_utf8(path, data)
    header, lines, counts = _records(path, data)
    columns = _check_columns(path, header, features, label, group_column, line=1)
    ragged = (counts != len(header)) & (counts != 0)
    if ragged.any():
        row = int(np.argmax(ragged))
        _ragged(path, int(lines[row]), int(counts[row]), len(header))

    try:
        frame = pd.read_csv(
            io.BytesIO(data),
            usecols=columns,
            # Only an empty cell is missing: "nan" or "inf" written in a file are reported
            # as such instead of silently becoming NaN.
            keep_default_na=False,
            na_values=[""],
            # Blank lines stay as (empty) rows so that row i is the record on lines[i].
            skip_blank_lines=False,
            # Labels and groups as written: pandas would make "007" and "7" the number 7.
            dtype={name: object for name in columns[len(features) :]},
            engine="c",
            low_memory=False,
        )
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as exc:
        raise DataError(f"{path}: cannot read as CSV ({exc})") from None
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows after the header")
    if len(frame) != len(lines):
        raise DataError(f"{path}: cannot read as CSV ({len(frame)} rows on {len(lines)} lines)")
    frame = frame.rename(
        columns=dict(zip(columns, _wanted(features, label, group_column), strict=True))
    )
    return _dataset_from_frame(
        frame,
        path,
        features,
        label,
        group_column,
        drop_invalid,
        classes,
        units,
        limits,
        locate=lambda row, column: _location(path, int(lines[row]), column),
        source="csv",
        numbers=lines,
    )


def load_parquet(
    path: str | os.PathLike[str],
    features: tuple[str, ...] = DEFAULT_FEATURES,
    label: str = DEFAULT_LABEL,
    group_column: str | None = None,
    drop_invalid: bool = False,
    classes: tuple[str, ...] | None = None,
    units: tuple[str, ...] | None = None,
    limits: Mapping[str, Limits] | None = None,
) -> Dataset:
    """``load_csv`` for a Parquet file: the same checks and messages, naming rows (1-based).

    Parquet has no lines, so a bad value is located as "row N", counting data rows from 1,
    and the Dataset's ``lines`` hold those row numbers. Needs pyarrow (the ``train`` extra).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    features = tuple(features)
    _check_arguments(features, label, group_column, units)
    if not path.exists():
        raise DataError(f"{path}: file does not exist")
    if path.is_dir():
        raise DataError(f"{path}: is a directory, not a Parquet file")
    try:
        header = list(pq.read_schema(path).names)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read as Parquet ({exc})") from None
    columns = _check_columns(path, header, features, label, group_column, line=None)
    try:
        wanted = _wanted(features, label, group_column)
        table = pq.read_table(path, columns=columns).select(columns).rename_columns(wanted)
        frame = _parquet_frame(table, features, wanted[len(features) :])
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{path}: cannot read as Parquet ({exc})") from None
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows")
    return _dataset_from_frame(
        frame,
        path,
        features,
        label,
        group_column,
        drop_invalid,
        classes,
        units,
        limits,
        locate=lambda row, column: _location(path, column=column, row=row + 1),
        source="parquet",
        numbers=np.arange(1, len(frame) + 1, dtype=np.int64),
    )


def _parquet_frame(table: Any, features: tuple[str, ...], categorical: list[str]) -> Any:
    """A pandas frame of the shape ``pd.read_csv`` gives: labels and groups as text.

    Numeric features keep null (missing) apart from NaN, as the CSV reader does, by staying
    Arrow-backed; text features arrive as strings and go through the same parsing as CSV text.
    A label or group column that is not text (float, integer, boolean, ...) reads as the text
    pandas writes for it in a CSV file, so that one frame exported in both formats gives the
    same classes: 1.0 is "1.0" (Arrow's own cast would make it "1"), True is "True".
    """
    import pandas as pd
    import pyarrow as pa

    data: dict[str, Any] = {}
    for name in features:
        column = table.column(name)
        if pa.types.is_integer(column.type) or pa.types.is_floating(column.type):
            data[name] = pd.Series(column.cast(pa.float64()).to_pandas(types_mapper=pd.ArrowDtype))
        else:
            data[name] = pd.Series(column.cast(pa.string()).to_pandas(), dtype=object)
    for name in categorical:
        column = table.column(name)
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            column = column.cast(pa.string())  # UTF-8 text, as in a CSV file (else ArrowInvalid)
        if pa.types.is_nested(column.type):
            raise pa.ArrowInvalid(
                f"column {name!r} holds {column.type} values: a label or group is one value per"
                " row (text, a number or a boolean)"
            )
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            data[name] = pd.Series(column.cast(pa.string()).to_pandas())
        else:
            # Each distinct value is written once; a null or NaN (code -1) stays missing.
            # Arrow-backed, so a nullable integer column stays integer (1, not 1.0) as pandas'
            # Int64 writes it.
            codes, uniques = pd.factorize(column.to_pandas(types_mapper=pd.ArrowDtype))
            data[name] = pd.Series(np.array([*map(str, uniques), None], dtype=object)[codes])
    return pd.DataFrame(data)


def _dataset_from_frame(
    frame: Any,
    path: Path,
    features: tuple[str, ...],
    label: str,
    group_column: str | None,
    drop_invalid: bool,
    classes: tuple[str, ...] | None,
    units: tuple[str, ...] | None,
    limits: Mapping[str, Limits] | None,
    locate: Callable[[int, str], str],
    source: str,
    numbers: NDArray[np.int64],
) -> Dataset:
    """Check every cell of a read ``frame`` and build the Dataset; errors name ``locate(row, column)``.

    ``numbers`` (n_rows,) are the rows' line numbers (CSV) or row numbers (Parquet), kept as
    the Dataset's ``lines``.
    """
    columns = [*features, label, *([group_column] if group_column is not None else [])]
    n_rows = len(frame)
    units = tuple(units) if units is not None else ("",) * len(features)

    X = np.empty((n_rows, len(features)), dtype=np.float64)
    invalid = np.zeros(n_rows, dtype=bool)
    problems: list[tuple[int, str, str]] = []  # (first bad row, column, what is wrong)

    def note(mask: NDArray[np.bool_], column: str, describe: Any) -> None:
        nonlocal invalid
        if mask.any():
            row = int(np.argmax(mask))
            problems.append((row, column, describe(row)))
            invalid |= mask

    for j, name in enumerate(features):
        X[:, j], masks = _numeric_column(frame[name])
        for mask, what in masks:
            note(mask, name, lambda row, w=what, c=frame[name]: _describe(w, c, row))
    # Unchecked without ``limits``, and so stated open.
    lower, upper = (-np.inf,) * len(features), (np.inf,) * len(features)
    if limits is not None:
        lower, upper = _physical_limits(features, units, limits)
        for j, name in enumerate(features):
            with np.errstate(invalid="ignore"):  # NaN cells are bad already, and noted above
                outside = (X[:, j] < lower[j]) | (X[:, j] > upper[j])
            n = int(outside.sum())
            note(
                outside,
                name,
                lambda row, j=j, name=name, n=n: (
                    f"{X[row, j]:g} is no possible reading: {n} reading{'s' if n > 1 else ''}"
                    f" of {name!r} lie outside its physical limits [{lower[j]:g}, {upper[j]:g}]"
                    " (set them with --limits)"
                ),
            )

    label_codes, label_names = _text_codes(frame[label])
    y, ordered = _label_codes(label_codes, label_names, classes)
    note(y == _MISSING, label, lambda row: "missing label")
    note(
        y == _UNKNOWN,
        label,
        lambda row: (
            f"unknown class {label_names[label_codes[row]]!r} "
            f"(the model knows {', '.join(ordered)})"
        ),
    )
    group_codes = None
    if group_column is not None:
        group_codes, _ = _text_codes(frame[group_column])
        note(group_codes == _MISSING, group_column, lambda row: "missing group")

    n_invalid = int(invalid.sum())
    if problems and not drop_invalid:
        # The first bad line; within it, features (in order) before label before group.
        row, column, detail = min(problems, key=lambda p: (p[0], columns.index(p[1])))
        raise DataError(
            f"{locate(row, column)}: {detail}"
            f" ({n_invalid} of {n_rows} rows are invalid; --drop-invalid skips them)"
        )
    keep = ~invalid
    if not keep.any():
        raise DataError(f"{path}: all {n_rows} rows are invalid; nothing left to use")
    if n_invalid:
        logger.warning("%s: skipped %d invalid rows of %d", path, n_invalid, n_rows)
        X, y = X[keep], y[keep]
    groups = None if group_codes is None else group_codes[keep]
    if classes is None:
        # A class seen only on skipped rows is no class of this data set.
        present = np.unique(y)
        if present.size < len(ordered):
            kept = order_classes({ordered[i] for i in present})
            remap = np.array(
                [kept.index(ordered[i]) if i in present else -1 for i in range(len(ordered))]
            )
            ordered, y = kept, remap[y].astype(np.intp)

    description: dict[str, Any] = {
        "source": source,
        "path": str(path),
        "features": list(features),
        "label": label,
        "group_column": group_column,
        "rows_read": n_rows,
        "rows_dropped": n_invalid,
        "rows": int(keep.sum()),
    }
    return Dataset(
        X=X,
        y=y,
        classes=tuple(ordered),
        features=features,
        units=units,
        lower_limits=lower,
        upper_limits=upper,
        groups=groups,
        lines=numbers[keep],
        description=description,
    )


def check_classes(data: Dataset, path: str | os.PathLike[str], label: str) -> None:
    """Raise DataError unless ``data`` holds from two classes (training needs a contrast) to
    ``model.MAX_CLASSES`` (more is the sign of a column that names no class)."""
    from model import MAX_CLASSES

    present = np.unique(data.y)
    where = _location(Path(path), column=label)
    if present.size < 2:
        only = data.classes[int(present[0])] if present.size else "none"
        raise DataError(
            f"{where}: only one class ({only!r}) in {len(data)} rows; training needs two or more"
        )
    if present.size > MAX_CLASSES:
        raise DataError(
            f"{where}: {present.size} classes in {len(data)} rows; a model holds at most "
            f"{MAX_CLASSES} (is '{label}' the column of classes? --label names it)"
        )


def write_csv(data: Dataset, path: str | os.PathLike[str]) -> None:
    """Write ``data`` (features, then ``label``), e.g. a synthetic set for benchmarks, as
    ``load_data`` reads it back: CSV, gzip-compressed CSV for ``.gz``, Parquet for ``.parquet``."""
    import pandas as pd

    frame = pd.DataFrame(data.X, columns=list(data.features))
    frame[DEFAULT_LABEL] = np.asarray(data.classes, dtype=object)[data.y]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Atomic: a reader sees the old file or the new one; a failed write leaves no temporary.
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            if is_parquet(path):
                frame.to_parquet(f, index=False)
            else:
                with contextlib.ExitStack() as stack:
                    out: Any = f
                    if path.suffix.lower() == ".gz":
                        out = stack.enter_context(gzip.GzipFile(fileobj=f, mode="wb"))
                    text = stack.enter_context(io.TextIOWrapper(out, newline="", encoding="utf-8"))
                    frame.to_csv(text, index=False, float_format="%.6g")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
