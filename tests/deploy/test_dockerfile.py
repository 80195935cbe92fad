"""The Dockerfile, proved without a Docker engine: hadolint, its shape, and its CMD actually serving.

No engine runs on these machines, so the runtime stage's exec-form CMD is run here with the
stage's own ENV and WORKDIR (the repository root stands in for /app, which holds the same
gunicorn.conf.py and models/ layout), overriding only what cannot be the same outside a
container: the bind address, the model file, the metrics directory and HOME.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.dockerfile import Stage, parse, read
from tests.deploy.harness import (
    REPO_ROOT,
    VENV_BIN,
    check_classify,
    host_environment,
    running_server,
)
from tests.deploy.runtime_only import modules_outside, runtime_distributions
from tests.support.server import free_port

DOCKERFILE = REPO_ROOT / "Dockerfile"
HADOLINT = VENV_BIN / "hadolint"
RUNTIME_ONLY = Path(__file__).resolve().parent / "runtime_only.py"
# What the runtime stage's WORKDIR holds inside the image, and where that lives in the repo.
IMAGE_WORKDIR = "/app"
# Everything the test may change relative to the image's ENV, and why: see the module docstring.
OUTSIDE_CONTAINER_OVERRIDES = ("SENSOR_BIND", "SENSOR_MODEL_PATH", "PROMETHEUS_MULTIPROC_DIR")


@pytest.fixture(scope="module")
def stages() -> list[Stage]:
    return read(DOCKERFILE)


@pytest.fixture(scope="module")
def runtime(stages: list[Stage]) -> Stage:
    return stages[-1]


def run_hadolint(dockerfile: Path, config: Path) -> tuple[int, list[dict[str, object]]]:
    """hadolint's exit code and findings, with every rule on and inline ignore pragmas disabled."""
    result = subprocess.run(
        [
            str(HADOLINT),
            "--config",
            str(config),
            "--disable-ignore-pragma",
            "--failure-threshold",
            "style",
            "--format",
            "json",
            str(dockerfile),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return result.returncode, json.loads(result.stdout or "[]")


@pytest.fixture
def hadolint_config(tmp_path: Path) -> Path:
    # An explicit empty ignore list, so a config file elsewhere can't switch rules off.
    config = tmp_path / "hadolint.yaml"
    config.write_text("ignored: []\n", encoding="utf-8")
    return config


def test_hadolint_reports_nothing(hadolint_config: Path) -> None:
    code, findings = run_hadolint(DOCKERFILE, hadolint_config)
    assert findings == []
    assert code == 0


def test_hadolint_does_flag_a_careless_dockerfile(tmp_path: Path, hadolint_config: Path) -> None:
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN pip install flask\nCMD gunicorn app:app\n", "utf-8")
    code, findings = run_hadolint(careless, hadolint_config)
    assert code != 0
    assert {"DL3006", "DL3013", "DL3042", "DL3025"} <= {f["code"] for f in findings}


def test_parser_reads_env_continuations_and_exec_forms() -> None:
    stages = parse(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.11-slim\n"
        "FROM ${BASE} AS one\n"
        'ENV A=1 \\\n    # a comment inside a continuation\n    B="two words" \\\n    C=3\n'
        "ENV LEGACY some value\n"
        "WORKDIR /app\nWORKDIR sub\n"
        'HEALTHCHECK --interval=5s CMD ["true"]\n'
        'CMD ["run", "--flag"]\n'
    )
    (stage,) = stages
    assert (stage.base, stage.name) == ("python:3.11-slim", "one")
    assert stage.env == {"A": "1", "B": "two words", "C": "3", "LEGACY": "some value"}
    assert stage.workdir == "/app/sub"
    assert stage.healthcheck == ({"interval": "5s"}, ["true"])
    assert stage.cmd == ["run", "--flag"]


@pytest.mark.parametrize(
    "text",
    [
        "FROM x\nCMD gunicorn app\n",  # shell form: would run under /bin/sh, not as PID 1
        "FROM x\nENV A=$B\nCMD []\n",  # expansion the parser does not implement
        "FROM x\nRUN <<EOF\necho\nEOF\n",  # heredoc
        "FROM ${UNSET}\n",
    ],
)
def test_parser_refuses_what_it_cannot_read_faithfully(text: str) -> None:
    with pytest.raises(ValueError):
        stage = parse(text)[-1]
        _ = stage.env, stage.cmd


def test_stages_and_base_images(stages: list[Stage]) -> None:
    assert len(stages) >= 2, "multi-stage build"
    for stage in stages:
        if stage.base in {s.name for s in stages}:
            continue
        image, _, tag = stage.base.partition(":")
        assert image == "python" and tag.startswith("3.11-slim"), stage.base
    model_arguments = [
        i for s in stages for i in s.all("ARG") if i.arguments.startswith("MODEL_ARTIFACT")
    ]
    assert len(model_arguments) == 1, "one build argument chooses the user's artifact"
    trains = [
        i.arguments for s in stages[:-1] for i in s.all("RUN") if "-m training" in i.arguments
    ]
    assert trains and all("--seed 0" in run for run in trains), (
        "the default model is trained with a fixed seed"
    )


def test_runtime_stage_is_slim_non_root_and_unbuffered(runtime: Stage) -> None:
    runs = " ".join(i.arguments for i in runtime.all("RUN"))
    # Only the package's own wheels with their runtime dependencies, never the extras.
    assert "--no-index" in runs and "pip install" in runs
    for extra in ("[train]", "[dev]", "[bench]", "training"):
        assert extra not in runs
    (user,) = runtime.all("USER")
    uid = user.arguments.partition(":")[0]
    assert uid.isdigit() and int(uid) != 0
    assert runtime.env["PYTHONUNBUFFERED"] == "1"
    assert runtime.workdir == IMAGE_WORKDIR


def test_runtime_serves_the_artifact_it_copies(stages: list[Stage], runtime: Stage) -> None:
    copies = [i.arguments.split() for i in runtime.all("COPY")]
    (model_copy,) = [c for c in copies if c[0].startswith("--from=")]
    source_stage = model_copy[0].removeprefix("--from=")
    assert source_stage in {s.name for s in stages[:-1]}
    # The artifact the model stage writes (trained or copied in) is the one the service loads.
    model_stage = next(s for s in stages if s.name == source_stage)
    assert all(model_copy[1] in run.arguments for run in model_stage.all("RUN"))
    destination = os.path.join(runtime.workdir, model_copy[2])
    assert runtime.env["SENSOR_MODEL_PATH"] == destination


def test_cmd_and_healthcheck_are_exec_form(runtime: Stage) -> None:
    argv = runtime.cmd
    assert argv[0] == "gunicorn"
    assert "gunicorn.conf.py" in argv
    options, check = runtime.healthcheck
    assert check[0] == "python" and "/readyz" in " ".join(check)
    assert {"interval", "timeout", "start-period", "retries"} <= options.keys()


def dockerignore_patterns() -> list[str]:
    lines = (REPO_ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether the build context leaves ``path`` out (for the plain patterns used here)."""
    assert not any(p.startswith("!") for p in patterns), "exceptions are not modelled here"
    parts = Path(path).parts
    candidates = ["/".join(parts[: n + 1]) for n in range(len(parts))]
    for pattern in patterns:
        forms = {pattern, pattern.removeprefix("**/")}
        if any(fnmatch.fnmatchcase(c, f) for c in candidates for f in forms):
            return True
    return False


def test_dockerignore_keeps_the_build_inputs_and_drops_the_rest(stages: list[Stage]) -> None:
    patterns = dockerignore_patterns()
    sources = [
        source
        for stage in stages
        for copy in stage.all("COPY")
        if not copy.arguments.startswith("--from")
        for source in copy.arguments.split()[:-1]
    ]
    assert "gunicorn.conf.py" in sources
    for source in sources:
        assert not ignored(source.rstrip("/"), patterns), source
        assert (REPO_ROOT / source).exists() or source == "gunicorn.conf.py", source
    # MODEL_ARTIFACT paths such as models/model.npz must reach the build.
    assert not ignored("models/model.npz", patterns)
    for dropped in (".git", ".venv", "tests/deploy/test_dockerfile.py", "model/__pycache__/x.pyc"):
        assert ignored(dropped, patterns), dropped


# --- the Dockerfile's CMD, run outside a container -------------------------------------------


def container_environment(runtime: Stage, overrides: dict[str, str], home: Path) -> dict[str, str]:
    """The process environment: host basics, then the image's ENV, then the overrides."""
    assert set(overrides) == set(OUTSIDE_CONTAINER_OVERRIDES)
    assert set(overrides) <= runtime.env.keys(), "override only what the image sets"
    env = host_environment()
    env.update(runtime.env)
    env.update(overrides)
    # The image's user has its own HOME; nothing the server writes there belongs in the developer's.
    env["HOME"] = str(home)
    return env


@pytest.fixture
def image_env(runtime: Stage, tiny_artifact: Path, tmp_path: Path) -> dict[str, str]:
    """The runtime stage's environment, with the outside-a-container overrides."""
    assert runtime.workdir == IMAGE_WORKDIR
    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    return container_environment(
        runtime,
        {
            "SENSOR_BIND": f"127.0.0.1:{free_port()}",
            "SENSOR_MODEL_PATH": str(tiny_artifact),
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        },
        home,
    )


@pytest.mark.e2e
def test_dockerfile_cmd_serves_readyz_and_classify(
    runtime: Stage, image_env: dict[str, str], tiny_artifact: Path, tmp_path: Path
) -> None:
    with running_server(runtime.cmd, image_env, tmp_path / "logs") as server:
        check_classify(server, tiny_artifact)
        # The image's HEALTHCHECK command, run as Docker would, passes against the live server.
        _, check = runtime.healthcheck
        result = subprocess.run(check, env=image_env, capture_output=True, timeout=30, check=False)
        assert result.returncode == 0, result.stderr


@pytest.mark.e2e
def test_dockerfile_cmd_needs_only_runtime_dependencies(
    runtime: Stage, image_env: dict[str, str], tiny_artifact: Path, tmp_path: Path
) -> None:
    """The same CMD with every installed distribution outside [project].dependencies unimportable.

    The runtime stage installs the wheel with --no-index from wheels of exactly those
    dependencies, so a module the server needs from anywhere else (a worker class's package,
    a training-only library) would crash the container; here it crashes this test instead.
    """
    allowed = runtime_distributions(REPO_ROOT / "pyproject.toml")
    blocked = modules_outside(allowed, own=["sensor-classifier"])
    assert {"pandas", "matplotlib", "pytest"} <= blocked, "the dev tools must be blocked"
    argv = [
        sys.executable,
        str(RUNTIME_ONLY),
        "--block",
        ",".join(sorted(blocked)),
        "--",
        *runtime.cmd,
    ]
    with running_server(argv, image_env, tmp_path / "logs") as server:
        check_classify(server, tiny_artifact)
    # Optional imports that were refused must not have changed what the service does.
    assert "not a runtime dependency" not in server.stderr() + server.stdout()


@pytest.mark.e2e
def test_healthcheck_fails_when_nothing_answers(runtime: Stage, tmp_path: Path) -> None:
    _, check = runtime.healthcheck
    env = {**host_environment(), **runtime.env, "SENSOR_BIND": f"127.0.0.1:{free_port()}"}
    result = subprocess.run(check, env=env, capture_output=True, timeout=30, check=False)
    assert result.returncode != 0
