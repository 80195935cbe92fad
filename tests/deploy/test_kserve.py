"""The KServe InferenceService: the fields it relies on, checked offline against KServe's API.

kubernetes-validate has no KServe CRDs. What can be checked is checked: the InferenceService's
own fields against `serving.kserve.io/v1beta1` (the predictor's ComponentExtensionSpec, listed
below), everything else in the predictor as the PodSpec KServe inlines there (validated
strictly as a Pod's spec), and agreement with the base Deployment and HPA and with the app's
real health endpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes_validate import utils as kv

from service.app import create_app
from service.settings import Settings
from tests.deploy.test_kubernetes import (
    KUBERNETES_VERSIONS,
    REPO_ROOT,
    base_resource,
    env_of,
    load_documents,
    only_container,
    pod_spec,
)

INFERENCE_SERVICE = REPO_ROOT / "deploy" / "kserve" / "inferenceservice.yaml"
# KServe v1beta1 ComponentExtensionSpec: the predictor's fields that are not the inlined PodSpec.
COMPONENT_EXTENSION_FIELDS = {
    "minReplicas",
    "maxReplicas",
    "scaleTarget",
    "scaleMetric",
    "containerConcurrency",
    "timeout",
    "canaryTrafficPercent",
    "logger",
    "batcher",
    "labels",
    "annotations",
    "deploymentStrategy",
    "autoScaling",
}
# PredictorSpec's model-format members; a custom container uses none of them.
MODEL_FORMAT_FIELDS = {"model", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx"}


@pytest.fixture(scope="module")
def inference_service() -> dict[str, Any]:
    (document,) = load_documents(INFERENCE_SERVICE)
    return document


def predictor(document: dict[str, Any]) -> dict[str, Any]:
    return document["spec"]["predictor"]


def predictor_pod_spec(document: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value
        for key, value in predictor(document).items()
        if key not in COMPONENT_EXTENSION_FIELDS
    }


def test_it_is_a_kserve_v1beta1_inference_service_in_raw_deployment_mode(
    inference_service: dict[str, Any],
) -> None:
    assert inference_service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert inference_service["kind"] == "InferenceService"
    assert set(inference_service["spec"]) == {"predictor"}
    annotations = inference_service["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert annotations["serving.kserve.io/autoscalerClass"] == "hpa"
    # A custom predictor: its own container, no model format for a ServingRuntime to serve.
    assert not MODEL_FORMAT_FIELDS & set(predictor(inference_service))


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_the_predictor_pod_spec_is_a_valid_pod_spec(
    inference_service: dict[str, Any], version: str
) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sensor-classifier-predictor"},
        "spec": predictor_pod_spec(inference_service),
    }
    kv.validate(pod, version, strict=True)


def test_a_misspelt_predictor_field_is_caught(inference_service: dict[str, Any]) -> None:
    broken = {**predictor(inference_service), "minReplica": 2}
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "x"},
        "spec": predictor_pod_spec({"spec": {"predictor": broken}}),
    }
    with pytest.raises(kv.ValidationError):
        kv.validate(pod, KUBERNETES_VERSIONS[0], strict=True)


def test_the_container_is_the_deployments(inference_service: dict[str, Any]) -> None:
    (container,) = predictor(inference_service)["containers"]
    deployment = base_resource("Deployment")
    expected = only_container(deployment)
    # KServe finds the serving container by this name.
    assert container["name"] == "kserve-container"
    for field in ("image", "resources", "securityContext", "volumeMounts", "lifecycle"):
        assert container[field] == expected[field], field
    env, expected_env = env_of(container), env_of(expected)
    assert {
        k: v for k, v in env.items() if k not in ("SENSOR_MODEL_NAME", "PROTOCOL")
    } == expected_env
    # KServe routes to a custom predictor by protocol V1 unless its container says V2.
    assert env["PROTOCOL"] == "v2"
    port = int(env["SENSOR_BIND"].rpartition(":")[2])
    assert [p["containerPort"] for p in container["ports"]] == [port]
    pod = predictor_pod_spec(inference_service)
    for field in ("securityContext", "volumes", "terminationGracePeriodSeconds"):
        assert pod[field] == pod_spec(deployment)[field], field


def test_scaling_is_the_base_hpas(inference_service: dict[str, Any]) -> None:
    hpa = base_resource("HorizontalPodAutoscaler")["spec"]
    spec = predictor(inference_service)
    assert (spec["minReplicas"], spec["maxReplicas"]) == (hpa["minReplicas"], hpa["maxReplicas"])
    (metric,) = hpa["metrics"]
    assert spec["scaleMetric"] == metric["resource"]["name"] == "cpu"
    assert spec["scaleTarget"] == metric["resource"]["target"]["averageUtilization"]


def test_probes_use_the_v2_health_endpoints_that_answer(
    inference_service: dict[str, Any], tiny_artifact: Path
) -> None:
    (container,) = predictor(inference_service)["containers"]
    port = container["ports"][0]["containerPort"]
    paths = {}
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] == port, probe
        paths[probe] = container[probe]["httpGet"]["path"]
    assert paths["livenessProbe"] == "/v2/health/live"
    assert paths["readinessProbe"] == "/v2/health/ready"
    model_name = env_of(container)["SENSOR_MODEL_NAME"]
    client = create_app(Settings(model_path=tiny_artifact, model_name=model_name)).test_client()
    for path in paths.values():
        assert client.get(path).status_code == 200, path
    assert client.get(f"/v2/models/{model_name}/ready").status_code == 200
