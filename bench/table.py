"""The rows of the results table, how a target is checked, and the one Markdown table they print as."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Better = Literal["lower", "higher"]

HEADER = ("section", "measure", "ours", "compared with", "ratio", "target", "result")


@dataclass(frozen=True)
class Row:
    """One line of the table; the numbers also go to the JSON results under ``key``.

    ``value`` is ours in ``unit``; ``baseline`` the comparison's value in the same unit, when
    it was measured in the same run (``baseline_label`` names it). ``ratio`` is value / baseline.
    ``passed`` is None when the row has no target. ``better`` says which direction is an
    improvement, for comparing runs.
    """

    key: str
    section: str
    measure: str
    value: float | None
    unit: str
    better: Better
    text: str
    baseline: float | None = None
    baseline_label: str = ""
    baseline_text: str = ""
    ratio: float | None = None
    target: str = ""
    passed: bool | None = None
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row(
    key: str,
    section: str,
    measure: str,
    value: float | None,
    unit: str,
    better: Better,
    fmt: Callable[[float], str],
    baseline: float | None = None,
    baseline_label: str = "",
    target: str = "",
    check: Callable[[float, float | None], bool] | None = None,
    note: str = "",
    with_ratio: bool = True,
) -> Row:
    """A Row with its texts formatted by ``fmt`` and its target checked by ``check(value, ratio)``."""
    ratio = None
    if with_ratio and value is not None and baseline is not None and baseline != 0:
        ratio = value / baseline
    passed = None
    if check is not None and value is not None:
        passed = bool(check(value, ratio))
    return Row(
        key=key,
        section=section,
        measure=measure,
        value=value,
        unit=unit,
        better=better,
        text=fmt(value) if value is not None else "—",
        baseline=baseline,
        baseline_label=baseline_label,
        baseline_text=f"{baseline_label} {fmt(baseline)}".strip() if baseline is not None else "",
        ratio=ratio,
        target=target,
        passed=passed,
        note=note,
    )


def skipped(key: str, section: str, measure: str, reason: str, target: str = "") -> Row:
    """A row that could not be measured in this run, and why (no pass, no fail)."""
    return Row(
        key=key,
        section=section,
        measure=measure,
        value=None,
        unit="",
        better="higher",
        text=f"skipped: {reason}",
        target=target,
    )


# Number formats: a reader compares rows at a glance, so units are spelled out in every cell.
def seconds(v: float) -> str:
    if v < 1e-3:
        return f"{v * 1e6:.1f} µs"
    if v < 1.0:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s" if v < 100 else f"{v:.0f} s"


def milliseconds(v: float) -> str:
    return f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms"


def microseconds(v: float) -> str:
    return f"{v:,.0f} µs"


def rate(v: float) -> str:
    return f"{v:,.0f}/s"


def fraction(v: float) -> str:
    return f"{v:.4f}"


def megabytes(v: float) -> str:
    return f"{v:.0f} MB"


def count(v: float) -> str:
    return f"{v:,.0f}"


def _ratio_text(r: Row) -> str:
    if r.ratio is None or not math.isfinite(r.ratio):
        return ""
    return f"{r.ratio:.2f}x"


def _result_text(r: Row) -> str:
    if r.passed is None:
        return ""
    return "PASS" if r.passed else "FAIL"


def _escape(text: str) -> str:
    return text.replace("|", "\\|")


def render(rows: Iterable[Row]) -> str:
    """A Markdown pipe table, padded so that it also reads well in a terminal."""
    cells = [list(HEADER)]
    for r in rows:
        cells.append(
            [
                r.section,
                r.measure,
                r.text,
                r.baseline_text,
                _ratio_text(r),
                r.target,
                _result_text(r),
            ]
        )
    cells = [[_escape(c) for c in line] for line in cells]
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    # Numbers align right, words left, as in any table of measurements.
    right = {2, 3, 4}
    lines = []
    for n, line in enumerate(cells):
        padded = [
            c.rjust(widths[i]) if i in right and n else c.ljust(widths[i])
            for i, c in enumerate(line)
        ]
        lines.append("| " + " | ".join(padded) + " |")
        if n == 0:
            lines.append(
                "|"
                + "|".join(
                    ("-" * (w + 1) + ":") if i in right else "-" * (w + 2)
                    for i, w in enumerate(widths)
                )
                + "|"
            )
    return "\n".join(lines)
