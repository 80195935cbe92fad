"""Write deploy/kubernetes/monitoring/prometheusrule.yaml from rules.yaml: the same groups, wrapped.

    python deploy/prometheus/prometheusrule.py

rules.yaml is the one place the rules are written; the Prometheus Operator's PrometheusRule
carries them unchanged under `spec` (tests/deploy/test_prometheus_rules.py checks that it does).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules.yaml"
MANIFEST = HERE.parent / "kubernetes" / "monitoring" / "prometheusrule.yaml"
HEADER = (
    "# Generated from deploy/prometheus/rules.yaml by deploy/prometheus/prometheusrule.py;"
    " edit the rules there.\n"
)


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings (the longer expressions) as literal blocks, as rules.yaml does."""


def _str(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _str)


def prometheus_rule(rules: dict[str, Any]) -> dict[str, Any]:
    """The PrometheusRule resource holding ``rules`` (a rules file's content)."""
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {
            "name": "sensor-classifier",
            "labels": {"app.kubernetes.io/name": "sensor-classifier"},
        },
        "spec": rules,
    }


def render() -> str:
    """The manifest's text."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    return HEADER + yaml.dump(prometheus_rule(rules), Dumper=_Dumper, sort_keys=False, width=100)


if __name__ == "__main__":
    MANIFEST.parent.mkdir(parents=True, exist_ok=True)
    MANIFEST.write_text(render(), encoding="utf-8")
    sys.stdout.write(f"wrote {MANIFEST}\n")
