"""`python -m bench compare OLD.json [NEW.json]`: what changed between two benchmark runs, row by row."""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.context import Options

# Changes smaller than this are within the noise of a shared 2-CPU machine; not called better
# or worse.
NOISE = 0.05


def load_rows(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A results document and its measured rows by key (reference rows left out)."""
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: cannot read {path}: {exc}") from None
    rows = {
        r["key"]: r
        for r in document.get("rows", [])
        if r.get("value") is not None and not r["key"].startswith("reference.")
    }
    return document, rows


def verdict(old: float, new: float, better: str) -> tuple[float | None, str]:
    """Relative change new/old - 1 and whether it is better, worse or within the noise."""
    if old == 0:
        return None, "same" if new == 0 else ("worse" if better == "lower" else "better")
    change = new / old - 1.0
    if abs(change) < NOISE:
        return change, "~"
    improved = change < 0 if better == "lower" else change > 0
    return change, "better" if improved else "worse"


def _number(value: float, unit: str) -> str:
    if unit == "s":
        from bench.table import seconds

        return seconds(value)
    if math.isfinite(value) and abs(value) >= 100:
        return f"{value:,.0f} {unit}".strip()
    return f"{value:.4g} {unit}".strip()


def render(old_path: Path, new_path: Path) -> str:
    """A Markdown table of every row both runs measured: old, new, change, verdict."""
    old_doc, old_rows = load_rows(old_path)
    new_doc, new_rows = load_rows(new_path)
    lines = [
        f"old: {old_path} ({old_doc.get('started_at')}, commit "
        f"{(old_doc.get('machine', {}).get('git_commit') or '?')[:10]})",
        f"new: {new_path} ({new_doc.get('started_at')}, commit "
        f"{(new_doc.get('machine', {}).get('git_commit') or '?')[:10]})",
        "",
        "| measure | old | new | change | verdict |",
        "|---|---:|---:|---:|---|",
    ]
    for key, new in new_rows.items():
        old = old_rows.get(key)
        if old is None:
            continue
        change, word = verdict(old["value"], new["value"], new["better"])
        shown = "" if change is None else f"{change:+.1%}"
        lines.append(
            f"| {key} | {_number(old['value'], old['unit'])} | "
            f"{_number(new['value'], new['unit'])} | {shown} | {word} |"
        )
    only = sorted(set(new_rows) ^ set(old_rows))
    if only:
        lines.append("")
        lines.append(f"measured in one run only: {', '.join(only)}")
    if old_doc.get("options", {}).get("quick") != new_doc.get("options", {}).get("quick"):
        lines.append("warning: one run used --quick and the other did not; sizes differ")
    lines.append(f"changes under {NOISE:.0%} are marked ~ (noise on a shared machine)")
    return "\n".join(lines)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench compare",
        description="Compare two results files of `python -m bench`, row by row.",
    )
    parser.add_argument("old", type=Path, help="the earlier results JSON")
    parser.add_argument(
        "new",
        type=Path,
        nargs="?",
        default=Options().out_dir / "latest.json",
        help="the later results JSON (default: bench/results/latest.json)",
    )
    args = parser.parse_args(argv)
    sys.stdout.write(render(args.old, args.new) + "\n")
    return 0
