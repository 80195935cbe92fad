"""Model rollout on a live server under load: atomic swaps, corrupt artifacts, every worker within 2 s.

Which worker answered a request is read from gunicorn's JSON access log (its `pid`), joined to
the load generator's answers through the User-Agent each request carries.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from bench.http_bench import WrkResult, run_wrk, write_wrk_script
from tests.support.artifacts import build_classifier, write_artifact
from tests.support.loadgen import BackgroundLoad, LoadResult
from tests.support.server import ROLLOUT_SECONDS, Server

pytestmark = pytest.mark.e2e

WORKERS = 2
BODY = orjson.dumps({"temperature": 55.0, "vibration": 4.0})
JSON = {"Content-Type": "application/json"}
# Connections are renewed now and then, so that every worker gets some of them.
LOAD = {"connections": 8, "seconds": 60, "max_requests": 200_000, "requests_per_connection": 25}
# Saturation: wrk keeps 4 keep-alive connections per CPU busy, each with 4 requests always on the
# wire, so that a worker always finds more to do on the connection it has just answered; the
# load generator's own connections, whose answers are checked, come on top.
SATURATION_CONNECTIONS = 4 * (os.cpu_count() or 2)
SATURATION_PIPELINE = 4


def _body(_: int) -> bytes:
    return BODY


def _replace_atomically(path: Path, data: bytes) -> None:
    """What a careful user does by hand: write a temporary file, then rename it over the target."""
    tmp = path.with_name(f".{path.name}.manual.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _reload_lines(server: Server) -> str:
    return "\n".join(line for line in server.stderr().splitlines() if "serving model" in line)


def _first_errors(result: LoadResult) -> list[str]:
    return [f"{o.tag}: {o.error}" for o in result.errors[:5]]


def test_ten_swaps_at_saturation_lose_nothing_and_reach_every_worker_within_2_s(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    path = tmp_path / "models" / "model.npz"
    # Three models in turn, so that the model before a swap is never the one after the next.
    models = [build_classifier(seed=seed) for seed in (11, 22, 33)]
    assert len({m.version for m in models}) == 3
    models[0].save(path)
    server = server_factory(path, workers=WORKERS)
    assert len(server.worker_pids()) == WORKERS
    wrk = shutil.which("wrk")
    if wrk is None:
        pytest.skip("wrk (Debian package wrk) is not installed; `make test` installs it")
    script = write_wrk_script(tmp_path / "pipelined.lua", BODY, pipeline=SATURATION_PIPELINE)
    saturation: list[WrkResult] = []
    flood = threading.Thread(
        target=lambda: saturation.append(
            run_wrk(wrk, f"{server.url}/classify", script, SATURATION_CONNECTIONS, 2, 30.0)
        ),
        daemon=True,
    )
    flood.start()

    # (before the save began, after it returned, version): the rename happens in between.
    swaps: list[tuple[float, float, str]] = []
    with BackgroundLoad(server.host, server.port, body_for=_body, **LOAD) as load:
        time.sleep(0.5)
        for i in range(10):
            clf = models[(i + 1) % 3]
            began = time.monotonic()
            clf.save(path)  # atomic, exactly as `python -m training` writes
            swaps.append((began, time.monotonic(), clf.version))
            # A little past the promise, so that requests sent after it are seen answered.
            time.sleep(ROLLOUT_SECONDS + 0.4)
            answered = httpx.get(f"{server.url}/model", timeout=5).json()["model_version"]
            assert answered == clf.version, f"/model still says {answered} after swap {i + 1}"
    result = load.join()
    flood.join(timeout=60)
    assert saturation and saturation[0].errors == 0, saturation
    assert saturation[0].requests >= 2000, saturation

    assert len(result.outcomes) >= 300, f"only {len(result.outcomes)} requests were sent"
    assert not result.errors, f"{len(result.errors)} failed requests: {_first_errors(result)}"
    assert {o.version for o in result.outcomes} <= {m.version for m in models}

    # Within 2 s of each swap every worker answers with the new model: every request sent
    # after (swap + 2 s) and answered before the next swap began got it (one answered after
    # that may already have the next model), none got an older one, and every worker answered.
    pids = server.workers_by_tag([o.tag for o in result.outcomes], timeout=10)
    workers = server.worker_pids()
    assert len(workers) == WORKERS, "a worker died or was replaced during the rollout"
    ends = [began for began, _, _ in swaps[1:]] + [result.finished]
    following = [version for _, _, version in swaps[1:]] + [None]
    for (_, swapped_at, version), end, after in zip(swaps, ends, following, strict=True):
        sent_late = [o for o in result.outcomes if swapped_at + ROLLOUT_SECONDS <= o.sent < end]
        settled = [o for o in sent_late if o.sent + o.latency < end]
        assert settled, "no request was answered after the rollout window"
        stale = [o for o in settled if o.version != version] + [
            o for o in sent_late if o.version not in (version, after)
        ]
        assert not stale, (
            f"{len(stale)} answers to requests sent more than {ROLLOUT_SECONDS} s after the swap"
            f" to {version} came from an older model: "
            + ", ".join(
                f"{o.tag} sent at +{o.sent - swapped_at:.3f} s, latency {o.latency:.3f} s,"
                f" worker {pids.get(o.tag)}, model {o.version}"
                for o in stale[:5]
            )
            + "\n"
            + _reload_lines(server)
        )
        answering = {pids[o.tag] for o in settled if o.tag in pids}
        assert answering == workers, f"workers {workers - answering} answered nothing after a swap"


CORRUPTIONS: dict[str, Callable[[bytes], bytes]] = {
    "truncated artifact": lambda good: good[: len(good) // 2],
    "random bytes": lambda good: os.urandom(len(good)),
    "empty file": lambda good: b"",
    "zip of nonsense": lambda good: _zip_with_one_member(),
    "one flipped byte": lambda good: good[:-200] + bytes([good[-200] ^ 0xFF]) + good[-199:],
}


def _zip_with_one_member() -> bytes:
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("weights.npy", b"not numpy at all")
    return buffer.getvalue()


def test_corrupt_artifacts_dropped_in_place_under_load_are_refused(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=5)
    good = path.read_bytes()
    server = server_factory(path, workers=WORKERS)
    old = httpx.get(f"{server.url}/model", timeout=5).json()["model_version"]
    workers = server.worker_pids()

    refusals: dict[str, int] = {}
    with BackgroundLoad(server.host, server.port, body_for=_body, **LOAD) as load:
        time.sleep(0.3)
        for name, corrupt in CORRUPTIONS.items():
            before = server.stderr().count("refused new model artifact")
            _replace_atomically(path, corrupt(good))
            time.sleep(ROLLOUT_SECONDS)
            assert httpx.get(f"{server.url}/readyz", timeout=5).status_code == 200, name
            assert httpx.get(f"{server.url}/model", timeout=5).json()["model_version"] == old
            refusals[name] = server.stderr().count("refused new model artifact") - before
    result = load.join()

    assert len(result.outcomes) >= 2000, f"only {len(result.outcomes)} requests were sent"
    assert not result.errors, f"{len(result.errors)} failed requests: {_first_errors(result)}"
    assert {o.version for o in result.outcomes} == {old}
    assert server.worker_pids() == workers, "a worker died or was replaced"
    # Each worker that looked at a corrupt file refused it, once per file, and said why.
    for name, count in refusals.items():
        assert 1 <= count <= WORKERS, f"{name}: {count} refusals logged"
    refusal_lines = [
        line for line in server.stderr().splitlines() if "refused new model artifact" in line
    ]
    assert all(str(path) in line for line in refusal_lines), refusal_lines[:3]
    assert all("still serving model " + old in line for line in refusal_lines), refusal_lines[:3]


def test_a_good_artifact_after_a_refused_one_is_rolled_out(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    path = write_artifact(tmp_path / "models" / "model.npz", seed=5)
    server = server_factory(path, workers=WORKERS)
    old = httpx.get(f"{server.url}/model", timeout=5).json()["model_version"]

    _replace_atomically(path, b"garbage")
    versions = _versions_for(server, ROLLOUT_SECONDS)
    assert versions == {old}
    assert "refused new model artifact" in server.stderr()

    new = build_classifier(seed=6)
    new.save(path)
    time.sleep(ROLLOUT_SECONDS)
    assert _versions_for(server, 0.5) == {new.version}


def test_an_artifact_for_other_features_is_rolled_out_with_its_schema(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """A retrained model may read other sensors: the new request schema comes with it."""
    path = write_artifact(tmp_path / "models" / "model.npz", seed=5)
    server = server_factory(path, workers=WORKERS)
    other = build_classifier(features=("pressure", "current", "speed"), seed=9)
    other.save(path)
    time.sleep(ROLLOUT_SECONDS)
    reading = {"pressure": 0.5, "current": 0.5, "speed": 0.5}
    for _ in range(6):
        response = httpx.post(f"{server.url}/classify", json=reading, timeout=5)
        assert response.status_code == 200, response.text
        assert response.json()["model_version"] == other.version
        stale = httpx.post(f"{server.url}/classify", json={"temperature": 1.0, "vibration": 1.0})
        assert stale.status_code == 422
    document = httpx.get(f"{server.url}/openapi.json", timeout=5).json()
    assert "pressure" in orjson.dumps(document).decode()


def _versions_for(server: Server, seconds: float) -> set[str]:
    """Versions answering fresh-connection requests over ``seconds`` (at least 8 requests)."""
    versions: set[str] = set()
    deadline = time.monotonic() + seconds
    count = 0
    while count < 8 or time.monotonic() < deadline:
        response = httpx.post(f"{server.url}/classify", content=BODY, headers=JSON, timeout=5)
        assert response.status_code == 200, response.text
        versions.add(response.json()["model_version"])
        count += 1
        time.sleep(0.02)
    return versions


def test_a_symlink_swapped_to_a_new_artifact_is_rolled_out(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """How Kubernetes updates a mounted ConfigMap/volume: the link is replaced, not the file."""
    store = tmp_path / "store"
    first = write_artifact(store / "first.npz", seed=5)
    second = write_artifact(store / "second.npz", seed=6)
    link = tmp_path / "models" / "model.npz"
    link.parent.mkdir(parents=True)
    link.symlink_to(first)
    server = server_factory(link, workers=WORKERS)
    old = httpx.get(f"{server.url}/model", timeout=5).json()["model_version"]

    new_link = link.with_name(".model.npz.link")
    new_link.symlink_to(second)
    os.replace(new_link, link)
    time.sleep(ROLLOUT_SECONDS)
    versions = _versions_for(server, 0.5)
    assert len(versions) == 1 and old not in versions


def test_an_artifact_copied_in_place_slowly_is_picked_up_once_complete(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """Not atomic (a user's `cp` over the file): half-written files are refused, none fails."""
    path = write_artifact(tmp_path / "models" / "model.npz", seed=5)
    server = server_factory(path, workers=WORKERS)
    old = httpx.get(f"{server.url}/model", timeout=5).json()["model_version"]
    new = build_classifier(seed=7)
    staged = tmp_path / "new.npz"
    new.save(staged)
    data = staged.read_bytes()

    with BackgroundLoad(server.host, server.port, body_for=_body, **LOAD) as load:
        time.sleep(0.3)
        with path.open("r+b") as f:
            f.truncate(0)
            for start in range(0, len(data), len(data) // 3 + 1):
                f.write(data[start : start + len(data) // 3 + 1])
                f.flush()
                time.sleep(0.8)  # longer than the reload interval: workers see each piece
        time.sleep(ROLLOUT_SECONDS)
        answered = httpx.get(f"{server.url}/model", timeout=5).json()["model_version"]
    result = load.join()

    assert not result.errors, f"{len(result.errors)} failed requests: {_first_errors(result)}"
    assert {o.version for o in result.outcomes} <= {old, new.version}
    assert answered == new.version
    late = [o for o in result.outcomes if o.sent > result.finished - 0.5]
    assert late and {o.version for o in late} == {new.version}


def test_idle_workers_switch_too_and_say_so_once(
    server_factory: Callable[..., Server], tmp_path: Path
) -> None:
    """With no requests at all, each worker's watcher rolls out, or refuses, on its own."""
    path = write_artifact(tmp_path / "models" / "model.npz", seed=1)
    server = server_factory(path, workers=WORKERS)
    old = httpx.get(f"{server.url}/model", timeout=5).json()["model_version"]

    _replace_atomically(path, b"PK\x03\x04 not really a zip")
    time.sleep(ROLLOUT_SECONDS)
    refusals = [line for line in server.stderr().splitlines() if "refused new model" in line]
    assert len(refusals) == WORKERS, refusals  # once per worker, not once per check
    assert all(str(path) in line and "truncated or corrupt" in line for line in refusals)
    assert _versions_for(server, 0.3) == {old}

    new = build_classifier(seed=2)
    new.save(path)
    time.sleep(ROLLOUT_SECONDS)
    # Measured before any request can have made a worker check: the watchers did it.
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)
        for s in family.samples
    }
    assert samples[("sensor_model_info", (("version", new.version),))] == 1.0
    assert samples[("sensor_model_info", (("version", old),))] == 0.0
    assert server.stderr().count(f"now serving model {new.version}") == WORKERS
    assert _versions_for(server, 0.3) == {new.version}
