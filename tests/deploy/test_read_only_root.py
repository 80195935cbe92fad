"""The image's CMD serving on a read-only root filesystem with only the Deployment's emptyDirs.

The Deployment sets ``readOnlyRootFilesystem: true`` and mounts emptyDirs where the service must
write (gunicorn's worker heartbeat files in /tmp, prometheus' per-worker files in
PROMETHEUS_MULTIPROC_DIR). Here the CMD runs in a private mount namespace where exactly that is
true, with the image's ENV and the Deployment's env on top, so a write anywhere else fails the
test with EROFS instead of crash-looping a pod. It needs root (mount namespaces) and is skipped
without; it runs as root, so it proves the filesystem layout, while the non-root user is the
image's USER and the pod's securityContext.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.dockerfile import read as read_dockerfile
from tests.deploy.harness import (
    REPO_ROOT,
    check_classify,
    host_environment,
    running_server,
)
from tests.deploy.read_only_root import PROBE, supported
from tests.support.server import free_port

LAUNCHER = Path(__file__).resolve().parent / "read_only_root.py"
DEPLOYMENT = REPO_ROOT / "deploy" / "kubernetes" / "base" / "deployment.yaml"


@pytest.fixture(scope="module")
def mount_namespaces() -> None:
    if not supported():
        pytest.skip("needs root and mount namespaces (unshare --mount) to remount / read-only")


def deployment_container() -> tuple[dict[str, Any], dict[str, Any]]:
    deployment = yaml.safe_load(DEPLOYMENT.read_text(encoding="utf-8"))
    spec = deployment["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    return container, volumes


@pytest.mark.e2e
@pytest.mark.usefixtures("mount_namespaces")
def test_cmd_serves_on_a_read_only_root_with_the_deployments_volumes(
    tiny_artifact: Path, tmp_path: Path
) -> None:
    runtime = read_dockerfile(REPO_ROOT / "Dockerfile")[-1]
    container, volumes = deployment_container()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    writable = [
        mount["mountPath"]
        for mount in container["volumeMounts"]
        if "emptyDir" in volumes[mount["name"]] and not mount.get("readOnly", False)
    ]
    assert writable, "a read-only root with nowhere to write"
    # A model volume: read-only, inside the first emptyDir because nothing can be created on
    # the read-only root to mount it at.
    model_dir = Path(writable[0]) / "model-volume"

    env = host_environment()
    env.update(runtime.env)
    env.update({item["name"]: item["value"] for item in container.get("env", [])})
    env["SENSOR_BIND"] = f"127.0.0.1:{free_port()}"
    env["SENSOR_MODEL_PATH"] = str(model_dir / tiny_artifact.name)
    env["HOME"] = "/home/sensor"  # the image user's home: absent here, read-only in the pod
    argv = [
        *PROBE[:-2],
        sys.executable,
        str(LAUNCHER),
        "--model",
        str(tiny_artifact),
        "--model-dir",
        str(model_dir),
        *(f"--writable={path}" for path in writable),
        "--",
        *runtime.cmd,
    ]
    # The metrics directory exists only inside the namespace.
    with running_server(argv, env, tmp_path / "logs") as server:
        check_classify(server, tiny_artifact)
        with server.client() as client:
            # Metrics aggregate the workers' files from the emptyDir.
            assert client.get("/metrics").status_code == 200
    text = server.stderr() + server.stdout()
    assert "Read-only file system" not in text, text
