"""deploy/prometheus/rules.yaml: promtool checks it and runs its unit tests; the PrometheusRule agrees."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from kubernetes_validate import utils as kv

import model
from tests.support.prometheus import RULES, RULES_TEST, alert_rule, alert_threshold, binary

REPO_ROOT = Path(__file__).resolve().parents[2]
MONITORING = REPO_ROOT / "deploy" / "kubernetes" / "monitoring"
MANIFEST = MONITORING / "prometheusrule.yaml"
DASHBOARD = REPO_ROOT / "deploy" / "grafana" / "sensor-classifier.json"
KUBERNETES_VERSION = "1.31.0"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary("promtool"), *map(str, args)], capture_output=True, text=True, timeout=60
    )


def test_promtool_checks_the_rules() -> None:
    result = promtool("check", "rules", RULES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_the_rule_unit_tests_pass() -> None:
    # The alerts fire on the drifted series (v1) and stay silent on undrifted ones (v2) and on
    # drifted ones with too few readings (v3); see the comment at the top of rules_test.yaml.
    result = promtool("test", "rules", RULES_TEST)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("old", "new"),
    [
        # Without the minimum count, the thin traffic of v3 alerts too.
        ("sensor:feature_readings:increase1h >= 1000", "sensor:feature_readings:increase1h >= 0"),
        # Without it, v1's alerts go on after it is replaced.
        ("          and on (model_version)\n          sensor:model_serving\n", ""),
        # Without the floor, an empty reference bin makes PSI infinite, not the value expected.
        (
            "clamp_min(max by (model_version, feature, bin) (sensor_feature_bin_reference_ratio), 0.0001)",
            "max by (model_version, feature, bin) (sensor_feature_bin_reference_ratio)",
        ),
    ],
)
def test_the_unit_tests_catch_a_broken_rule(tmp_path: Path, old: str, new: str) -> None:
    text = RULES.read_text(encoding="utf-8")
    assert old in text
    (tmp_path / "rules.yaml").write_text(text.replace(old, new), encoding="utf-8")
    (tmp_path / "rules_test.yaml").write_text(RULES_TEST.read_text(encoding="utf-8"))
    assert promtool("test", "rules", tmp_path / "rules_test.yaml").returncode != 0


def _generator():  # deploy/ is no package; load the script as a module
    spec = importlib.util.spec_from_file_location(
        "prometheusrule", REPO_ROOT / "deploy" / "prometheus" / "prometheusrule.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_prometheusrule_manifest_holds_exactly_the_rules_file() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert manifest["spec"] == yaml.safe_load(RULES.read_text(encoding="utf-8"))
    assert MANIFEST.read_text(encoding="utf-8") == _generator().render(), (
        "regenerate with `python deploy/prometheus/prometheusrule.py`"
    )


def test_the_prometheusrule_validates_as_far_as_offline_schemas_go(tmp_path: Path) -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    assert manifest["apiVersion"] == "monitoring.coreos.com/v1"
    assert manifest["kind"] == "PrometheusRule"
    # kubernetes-validate bundles only the built-in kinds: the operator's CRD is not among them.
    with pytest.raises(kv.SchemaNotFoundError):
        kv.validate(manifest, KUBERNETES_VERSION, strict=True)
    # Its metadata is a standard ObjectMeta: check it as one, strictly.
    kv.validate(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest["metadata"]},
        KUBERNETES_VERSION,
        strict=True,
    )
    # Its spec is a rules file: promtool checks the spec as the operator will hand it over.
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump(manifest["spec"]), encoding="utf-8")
    result = promtool("check", "rules", spec)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_monitoring_kustomization_lists_the_manifest() -> None:
    kustomization = yaml.safe_load((MONITORING / "kustomization.yaml").read_text())
    assert kustomization["resources"] == ["podmonitor.yaml", "prometheusrule.yaml"]


def test_the_rules_floor_shares_at_the_epsilon_of_the_service() -> None:
    # /drift and Prometheus must compute the same PSI: one epsilon, model.PSI_EPSILON.
    floors = re.findall(r"clamp_min\([^;]*?,\s*([0-9.e-]+)\s*\)", RULES.read_text(), re.S)
    assert len(floors) == 4
    assert {float(f) for f in floors} == {model.PSI_EPSILON}


def test_the_dashboard_draws_the_thresholds_the_alerts_use() -> None:
    panels = {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"]}
    for title, alert in (
        ("PSI per feature (1 h)", "SensorInputDrift"),
        ("Label shift PSI (1 h)", "SensorLabelShift"),
    ):
        steps = panels[title]["fieldConfig"]["defaults"]["thresholds"]["steps"]
        assert steps[-1]["value"] == alert_threshold(alert)
        assert "for" in alert_rule(alert)


def test_the_dashboard_shows_the_versions_served_now_and_tells_versions_apart() -> None:
    panels = {p["title"]: p for p in json.loads(DASHBOARD.read_text())["panels"]}
    # A range query's last value keeps a replaced version on the stat for the whole time range.
    (serving,) = panels["Model version serving"]["targets"]
    assert serving["instant"] is True and serving["range"] is False
    # Two versions during a rollout: every drift series is named with its own.
    for panel in panels.values():
        for target in panel["targets"]:
            if "model_version" in target["expr"] or target["expr"].startswith("sensor:"):
                assert "{{model_version}}" in target["legendFormat"], target
