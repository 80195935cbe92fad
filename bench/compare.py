"""`python -m bench compare OLD.json [NEW.json]`: what changed between two benchmark runs, row by row."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.context import Options

# Changes smaller than this are within the noise of a shared 2-CPU machine: neither better nor worse.
NOISE = 0.05


def load_rows(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """A results document and its measured rows by key."""
    try:
        document = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise SystemExit(f"error: cannot read {path}: {exc}") from None
    return document, {r["key"]: r for r in document.get("rows", []) if r.get("value") is not None}


def verdict(old: float, new: float, better: str) -> tuple[float | None, str]:
    """Relative change new/old - 1 and whether it is better, worse or within the noise."""
    if old == 0:
        return None, "same" if new == 0 else ("worse" if better == "lower" else "better")
    change = new / old - 1.0
    if abs(change) < NOISE:
        return change, "~"
    return change, "better" if (change < 0) == (better == "lower") else "worse"


def render(old_path: Path, new_path: Path) -> str:
    """A Markdown table of every row both runs measured: old, new, change, verdict."""
    (old_doc, old_rows), (new_doc, new_rows) = load_rows(old_path), load_rows(new_path)
    lines = [
        f"{name}: {path} ({doc.get('started_at')}, commit "
        f"{(doc.get('machine', {}).get('git_commit') or '?')[:10]})"
        for name, path, doc in (("old", old_path, old_doc), ("new", new_path, new_doc))
    ]
    lines += ["", "| measure | old | new | change | verdict |", "|---|---:|---:|---:|---|"]
    for key, new in new_rows.items():
        if (old := old_rows.get(key)) is not None:
            change, word = verdict(old["value"], new["value"], new["better"])
            shown = "" if change is None else f"{change:+.1%}"
            lines.append(f"| {key} | {old['text']} | {new['text']} | {shown} | {word} |")
    if only := sorted(set(new_rows) ^ set(old_rows)):
        lines += ["", f"measured in one run only: {', '.join(only)}"]
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
    default = Options.model_fields["out_dir"].default / "latest.json"
    parser.add_argument(
        "new", type=Path, nargs="?", default=default, help=f"the later results JSON ({default})"
    )
    args = parser.parse_args(argv)
    print(render(args.old, args.new))
    return 0
