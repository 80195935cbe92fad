"""How long `training.data` takes to read 1,000,000 labelled rows as Parquet, CSV and CSV.gz.

Run ``python -m bench.read_speed [ROWS] [DIR]``. The issue-17 target for Parquet is at most
1 s. Files are written from the synthetic generator (two float features and a text label);
each read is timed three times and the median printed. Not part of ``python -m bench``.
"""

from __future__ import annotations

import gzip
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def main(rows: int, directory: Path) -> None:
    import pandas  # noqa: F401  (imported before timing: the import is no part of reading)
    import pyarrow as pa
    import pyarrow.parquet as pq

    from training.data import load_data, synthetic, write_csv

    data = synthetic(rows, np.random.default_rng(0))
    csv_path = directory / "readings.csv"
    write_csv(data, csv_path)
    gz_path = directory / "readings.csv.gz"
    with open(csv_path, "rb") as src, gzip.open(gz_path, "wb", compresslevel=6) as dst:
        shutil.copyfileobj(src, dst)
    parquet_path = directory / "readings.parquet"
    labels = np.asarray(data.classes, dtype=object)[data.y]
    table = pa.table(
        {
            "temperature": data.X[:, 0],
            "vibration": data.X[:, 1],
            "label": pa.array(labels.tolist(), pa.string()),
        }
    )
    pq.write_table(table, parquet_path)
    for path in (parquet_path, csv_path, gz_path):
        times = []
        for _ in range(3):
            started = time.perf_counter()
            read = load_data(path)
            times.append(time.perf_counter() - started)
            assert len(read) == rows
        print(
            f"{path.name}: {path.stat().st_size / 1e6:.1f} MB, read {rows:,} rows in "
            f"{statistics.median(times):.3f} s (median of 3: "
            + ", ".join(f"{t:.3f}" for t in times)
            + ")"
        )


if __name__ == "__main__":
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    if len(sys.argv) > 2:
        main(n, Path(sys.argv[2]))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(n, Path(tmp))
