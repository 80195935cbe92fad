"""The rows of the results table, how a target is checked, and the one Markdown table they print as."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

Better = Literal["lower", "higher"]
Check = Callable[[float, float], bool]

HEADER = ("section", "measure", "ours", "compared with", "ratio", "target", "result")


def seconds(v: float) -> str:
    if v < 1e-3:
        return f"{v * 1e6:.1f} µs"
    if v < 1.0:
        return f"{v * 1e3:.1f} ms"
    return f"{v:.2f} s" if v < 100 else f"{v:.0f} s"


def rate(v: float) -> str:
    return f"{v:,.0f}/s"


def count(v: float) -> str:
    return f"{v:,.0f}"


# A number's format follows from its unit, spelled out in every cell so that a reader compares
# rows at a glance. Numbers without a unit are fractions (accuracy, ECE) unless a row says so.
FORMATS: dict[str, Callable[[float], str]] = {
    "s": seconds,
    "ms": lambda v: f"{v:.2f} ms" if v < 100 else f"{v:.0f} ms",
    "us": lambda v: f"{v:,.0f} µs",
    "MB": lambda v: f"{v:.0f} MB",
    "requests/s": rate,
    "readings/s": rate,
    "": lambda v: f"{v:.4f}",
}


@dataclass(frozen=True)
class Row:
    """One line of the table; the numbers also go to the JSON results under ``key``.

    ``value`` is ours in ``unit``; ``baseline`` the comparison's value in the same unit, measured
    in the same run (``baseline_label`` names it), and ``ratio`` value / baseline. ``passed`` is
    None when the row has no target. ``better`` says which direction is an improvement.
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def row(
    key: str,
    measure: str,
    value: float | None,
    unit: str,
    baseline: float | None = None,
    baseline_label: str = "",
    *,
    target: str = "",
    check: Check | None = None,
    better: Better | None = None,
    fmt: Callable[[float], str] | None = None,
    with_ratio: bool = True,
) -> Row:
    """A row of the section named by ``key``'s first part, its target checked by ``check(value,
    ratio)`` (the ratio is NaN where there is none, so that a check on it fails).

    Rates are better higher and everything else lower, unless ``better`` says otherwise.
    """
    fmt = fmt or FORMATS[unit]
    ratio = value / baseline if with_ratio and value is not None and baseline else None
    passed = None
    if check is not None and value is not None:
        passed = bool(check(value, math.nan if ratio is None else ratio))
    return Row(
        key=key,
        section=key.split(".")[0],
        measure=measure,
        value=value,
        unit=unit,
        better=better or ("higher" if unit.endswith("/s") else "lower"),
        text="—" if value is None else fmt(value),
        baseline=baseline,
        baseline_label=baseline_label,
        baseline_text="" if baseline is None else f"{baseline_label} {fmt(baseline)}".strip(),
        ratio=ratio,
        target=target,
        passed=passed,
    )


def skipped(key: str, measure: str, reason: str, target: str = "") -> Row:
    """A row that could not be measured in this run, and why (no pass, no fail)."""
    return Row(
        key, key.split(".")[0], measure, None, "", "higher", f"skipped: {reason}", target=target
    )


def render(rows: Iterable[Row]) -> str:
    """A Markdown pipe table, padded so that it also reads well in a terminal."""
    cells = [list(HEADER)]
    for r in rows:
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None and math.isfinite(r.ratio) else ""
        result = "" if r.passed is None else ("PASS" if r.passed else "FAIL")
        line = [r.section, r.measure, r.text, r.baseline_text, ratio, r.target, result]
        cells.append([c.replace("|", "\\|") for c in line])
    widths = [max(len(line[i]) for line in cells) for i in range(len(HEADER))]
    # Numbers align right, words left, as in any table of measurements.
    right = {2, 3, 4}
    rule = [("-" * (w + 1) + ":") if i in right else "-" * (w + 2) for i, w in enumerate(widths)]
    lines = []
    for n, line in enumerate(cells):
        padded = [
            c.rjust(w) if i in right and n else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        lines.append("| " + " | ".join(padded) + " |")
        if n == 0:
            lines.append("|" + "|".join(rule) + "|")
    return "\n".join(lines)
