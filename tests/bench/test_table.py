"""Rows, targets and the rendered Markdown table."""

from __future__ import annotations

from bench import table


def _wall(value: float, baseline: float) -> table.Row:
    return table.row(
        "training.wall_seconds",
        "wall time",
        value,
        "s",
        baseline,
        "sklearn",
        target="≤ 1.00x sklearn",
        check=lambda v, r: r <= 1.0,
    )


def test_ratio_and_target_come_from_the_values() -> None:
    fast, slow = _wall(2.0, 4.0), _wall(6.0, 4.0)
    assert fast.ratio == 0.5 and fast.passed is True
    assert slow.ratio == 1.5 and slow.passed is False
    assert slow.text == "6.00 s" and slow.baseline_text == "sklearn 4.00 s"
    # The section is the key's first part; times are better lower, rates higher.
    assert slow.section == "training" and slow.better == "lower"
    assert table.row("http.rate", "m", 1.0, "requests/s").better == "higher"


def test_a_ratio_target_without_a_ratio_fails() -> None:
    row = table.row("k.x", "m", 3.0, "s", None, target="≤ 1x", check=lambda v, r: r <= 1.0)
    assert row.ratio is None and row.passed is False


def test_rows_without_target_or_value_neither_pass_nor_fail() -> None:
    plain = table.row("s.k", "m", 3.0, "", better="higher", fmt=table.count)
    assert plain.passed is None and plain.ratio is None and plain.text == "3"
    skipped = table.skipped("s.k", "m", "file not found", target="≥ 1")
    assert skipped.value is None and skipped.passed is None and skipped.section == "s"
    assert skipped.text == "skipped: file not found"
    no_ratio = table.row("s.k", "m", 3.0, "", 2.0, "bare", fmt=table.count, with_ratio=False)
    assert no_ratio.ratio is None


def test_formats_pick_readable_units() -> None:
    assert table.seconds(17.2e-6) == "17.2 µs"
    assert table.seconds(0.2331) == "233.1 ms"
    assert table.seconds(42.83) == "42.83 s"
    assert table.rate(428768.4) == "428,768/s"
    assert table.FORMATS["MB"](225.1) == "225 MB"
    assert table.FORMATS["us"](281.4) == "281 µs" and table.FORMATS[""](0.97412) == "0.9741"


def test_render_is_one_aligned_markdown_table() -> None:
    rows = [_wall(2.0, 4.0), _wall(6.0, 4.0), table.skipped("http.x", "a | b", "no wrk")]
    lines = table.render(rows).splitlines()
    assert len(lines) == 2 + len(rows)
    assert lines[0].startswith("| section") and set(lines[1]) <= {"|", "-", ":"}
    # Every line is as wide as the header, with the same number of cells: a pipe inside a
    # cell is escaped rather than opening a new column.
    assert len({len(line) for line in lines}) == 1
    assert all(line.replace("\\|", "").count("|") == len(table.HEADER) + 1 for line in lines)
    assert "0.50x" in lines[2] and "PASS" in lines[2]
    assert "1.50x" in lines[3] and "FAIL" in lines[3]
    assert "skipped: no wrk" in lines[4]
