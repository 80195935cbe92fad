"""Rollout by replacing the artifact file: picked up on the next check, refused when broken."""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from prometheus_client.parser import text_string_to_metric_families

import model
from service.app import create_app
from service.runtime import LAST_GOOD, ModelLoadError, ModelRuntime, keep_copy, load_model
from service.settings import Settings
from tests.support.artifacts import build_classifier, write_artifact

READING = {"temperature": 47.5, "vibration": 2.3}


def replace_with_bytes(path: Path, data: bytes) -> None:
    """Put ``data`` at ``path`` atomically, as a careful writer of a bad file would."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def version_answering(client: FlaskClient) -> str:
    response = client.post("/classify", json=READING)
    assert response.status_code == 200, response.get_data(as_text=True)
    return response.get_json()["model_version"]


def reloads_counted(client: FlaskClient) -> dict[str, float]:
    """`sensor_model_reloads_total` by outcome, as /metrics shows it."""
    text = client.get("/metrics").get_data(as_text=True)
    return {
        sample.labels["outcome"]: sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "sensor_model_reloads_total"
    }


def test_a_new_artifact_is_served_from_the_next_request(
    client: FlaskClient, artifact: Path, classifier: model.Classifier
) -> None:
    assert version_answering(client) == classifier.version
    new = build_classifier(seed=42)
    new.save(artifact)
    assert version_answering(client) == new.version
    assert client.get("/model").get_json()["model_version"] == new.version
    assert client.get("/readyz").get_json()["model_version"] == new.version
    assert client.get("/v2/models/sensor-classifier").get_json()["versions"] == [new.version]
    metrics = client.get("/metrics").get_data(as_text=True)
    assert f'sensor_model_info{{version="{new.version}"}} 1.0' in metrics
    assert f'sensor_model_info{{version="{classifier.version}"}} 0.0' in metrics
    assert 'sensor_model_reloads_total{outcome="success"} 1.0' in metrics


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"this is not a model", "not a zip archive"),
        (b"", "file is empty"),
        (b"PK\x03\x04" + b"\0" * 100, "truncated or corrupt"),
    ],
)
def test_a_broken_artifact_is_refused_and_the_old_model_keeps_serving(
    client: FlaskClient,
    artifact: Path,
    classifier: model.Classifier,
    caplog: pytest.LogCaptureFixture,
    content: bytes,
    reason: str,
) -> None:
    caplog.set_level(logging.ERROR, logger="service.runtime")
    replace_with_bytes(artifact, content)
    for _ in range(3):
        assert version_answering(client) == classifier.version
    assert client.get("/readyz").status_code == 200
    refusals = [r for r in caplog.records if "refused new model artifact" in r.getMessage()]
    # Logged once, with the file and the reason; not again on every request.
    assert len(refusals) == 1
    assert str(artifact) in refusals[0].getMessage() and reason in refusals[0].getMessage()
    assert 'sensor_model_reloads_total{outcome="failure"} 1.0' in client.get("/metrics").get_data(
        as_text=True
    )

    fixed = build_classifier(seed=7)
    fixed.save(artifact)
    assert version_answering(client) == fixed.version


def test_an_artifact_with_a_reserved_feature_is_refused(
    client: FlaskClient, artifact: Path, classifier: model.Classifier
) -> None:
    write_artifact(artifact, features=("readings", "x"), classes=("a", "b"))
    assert version_answering(client) == classifier.version


def test_an_artifact_whose_finite_weights_overflow_is_refused_and_the_old_model_keeps_serving(
    client: FlaskClient,
    artifact: Path,
    classifier: model.Classifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Weights of ±3e38 are finite float32s, but the logits of any reading overflow to inf and
    its probabilities come out NaN: /classify would answer nulls and /readyz 503."""
    caplog.set_level(logging.ERROR, logger="service.runtime")
    overflowing = build_classifier(seed=8)
    overflowing.network.coefs[0][:] = -3e38
    overflowing.network.coefs[1][:] = 3e38
    for b in overflowing.network.intercepts:
        b[:] = 1.0
    overflowing.save(artifact)
    for _ in range(3):
        assert version_answering(client) == classifier.version
    assert client.get("/readyz").status_code == 200
    refusals = [r for r in caplog.records if "refused new model artifact" in r.getMessage()]
    assert len(refusals) == 1 and str(artifact) in refusals[0].getMessage()


def test_a_missing_file_keeps_the_model_and_a_new_one_is_picked_up(
    client: FlaskClient, artifact: Path, classifier: model.Classifier, caplog
) -> None:
    caplog.set_level(logging.ERROR, logger="service.runtime")
    artifact.unlink()
    for _ in range(3):
        assert version_answering(client) == classifier.version
    assert sum("cannot stat" in r.getMessage() for r in caplog.records) == 1
    assert client.get("/readyz").status_code == 200
    new = build_classifier(seed=5)
    new.save(artifact)
    assert version_answering(client) == new.version


def artifact_problem(client: FlaskClient) -> str:
    """The artifact problem `/model` shows, checked to be what `/readyz` says too."""
    info = client.get("/model").get_json()
    detail = client.get("/readyz").get_json()["detail"]
    assert info["artifact_problem"] in detail
    return str(info["artifact_problem"])


def assert_problem_follows_the_file_away_and_back(client: FlaskClient, path: Path) -> None:
    """Move the refused file's directory away and back (the very same file, inode and times,
    returns): the problem says "cannot stat", then why the file is refused again."""
    assert "not a zip archive" in artifact_problem(client)
    away = path.parent.with_name("away")
    path.parent.rename(away)
    assert "cannot stat" in artifact_problem(client)
    away.rename(path.parent)
    assert "not a zip archive" in artifact_problem(client)


def test_the_problem_follows_a_refused_file_that_disappears_and_comes_back(
    client: FlaskClient, artifact: Path, classifier: model.Classifier
) -> None:
    replace_with_bytes(artifact, b"this is not a model")
    assert_problem_follows_the_file_away_and_back(client, artifact)
    assert version_answering(client) == classifier.version
    artifact.unlink()
    assert "cannot stat" in artifact_problem(client)
    classifier.save(artifact)
    assert version_answering(client) == classifier.version
    assert client.get("/model").get_json()["artifact_problem"] is None


def test_a_model_with_new_features_changes_the_request_schema(
    client: FlaskClient, artifact: Path
) -> None:
    write_artifact(artifact, features=("oil_temp", "vib_rms"), classes=("ok", "worn", "broken"))
    assert client.post("/classify", json=READING).status_code == 422
    answer = client.post("/classify", json={"oil_temp": 0.5, "vib_rms": 0.5}).get_json()
    assert set(answer["probabilities"]) == {"ok", "worn", "broken"}
    schema = client.get("/openapi.json").get_json()["components"]["schemas"]["Reading"]
    assert set(schema["properties"]) == {"oil_temp", "vib_rms", "id"}


def test_requests_alone_pick_up_a_new_file_within_one_interval(artifact: Path) -> None:
    """No watcher runs here: freshness must not wait for a background task to get its turn."""
    now = [1000.0]
    runtime = ModelRuntime(Settings(model_path=artifact, reload_interval=2.0), clock=lambda: now[0])
    first = runtime.start()
    new = build_classifier(seed=9)
    new.save(artifact)
    for _ in range(100):
        assert runtime.current().version == first.version  # not due yet
    now[0] += 1.99
    assert runtime.current().version == first.version
    now[0] += 0.02
    assert runtime.current().version == new.version
    newer = build_classifier(seed=10)
    newer.save(artifact)
    now[0] += 2.01
    assert runtime.current().version == newer.version


def test_an_artifact_rewritten_in_place_is_reloaded(artifact: Path, client: FlaskClient) -> None:
    # A writer that does not use os.replace keeps the inode; size or mtime still tell.
    data = artifact.parent / "next.npz"
    new = build_classifier(seed=11, hidden=(5,))
    new.save(data)
    artifact.write_bytes(data.read_bytes())
    assert version_answering(client) == new.version


def test_a_same_size_rewrite_in_place_that_keeps_the_mtime_is_reloaded(
    artifact: Path, client: FlaskClient, classifier: model.Classifier
) -> None:
    # `cp -p`, `rsync -a --inplace`: same inode, same size, the old mtime put back; only the
    # inode's change time tells.
    new = build_classifier(seed=1)
    data = artifact.parent / "next.npz"
    new.save(data)
    assert data.stat().st_size == artifact.stat().st_size and new.version != classifier.version
    before = artifact.stat()
    with open(artifact, "r+b") as f:
        f.write(data.read_bytes())
    os.utime(artifact, ns=(before.st_atime_ns, before.st_mtime_ns))
    while artifact.stat().st_ctime_ns == before.st_ctime_ns:  # within the clock's last tick
        time.sleep(0.001)
        os.utime(artifact, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = artifact.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    assert version_answering(client) == new.version


@pytest.mark.parametrize(
    "same_model",
    [
        pytest.param(lambda path: path.touch(), id="touch"),
        pytest.param(lambda path: path.chmod(0o600), id="chmod"),
        # A deployment that copies the artifact it already shipped, as a sync job does.
        pytest.param(lambda path: replace_with_bytes(path, path.read_bytes()), id="copied again"),
    ],
)
def test_the_same_model_written_again_is_no_reload(
    artifact: Path,
    client: FlaskClient,
    classifier: model.Classifier,
    caplog: pytest.LogCaptureFixture,
    same_model: Callable[[Path], None],
) -> None:
    caplog.set_level(logging.INFO, logger="service.runtime")
    assert version_answering(client) == classifier.version
    before = artifact.stat()
    same_model(artifact)
    while artifact.stat().st_ctime_ns == before.st_ctime_ns:  # within the clock's last tick
        time.sleep(0.001)
        same_model(artifact)
    assert version_answering(client) == classifier.version
    assert reloads_counted(client) == {}
    assert not [r for r in caplog.records if "now serving" in r.getMessage()]
    # The file is still followed: a new model after it is a reload, and the only one.
    new = build_classifier(seed=42)
    new.save(artifact)
    assert version_answering(client) == new.version
    assert reloads_counted(client) == {"success": 1.0}


def test_the_same_model_back_after_its_file_was_missing_says_so_once(
    artifact: Path,
    client: FlaskClient,
    classifier: model.Classifier,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="service.runtime")
    data = artifact.read_bytes()
    artifact.unlink()
    assert version_answering(client) == classifier.version
    replace_with_bytes(artifact, data)
    for _ in range(3):
        assert version_answering(client) == classifier.version
    messages = [r.getMessage() for r in caplog.records]
    assert sum("is usable again" in m for m in messages) == 1, messages
    assert not [m for m in messages if "now serving" in m]
    assert client.get("/model").get_json()["artifact_problem"] is None
    assert reloads_counted(client) == {}


def test_app_refuses_to_start_on_a_bad_model(tmp_path: Path) -> None:
    from service.runtime import ModelLoadError, startup_message

    missing = tmp_path / "missing.npz"
    with pytest.raises(ModelLoadError) as caught:
        create_app(Settings(model_path=missing))
    message = startup_message(caught.value, missing)
    assert str(missing) in message
    assert "does not exist" in message
    assert "python -m training" in message


def test_the_watcher_switches_an_idle_runtime(artifact: Path) -> None:
    runtime = ModelRuntime(Settings(model_path=artifact, reload_interval=0.1))
    first = runtime.start()
    stop = runtime.watch()
    try:
        new = build_classifier(seed=21)
        new.save(artifact)
        deadline = time.monotonic() + 5.0
        while runtime.loaded.version == first.version and time.monotonic() < deadline:
            time.sleep(0.02)
        # Switched without a single request asking.
        assert runtime.loaded.version == new.version
    finally:
        stop.set()


def test_a_worker_started_while_the_artifact_is_unusable_serves_the_last_good_copy(
    tmp_path: Path,
) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    served = model.load(path).version
    settings = Settings(model_path=path, state_dir=tmp_path / "state", reload_interval=0)
    first = create_app(settings).test_client()  # a worker that loaded the good file
    assert version_answering(first) == served
    assert first.get("/model").get_json()["artifact_problem"] is None

    for spoil in (path.unlink, lambda: path.write_bytes(b"PK\x03\x04 garbage")):
        spoil()
        worker = create_app(settings).test_client()  # started after the damage
        assert version_answering(worker) == served
        ready = worker.get("/readyz")
        assert ready.status_code == 200
        assert "serving the last good model" in ready.get_json()["detail"]
        info = worker.get("/model").get_json()
        assert info["model_version"] == served and str(path) in info["artifact_problem"]
        assert "sensor_model_artifact_problem 1.0" in worker.get("/metrics").get_data(as_text=True)
        assert version_answering(first) == served  # the running worker keeps its model too

    fixed = build_classifier(seed=4)
    fixed.save(path)
    assert version_answering(worker) == fixed.version
    assert worker.get("/model").get_json()["artifact_problem"] is None
    assert "detail" not in worker.get("/readyz").get_json()
    assert "sensor_model_artifact_problem 0.0" in worker.get("/metrics").get_data(as_text=True)


def test_a_worker_on_the_last_good_copy_takes_the_same_model_back_without_a_reload(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    good = path.read_bytes()
    settings = Settings(model_path=path, state_dir=tmp_path / "state", reload_interval=0)
    served = version_answering(create_app(settings).test_client())  # keeps the last good copy
    replace_with_bytes(path, b"this is not a model")
    worker = create_app(settings).test_client()  # started on the copy (max_requests recycling)
    assert "not a zip archive" in artifact_problem(worker)
    caplog.set_level(logging.INFO, logger="service.runtime")
    replace_with_bytes(path, good)
    assert version_answering(worker) == served
    assert worker.get("/model").get_json()["artifact_problem"] is None
    messages = [r.getMessage() for r in caplog.records]
    assert [m for m in messages if "usable again" in m] == [
        f"model artifact {path} is usable again: model {served}"
    ]
    assert not [m for m in messages if "now serving" in m]
    assert reloads_counted(worker) == {}


def test_a_symlink_that_dangled_and_points_back_says_the_file_is_usable_again(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Kubernetes mounts a ConfigMap's files as symlinks into a directory swapped by symlink.
    target = write_artifact(tmp_path / "v1" / "model.npz", seed=3)
    path = tmp_path / "model.npz"
    path.symlink_to(target)
    client = create_app(Settings(model_path=path, reload_interval=0)).test_client()
    served = version_answering(client)
    caplog.set_level(logging.INFO, logger="service.runtime")
    path.unlink()
    path.symlink_to(tmp_path / "nowhere")
    assert "cannot stat" in artifact_problem(client)
    path.unlink()
    path.symlink_to(target)  # the very same file: inode, size and times
    assert version_answering(client) == served
    assert client.get("/model").get_json()["artifact_problem"] is None
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot stat" in m for m in messages) == 1
    assert messages[-1] == f"model artifact {path} is usable again: model {served}"


def test_a_worker_started_on_the_last_good_copy_says_why_when_the_bad_file_comes_back(
    tmp_path: Path,
) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    settings = Settings(model_path=path, state_dir=tmp_path / "state", reload_interval=0)
    create_app(settings)  # keeps the last good copy
    replace_with_bytes(path, b"this is not a model")
    worker = create_app(settings).test_client()
    assert_problem_follows_the_file_away_and_back(worker, path)


@pytest.mark.parametrize(
    "spoil",
    [
        pytest.param(lambda path: replace_with_bytes(path, b"PK\x03\x04 garbage"), id="corrupt"),
        pytest.param(Path.unlink, id="removed"),
    ],
)
def test_workers_that_missed_a_good_file_follow_the_sibling_that_loaded_it(
    tmp_path: Path, spoil: Callable[[Path], None]
) -> None:
    """A good file spoilt within one reload interval: one worker checked in between, the other
    only sees the broken file. Both must end up serving the good one, not one each."""
    path = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    settings = Settings(model_path=path, state_dir=tmp_path / "state", reload_interval=0)
    early, late = create_app(settings).test_client(), create_app(settings).test_client()
    # A copy is followed only if written after the model it would replace was loaded, as file
    # times tell: they advance in ticks of the kernel's coarse clock (up to 10 ms).
    loaded, probe = time.time_ns(), tmp_path / "probe"
    probe.touch()
    while probe.stat().st_mtime_ns <= loaded:
        time.sleep(0.001)
        probe.touch()
    good = build_classifier(seed=4)
    good.save(path)
    assert version_answering(early) == good.version
    spoil(path)
    assert version_answering(late) == good.version
    assert version_answering(early) == good.version
    assert str(path) in late.get("/model").get_json()["artifact_problem"]
    assert "serving the last good model" in late.get("/readyz").get_json()["detail"]
    fixed = build_classifier(seed=5)
    fixed.save(path)
    for worker in (early, late):
        assert version_answering(worker) == fixed.version
        assert worker.get("/model").get_json()["artifact_problem"] is None


def test_a_worker_started_during_a_non_atomic_write_loads_the_file_once_it_is_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    settings = Settings(model_path=path, state_dir=tmp_path / "state", reload_interval=0)
    old = version_answering(create_app(settings).test_client())  # keeps the last good copy
    new = build_classifier(seed=4)
    new.save(tmp_path / "next.npz")
    data = (tmp_path / "next.npz").read_bytes()
    with open(path, "wb") as writer:  # a writer that truncates and writes in place
        writer.write(data[: len(data) // 2])
        writer.flush()
        real_load = model.load

        def writer_finishes_right_after_the_read(file: Path) -> model.Classifier:
            # The real loader reads the half-written file; the writer ends before it returns.
            try:
                return real_load(file)
            finally:
                if Path(file) == path and not writer.closed:
                    writer.write(data[len(data) // 2 :])
                    writer.close()

        monkeypatch.setattr(model, "load", writer_finishes_right_after_the_read)
        worker = create_app(settings).test_client()
    assert new.version != old
    assert version_answering(worker) == new.version
    assert worker.get("/model").get_json()["artifact_problem"] is None


@contextlib.contextmanager
def full_disk(room: int = 1024) -> Iterator[None]:
    """No file this process writes grows past ``room`` bytes: writes fail as on a full disk
    (EFBIG rather than ENOSPC), for root too."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (room, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """Nothing can be created in or removed from ``directory``, for root too (immutable)."""
    if os.geteuid() != 0:
        mode = directory.stat().st_mode
        directory.chmod(0o555)
        try:
            yield
        finally:
            directory.chmod(mode)
        return
    immutable = ["chattr", "+i", str(directory)]
    if shutil.which("chattr") is None or subprocess.run(immutable, capture_output=True).returncode:
        pytest.skip("root cannot make a directory read-only here (chattr +i)")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(directory)], check=True)


def test_a_worker_that_cannot_keep_its_copy_removes_the_older_one(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    settings = Settings(model_path=path, state_dir=tmp_path / "state", reload_interval=0)
    worker = create_app(settings).test_client()  # keeps model 3 as the last good copy
    new = build_classifier(seed=4)
    new.save(path)
    caplog.set_level(logging.WARNING, logger="service.runtime")
    with full_disk():
        assert version_answering(worker) == new.version
        [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert "File too large" in warning and "will not start" in warning
        assert "older copy" in warning and "was removed" in warning
        replace_with_bytes(path, b"this is not a model")
        assert version_answering(worker) == new.version
        # A worker restarted now would have served model 3 beside this one on model 4.
        with pytest.raises(ModelLoadError, match="not a zip"):
            create_app(settings)
    # Once there is room, the model served is kept again: a restarted worker serves it too.
    assert version_answering(worker) == new.version
    assert version_answering(create_app(settings).test_client()) == new.version


def test_a_copy_of_the_same_model_kept_by_a_sibling_is_left_in_place(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    settings = Settings(model_path=path, state_dir=tmp_path / "state", reload_interval=0)
    first, second = create_app(settings).test_client(), create_app(settings).test_client()
    new = build_classifier(seed=4)
    new.save(path)
    assert version_answering(first) == new.version  # keeps model 4 as the last good copy
    caplog.set_level(logging.WARNING, logger="service.runtime")
    with full_disk():
        assert version_answering(second) == new.version
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"will serve the copy of model {new.version} already kept" in warning
    replace_with_bytes(path, b"this is not a model")
    assert version_answering(create_app(settings).test_client()) == new.version


def test_a_worker_that_cannot_keep_its_copy_leaves_a_newer_one_a_sibling_kept(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Two swaps in quick succession: one worker loads model 4, and the file is model 5 before
    # it has copied it; a sibling loads model 5 and keeps its copy. The first worker's copy
    # fails (the file changed), and the copy there is newer than its own model: removing it
    # would leave a worker restarted while the file is unusable nothing to serve.
    path = write_artifact(tmp_path / "models" / "model.npz", seed=4)
    settings = Settings(model_path=path, state_dir=tmp_path / "state", reload_interval=0)
    first = load_model(path, settings)
    newer = build_classifier(seed=5)
    newer.save(path)
    keep_copy(load_model(path, settings), settings.state_dir)
    caplog.set_level(logging.WARNING, logger="service.runtime")
    keep_copy(first, settings.state_dir)
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert "changed while it was copied" in warning
    assert f"will serve the newer model {newer.version}" in warning
    assert model.load(settings.state_dir / LAST_GOOD).version == newer.version


def test_an_older_copy_that_cannot_be_removed_is_said_to_be_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    old = model.load(path).version
    settings = Settings(model_path=path, state_dir=tmp_path / "state", reload_interval=0)
    worker = create_app(settings).test_client()  # keeps model 3 as the last good copy
    new = build_classifier(seed=4)
    new.save(path)
    caplog.set_level(logging.WARNING, logger="service.runtime")
    with read_only(tmp_path / "state"):
        assert version_answering(worker) == new.version
        replace_with_bytes(path, b"this is not a model")
        restarted = create_app(settings).test_client()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert f"will serve the older model {old}" in warning and "cannot be removed" in warning
    assert version_answering(restarted) == old  # as the warning said
    assert version_answering(worker) == new.version  # a running worker does not go back to it


def test_with_no_good_model_ever_loaded_there_is_nothing_to_fall_back_on(tmp_path: Path) -> None:
    path = tmp_path / "models" / "model.npz"
    settings = Settings(model_path=path, state_dir=tmp_path / "state")
    with pytest.raises(ModelLoadError, match="does not exist"):
        create_app(settings)
    path.parent.mkdir()
    path.write_bytes(b"garbage")
    with pytest.raises(ModelLoadError, match="not a zip"):
        create_app(settings)


def test_an_artifact_whose_answers_cannot_be_written_is_refused_and_the_last_good_serves(
    tmp_path: Path,
) -> None:
    """A class name holding a lone surrogate passes `model.load`, but no answer could name it."""
    path = tmp_path / "model.npz"
    settings = Settings(model_path=path, state_dir=tmp_path / "state")
    good = model.load(write_artifact(path, seed=1)).version
    worker = create_app(settings).test_client()
    assert version_answering(worker) == good
    build_classifier(classes=("normal", "warning", "\ud800"), seed=2).save(path)
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        create_app(Settings(model_path=path))
    # A running worker refuses it and keeps answering; a new one starts on the last good copy.
    assert version_answering(worker) == good
    restarted = create_app(settings).test_client()
    assert version_answering(restarted) == good
    assert "cannot be loaded" in restarted.get("/model").get_json()["artifact_problem"]


def test_a_last_good_copy_that_is_gone_is_kept_again_from_the_model_served(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=3)
    served = model.load(path).version
    state = tmp_path / "state"
    settings = Settings(model_path=path, state_dir=state, reload_interval=0)
    worker = create_app(settings).test_client()
    caplog.set_level(logging.WARNING, logger="service.runtime")
    # Gone while the file is good (a cleaner of /tmp ages out a copy nothing reads) ...
    (state / LAST_GOOD).unlink()
    assert version_answering(worker) == served
    assert model.load(state / LAST_GOOD).version == served
    # ... and while the file is bad, the whole state directory with it.
    replace_with_bytes(path, b"this is not a model")
    assert version_answering(worker) == served
    shutil.rmtree(state)
    assert version_answering(worker) == served
    assert version_answering(worker) == served  # kept once, not at every check
    said = [r.getMessage() for r in caplog.records if "was gone" in r.getMessage()]
    assert len(said) == 2, said
    # A worker restarted now serves the model its sibling serves (it did not start).
    restarted = create_app(settings).test_client()
    assert version_answering(restarted) == served
    assert "serving the last good model" in restarted.get("/readyz").get_json()["detail"]
