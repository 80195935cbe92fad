"""The Kubernetes manifests: schema-valid offline for pinned Kubernetes versions, and consistent.

kubernetes-validate checks each resource against the OpenAPI schemas bundled in the package
(no network); strict mode rejects unknown fields, so a misspelt key fails here rather than being
silently dropped by the API server. The consistency tests check what no schema can: selectors
that match, ports that exist, probes on the right endpoints, writable paths on a read-only root.
"""

from __future__ import annotations

import base64
import copy
import math
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes_validate import utils as kv

from service.settings import ServerSettings
from tests.deploy.dockerfile import read as read_dockerfile

REPO_ROOT = Path(__file__).resolve().parents[2]
KUBERNETES = REPO_ROOT / "deploy" / "kubernetes"
BASE = KUBERNETES / "base"
OVERLAY = KUBERNETES / "model-volume"
# The oldest Kubernetes release the manifests promise to work on, and the newest schema set
# the pinned kubernetes-validate ships; both are bundled with the package.
KUBERNETES_VERSIONS = ("1.31.0", "1.37.0")
# Fields that strategic merge patches merge by key rather than replace (Kubernetes' own
# patchMergeKey for these lists).
MERGE_KEYS = {"containers": "name", "env": "name", "volumes": "name", "volumeMounts": "mountPath"}
MANIFESTS = sorted(p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")


def load_documents(path: Path) -> list[dict[str, Any]]:
    """Every non-empty YAML document in ``path``."""
    with path.open(encoding="utf-8") as handle:
        return [doc for doc in yaml.safe_load_all(handle) if doc]


def base_resource(kind: str) -> dict[str, Any]:
    """The one base resource of ``kind``."""
    found = [
        doc for name in MANIFESTS for doc in load_documents(BASE / name) if doc["kind"] == kind
    ]
    assert len(found) == 1, f"expected one {kind} in {BASE}, found {len(found)}"
    return found[0]


def strategic_merge(base: Any, patch: Any, key: str | None = None) -> Any:
    """``patch`` applied to ``base`` the way kustomize applies a strategic merge patch."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for name, value in patch.items():
            merged[name] = strategic_merge(base[name], value, name) if name in base else value
        return merged
    if isinstance(base, list) and isinstance(patch, list) and key in MERGE_KEYS:
        merge_key = MERGE_KEYS[key]
        merged_list = list(base)
        for item in patch:
            positions = [
                i for i, old in enumerate(merged_list) if old[merge_key] == item[merge_key]
            ]
            if positions:
                merged_list[positions[0]] = strategic_merge(merged_list[positions[0]], item)
            else:
                merged_list.append(item)
        return merged_list
    return copy.deepcopy(patch)


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    return deployment["spec"]["template"]["spec"]


def only_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = pod_spec(deployment)["containers"]
    assert len(containers) == 1, [c["name"] for c in containers]
    return containers[0]


def env_of(container: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container.get("env", [])}


def runtime_stage_env() -> dict[str, str]:
    return read_dockerfile(REPO_ROOT / "Dockerfile")[-1].env


def overlay_deployment() -> dict[str, Any]:
    (patch,) = load_documents(OVERLAY / "deployment-patch.yaml")
    return strategic_merge(base_resource("Deployment"), patch)


def test_pinned_versions_are_bundled_with_kubernetes_validate() -> None:
    bundled = set(kv.all_versions())
    assert set(KUBERNETES_VERSIONS) <= bundled, sorted(bundled)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("manifest", MANIFESTS)
def test_manifest_is_valid(manifest: str, version: str) -> None:
    documents = load_documents(BASE / manifest)
    assert documents, f"{manifest} holds no resource"
    for document in documents:
        # Raises ValidationError on a schema violation and SchemaNotFoundError for an unknown
        # kind/apiVersion, so a resource can never pass by not being checked.
        kv.validate(document, version, strict=True)


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_model_volume_deployment_is_valid(version: str) -> None:
    kv.validate(overlay_deployment(), version, strict=True)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        # A misspelt field: the API server would silently drop it, strict validation must not.
        (("spec", "template", "spec", "containers", 0, "readinesProbe"), {"httpGet": {}}),
        # A wrong type.
        (("spec", "template", "spec", "containers", 0, "resources", "limits", "cpu"), [1]),
        # A port given by name where a number is required.
        (("spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"), "http"),
    ],
)
def test_validation_rejects_a_broken_deployment(path: tuple[Any, ...], value: Any) -> None:
    broken = copy.deepcopy(base_resource("Deployment"))
    target = broken
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    with pytest.raises(kv.ValidationError):
        kv.validate(broken, KUBERNETES_VERSIONS[0], strict=True)


def test_kustomizations_reference_every_manifest() -> None:
    (base,) = load_documents(BASE / "kustomization.yaml")
    assert sorted(base["resources"]) == MANIFESTS
    # The image transformer matches by name; a mismatch would silently keep the default image.
    image = only_container(base_resource("Deployment"))["image"]
    assert [i["name"] for i in base["images"]] == [image.partition(":")[0]]
    (overlay,) = load_documents(OVERLAY / "kustomization.yaml")
    assert overlay["resources"] == ["../base"]
    for patch in overlay["patches"]:
        assert (OVERLAY / patch["path"]).is_file(), patch


def test_deployment_probes_resources_and_security() -> None:
    deployment = base_resource("Deployment")
    spec = pod_spec(deployment)
    container = only_container(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}

    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports, probe

    resources = container["resources"]
    for kind in ("cpu", "memory"):
        assert kind in resources["requests"] and kind in resources["limits"], kind

    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"]["drop"] == ["ALL"]
    # The HorizontalPodAutoscaler owns the replica count; a fixed one would fight it on apply.
    assert "replicas" not in deployment["spec"]


def test_deployment_matches_the_image() -> None:
    """The pod runs as the image's user, listens where the service binds, and serves its model."""
    stages = read_dockerfile(REPO_ROOT / "Dockerfile")
    runtime = stages[-1]
    (user,) = runtime.all("USER")
    uid, _, gid = user.arguments.partition(":")
    spec = pod_spec(base_resource("Deployment"))
    assert spec["securityContext"]["runAsUser"] == int(uid)
    assert spec["securityContext"]["runAsGroup"] == int(gid)

    container = only_container(base_resource("Deployment"))
    env = env_of(container)
    bind_port = int(env["SENSOR_BIND"].rpartition(":")[2])
    assert bind_port == int(runtime.env["SENSOR_BIND"].rpartition(":")[2])
    assert [p["containerPort"] for p in container["ports"]] == [bind_port]
    (exposed,) = runtime.all("EXPOSE")
    assert int(exposed.arguments) == bind_port
    # Model from the image: the path the image copies it to.
    assert env["SENSOR_MODEL_PATH"] == runtime.env["SENSOR_MODEL_PATH"]


def cpus(quantity: str) -> float:
    """A Kubernetes CPU quantity ("2", "1.5", "500m") in CPUs."""
    return int(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)


def test_workers_and_shutdown_fit_the_pod() -> None:
    deployment = base_resource("Deployment")
    container = only_container(deployment)
    env = env_of(container)
    workers = int(env["SENSOR_WORKERS"])
    assert 1 <= workers <= math.ceil(cpus(container["resources"]["limits"]["cpu"]))
    assert cpus(container["resources"]["requests"]["cpu"]) <= cpus(
        container["resources"]["limits"]["cpu"]
    )

    # The kubelet's grace period covers the preStop pause and then gunicorn's graceful shutdown.
    graceful = int(
        env.get("SENSOR_GRACEFUL_TIMEOUT", ServerSettings.model_fields["graceful_timeout"].default)
    )
    pause = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pause[0] == "sleep"
    assert pod_spec(deployment)["terminationGracePeriodSeconds"] >= int(pause[1]) + graceful


def test_writable_paths_are_mounted_on_a_read_only_root() -> None:
    deployment = base_resource("Deployment")
    container = only_container(deployment)
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    env = env_of(container)
    # gunicorn's worker heartbeat and tempfile default to /tmp; metric files to the multiproc dir.
    writable = {
        "/tmp",
        env["PROMETHEUS_MULTIPROC_DIR"],
        runtime_stage_env()["PROMETHEUS_MULTIPROC_DIR"],
    }
    for path in writable:
        assert path in mounts, f"{path} is not a mounted volume"
        assert "emptyDir" in mounts[path], f"{path} is not an emptyDir"
    # The last good model: fixed, so that a restarted container finds it on the pod's volume.
    for state in (env["SENSOR_STATE_DIR"], runtime_stage_env()["SENSOR_STATE_DIR"]):
        volume = max((m for m in mounts if state.startswith(m.rstrip("/") + "/")), key=len)
        assert "emptyDir" in mounts[volume], f"{state} is not on an emptyDir"


def test_the_operator_scrapes_every_pod_of_the_deployment() -> None:
    # Without a PodMonitor the Prometheus Operator scrapes nothing: its rules would see no series.
    (monitor,) = load_documents(KUBERNETES / "monitoring" / "podmonitor.yaml")
    assert (monitor["apiVersion"], monitor["kind"]) == ("monitoring.coreos.com/v1", "PodMonitor")
    deployment = base_resource("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    ports = {p["name"]: p["containerPort"] for p in only_container(deployment)["ports"]}
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert ports[endpoint["port"]] == int(annotations["prometheus.io/port"])
    assert endpoint["path"] == annotations["prometheus.io/path"] == "/metrics"


def test_service_hpa_and_pdb_select_the_deployment() -> None:
    deployment = base_resource("Deployment")
    pod_labels = deployment["spec"]["template"]["metadata"]["labels"]
    selector = deployment["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod_labels.items()
    container = only_container(deployment)

    service = base_resource("Service")
    assert service["spec"]["selector"].items() <= pod_labels.items()
    port_names = {p["name"] for p in container["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= port_names

    hpa = base_resource("HorizontalPodAutoscaler")
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        deployment["apiVersion"],
        deployment["kind"],
        deployment["metadata"]["name"],
    )
    assert hpa["spec"]["minReplicas"] >= 2
    assert hpa["spec"]["maxReplicas"] > hpa["spec"]["minReplicas"]
    # CPU utilization is measured against the request, so the request must exist.
    assert "cpu" in container["resources"]["requests"]

    pdb = base_resource("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= pod_labels.items()
    # At the HPA's minimum the budget must still allow a drain to evict one pod.
    if "minAvailable" in pdb["spec"]:
        assert pdb["spec"]["minAvailable"] < hpa["spec"]["minReplicas"]
    else:
        assert pdb["spec"]["maxUnavailable"] >= 1


def test_model_volume_overlay_mounts_the_model_read_only() -> None:
    base = base_resource("Deployment")
    (patch,) = load_documents(OVERLAY / "deployment-patch.yaml")
    base_names = {c["name"] for c in pod_spec(base)["containers"]}
    # A misspelt container name would add a second, broken container instead of patching.
    assert {c["name"] for c in pod_spec(patch)["containers"]} <= base_names

    deployment = overlay_deployment()
    container = only_container(deployment)
    (overlay,) = load_documents(OVERLAY / "kustomization.yaml")
    (generator,) = overlay["configMapGenerator"]
    volumes = {v["name"]: v for v in pod_spec(deployment)["volumes"]}
    model_path = Path(env_of(container)["SENSOR_MODEL_PATH"])
    (mount,) = [m for m in container["volumeMounts"] if model_path.is_relative_to(m["mountPath"])]
    assert mount["readOnly"] is True
    assert volumes[mount["name"]]["configMap"]["name"] == generator["name"]
    assert model_path.name in generator["files"]
    # Everything else of the base is kept.
    assert len(container["volumeMounts"]) == len(only_container(base)["volumeMounts"]) + 1


@pytest.mark.skipif(
    shutil.which("kubectl") is None, reason="kubectl (with kustomize) not installed"
)
def test_kustomize_renders_valid_resources(tmp_path: Path) -> None:
    """Render both kustomizations with the real kustomize and validate what it produces."""
    artifact_bytes = bytes(range(256)) * 4  # binary, like an .npz: must land in binaryData
    copy_root = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES, copy_root)
    (copy_root / "model-volume" / "model.npz").write_bytes(artifact_bytes)
    for directory in ("base", "model-volume"):
        rendered = subprocess.run(
            ["kubectl", "kustomize", str(copy_root / directory)],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        documents = [doc for doc in yaml.safe_load_all(rendered) if doc]
        kinds = sorted(doc["kind"] for doc in documents)
        expected = ["Deployment", "HorizontalPodAutoscaler", "PodDisruptionBudget", "Service"]
        if directory == "model-volume":
            expected = sorted([*expected, "ConfigMap"])
        assert kinds == expected
        for document in documents:
            for version in KUBERNETES_VERSIONS:
                kv.validate(document, version, strict=True)
        if directory == "model-volume":
            (config_map,) = [d for d in documents if d["kind"] == "ConfigMap"]
            (deployment,) = [d for d in documents if d["kind"] == "Deployment"]
            assert base64.b64decode(config_map["binaryData"]["model.npz"]) == artifact_bytes
            names = [
                v["configMap"]["name"] for v in pod_spec(deployment)["volumes"] if "configMap" in v
            ]
            # The hashed name: a new model means a new ConfigMap and a rolling update.
            assert names == [config_map["metadata"]["name"]]
