"""The `.npz` artifact: exact round trip, content version, refusal of bad files, atomic save."""

from __future__ import annotations

import dataclasses
import io
import os
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from numpy.typing import NDArray

import model
import model.classifier
from tests.support.artifacts import build_classifier

REPO_ROOT = Path(__file__).resolve().parents[2]


def read_members(path: Path) -> dict[str, NDArray[Any]]:
    """Every array in a real artifact, for rewriting with one thing changed."""
    with np.load(path, allow_pickle=False) as npz:
        return {key: npz[key] for key in npz.files}


def write_members(path: Path, members: dict[str, Any]) -> Path:
    # allow_pickle left at numpy's default (True), so object arrays really are pickled.
    np.savez(path, **members)
    return path


def assert_refused(path: Path, *fragments: str) -> model.ArtifactError:
    with pytest.raises(model.ArtifactError) as excinfo:
        model.load(path)
    message = str(excinfo.value)
    assert str(path) in message
    # The problem must be named apart from the path (which may contain any word).
    problem = message.replace(str(path), "")
    for fragment in fragments:
        assert fragment in problem
    return excinfo.value


def replace_weight(
    clf: model.Classifier, layer: int, index: tuple[int, int], value: float
) -> model.Classifier:
    """A copy of ``clf`` with one weight of one layer set to ``value``."""
    coefs = [W.copy() for W in clf.network.coefs]
    coefs[layer][index] = value
    network = model.MLP(coefs, [b.copy() for b in clf.network.intercepts])
    return dataclasses.replace(clf, network=network, metadata=dict(clf.metadata))


# --- round trip and version -------------------------------------------------------------


def test_save_then_load_gives_bit_identical_predictions_and_same_version(
    trained_classifier: model.Classifier, artifact: Path
) -> None:
    loaded = model.load(artifact)
    X = np.random.default_rng(0).normal(loc=1.0, scale=2.0, size=(257, 2))

    assert loaded.version == trained_classifier.version
    assert np.array_equal(loaded.predict_proba(X), trained_classifier.predict_proba(X))
    assert np.array_equal(
        loaded.predict_proba(X, calibrated=False),
        trained_classifier.predict_proba(X, calibrated=False),
    )
    assert np.array_equal(loaded.logits(X), trained_classifier.logits(X))
    assert np.array_equal(loaded.predict(X), trained_classifier.predict(X))


def test_loaded_classifier_keeps_every_field(
    trained_classifier: model.Classifier, artifact: Path
) -> None:
    loaded = model.load(artifact)

    assert loaded.classes == ("normal", "warning", "critical")
    assert loaded.features == trained_classifier.features
    assert loaded.units == trained_classifier.units
    assert loaded.temperature == trained_classifier.temperature
    assert dict(loaded.metadata) == dict(trained_classifier.metadata)
    assert loaded.network.dtype == np.float32
    assert loaded.network.layer_sizes == trained_classifier.network.layer_sizes
    np.testing.assert_array_equal(loaded.feature_min, trained_classifier.feature_min)
    np.testing.assert_array_equal(loaded.feature_max, trained_classifier.feature_max)
    np.testing.assert_array_equal(loaded.standardizer.mean, trained_classifier.standardizer.mean)
    np.testing.assert_array_equal(loaded.standardizer.scale, trained_classifier.standardizer.scale)
    for a, b in zip(loaded.network.params, trained_classifier.network.params, strict=True):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)


def test_changing_one_weight_by_one_ulp_changes_the_version(
    trained_classifier: model.Classifier,
) -> None:
    W = trained_classifier.network.coefs[1]
    nudged = np.nextafter(W[3, 2], np.float32(np.inf))
    changed = replace_weight(trained_classifier, 1, (3, 2), nudged)
    same = replace_weight(trained_classifier, 1, (3, 2), W[3, 2])

    assert changed.version != trained_classifier.version
    assert same.version == trained_classifier.version


def test_version_follows_temperature_but_not_metadata(
    trained_classifier: model.Classifier,
) -> None:
    def variant(**changes: Any) -> model.Classifier:
        fields = {
            "network": trained_classifier.network,
            "standardizer": trained_classifier.standardizer,
            "classes": trained_classifier.classes,
            "features": trained_classifier.features,
            "units": trained_classifier.units,
            "feature_min": trained_classifier.feature_min,
            "feature_max": trained_classifier.feature_max,
            "temperature": trained_classifier.temperature,
            "metadata": trained_classifier.metadata,
            "novelty_model": trained_classifier.novelty_model,
        }
        return model.Classifier(**(fields | changes))

    assert variant(metadata={"created_at": "another day"}).version == trained_classifier.version
    assert variant(temperature=1.0).version != trained_classifier.version
    assert variant(classes=("a", "b", "c")).version != trained_classifier.version


def test_resaving_a_loaded_artifact_reproduces_it(artifact: Path, tmp_path: Path) -> None:
    again = tmp_path / "again.npz"
    model.load(artifact).save(again)

    assert model.load(again).version == model.load(artifact).version
    assert read_members(again).keys() == read_members(artifact).keys()


# --- bad artifacts: one test each ------------------------------------------------------


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path / "nowhere.npz", "does not exist")


def test_empty_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "empty.npz"
    path.write_bytes(b"")
    assert_refused(path, "empty")


@pytest.mark.parametrize("fraction", [0.05, 0.5, 0.99])
def test_truncated_file_is_refused(artifact: Path, fraction: float) -> None:
    data = artifact.read_bytes()
    artifact.write_bytes(data[: int(len(data) * fraction)])
    assert_refused(artifact, "truncated")


def test_file_that_is_not_a_zip_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    path.write_text("temperature,vibration\n35.5,0.6\n")
    assert_refused(path, "not a zip")


def test_plain_npy_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.npy"
    np.save(path, np.zeros(3))
    assert_refused(path, "not a zip")


def test_directory_is_refused(tmp_path: Path) -> None:
    assert_refused(tmp_path, "directory")


def test_wrong_format_version_is_refused(artifact: Path) -> None:
    members = read_members(artifact)
    members["format_version"] = np.array(model.FORMAT_VERSION + 1)
    write_members(artifact, members)
    assert_refused(artifact, f"format version {model.FORMAT_VERSION + 1}", "not supported")


@pytest.mark.parametrize("key", ["scale", "coef_1", "metadata", "temperature"])
def test_missing_key_is_refused(artifact: Path, key: str) -> None:
    members = read_members(artifact)
    del members[key]
    write_members(artifact, members)
    assert_refused(artifact, "missing key", repr(key))


def test_weights_whose_shapes_do_not_chain_are_refused(artifact: Path) -> None:
    members = read_members(artifact)
    members["coef_1"] = members["coef_1"][:-1]
    write_members(artifact, members)
    assert_refused(artifact, "shape mismatch", "layer 1")


def test_normalization_of_the_wrong_length_is_refused(artifact: Path) -> None:
    members = read_members(artifact)
    members["mean"] = np.append(members["mean"], 0.0)
    write_members(artifact, members)
    assert_refused(artifact, "shape mismatch", "mean has shape (3,)")


class _LeaveMark:
    """Unpickling this creates a file: proof that a loader ran pickle."""

    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.mark,))


def test_pickled_object_is_refused_and_never_unpickled(artifact: Path, tmp_path: Path) -> None:
    mark = tmp_path / "unpickled"
    members = read_members(artifact)
    members["metadata"] = np.array([_LeaveMark(mark)], dtype=object)
    write_members(artifact, members)
    # The file really holds a pickle that would run if loaded carelessly.
    with np.load(artifact, allow_pickle=True) as npz:
        npz["metadata"]
    assert mark.exists()
    mark.unlink()

    assert_refused(artifact, "pickled object", "'metadata'")
    assert not mark.exists()


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weight_is_refused(artifact: Path, bad: float) -> None:
    members = read_members(artifact)
    members["coef_0"][1, 4] = bad
    write_members(artifact, members)
    assert_refused(artifact, "non-finite weight")


@pytest.mark.parametrize(
    ("dtype", "fragment"),
    [
        (np.float16, "weights must be all float32 or all float64, got float16"),
        (np.longdouble, "weights must be all float32 or all float64"),
        (np.int32, "weights must be all float32 or all float64, got int32"),
        (np.complex64, "'coef_0' has unsupported dtype complex64"),
    ],
)
def test_weights_of_another_dtype_are_refused(artifact: Path, dtype: Any, fragment: str) -> None:
    """float16 overflows to inf at 65,504, which standardized readings (clipped at 1e6) reach."""
    members = read_members(artifact)
    for key in [k for k in members if k.startswith(("coef_", "intercept_"))]:
        members[key] = members[key].astype(dtype)
    write_members(artifact, members)
    assert_refused(artifact, fragment)


def test_weights_of_mixed_dtypes_are_refused(artifact: Path) -> None:
    members = read_members(artifact)
    members["intercept_2"] = members["intercept_2"].astype(np.float64)
    write_members(artifact, members)
    assert_refused(artifact, "weights must be all float32 or all float64, got float32, float64")


def test_float64_weights_round_trip_exactly(
    trained_classifier: model.Classifier, tmp_path: Path
) -> None:
    """Training writes float32; a model computed in float64 (written by hand, say) loads too."""
    network = model.MLP(
        [W.astype(np.float64) for W in trained_classifier.network.coefs],
        [b.astype(np.float64) for b in trained_classifier.network.intercepts],
    )
    wide = dataclasses.replace(trained_classifier, network=network)
    wide.save(tmp_path / "model.npz")
    loaded = model.load(tmp_path / "model.npz")
    X = np.random.default_rng(5).normal(size=(50, 2))
    assert loaded.network.dtype == np.float64
    assert np.array_equal(loaded.predict_proba(X), wide.predict_proba(X))


def test_saving_a_member_that_load_would_refuse_raises_and_writes_nothing(
    trained_classifier: model.Classifier, tmp_path: Path
) -> None:
    """A 1025 x 1025 layer is over the size a member may hold: refused before writing."""
    network = model.MLP.initialize([2, 1025, 1025, 3], np.random.default_rng(0))
    wide = dataclasses.replace(trained_classifier, network=network)
    with pytest.raises(ValueError, match="'coef_1' has 1050625 elements, more than"):
        wide.save(tmp_path / "model.npz")
    assert os.listdir(tmp_path) == []


def overflow_everywhere(members: dict[str, NDArray[Any]]) -> None:
    """The audit's file: finite float32 weights of 3e38 overflow for any reading."""
    for key in [k for k in members if k.startswith("coef_")]:
        members[key] = np.full_like(members[key], 3e38)


def overflow_off_the_mean(members: dict[str, NDArray[Any]]) -> None:
    """Zero biases and a huge first layer: the mean (standardized to 0) answers, little else."""
    members["coef_0"] = np.full_like(members["coef_0"], 1e38)
    for key in [k for k in members if k.startswith("intercept_")]:
        members[key] = np.zeros_like(members[key])


def overflow_far_out(members: dict[str, NDArray[Any]]) -> None:
    """Fine on the training range, NaN for readings far beyond it (which are served, flagged)."""
    members["coef_0"] = members["coef_0"] * np.float32(1e32)
    members["intercept_0"] = members["intercept_0"] * np.float32(1e32)


def overflow_in_novelty(members: dict[str, NDArray[Any]]) -> None:
    members["novelty_whiteners"] = members["novelty_whiteners"] * 1e300


@pytest.mark.parametrize(
    "damage", [overflow_everywhere, overflow_off_the_mean, overflow_far_out, overflow_in_novelty]
)
def test_model_whose_answers_are_not_finite_is_refused(artifact: Path, damage: Any) -> None:
    """Finite weights that make the service answer null probabilities (or novelty) are refused."""
    members = read_members(artifact)
    damage(members)
    write_members(artifact, members)
    assert_refused(artifact, "not finite")


@pytest.mark.parametrize("key", ["mean", "scale", "feature_min", "feature_max"])
def test_non_finite_normalization_or_range_is_refused(artifact: Path, key: str) -> None:
    members = read_members(artifact)
    members[key][0] = np.nan
    write_members(artifact, members)
    assert_refused(artifact, "non-finite", key)


@pytest.mark.parametrize("temperature", [0.0, -1.0, np.nan, 5e-324, 1e-3, 1e3, np.inf])
def test_invalid_temperature_is_refused(artifact: Path, temperature: float) -> None:
    members = read_members(artifact)
    members["temperature"] = np.array(temperature)
    write_members(artifact, members)
    assert_refused(artifact, "temperature")


@pytest.mark.parametrize("temperature", [model.MIN_TEMPERATURE, model.MAX_TEMPERATURE])
def test_temperatures_at_the_ends_of_the_fitted_range_load(
    trained_classifier: model.Classifier, tmp_path: Path, temperature: float
) -> None:
    dataclasses.replace(trained_classifier, temperature=temperature).save(tmp_path / "m.npz")
    assert model.load(tmp_path / "m.npz").temperature == temperature


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_non_positive_normalization_scale_is_refused(artifact: Path, value: float) -> None:
    members = read_members(artifact)
    members["scale"][1] = value
    write_members(artifact, members)
    assert_refused(artifact, "scale must be positive")


def test_unexpected_key_is_refused(artifact: Path) -> None:
    members = read_members(artifact)
    members["coef_9"] = np.zeros((2, 2))
    write_members(artifact, members)
    assert_refused(artifact, "unexpected keys", "coef_9")


def test_metadata_that_is_not_json_is_refused(artifact: Path) -> None:
    members = read_members(artifact)
    members["metadata"] = np.array("{not json")
    write_members(artifact, members)
    assert_refused(artifact, "metadata", "JSON")


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        # Python's json accepts these, but `json.dumps(allow_nan=False)` (every save) does not.
        ('{"loss": NaN}', "NaN"),
        ('{"loss": Infinity}', "Infinity"),
        ('{"loss": [-Infinity]}', "-Infinity"),
        ('{"loss": 1e999}', "1e999"),
        # Deeper than the parser's recursion limit, and deeper than the service can render.
        ("[" * 100_000 + "]" * 100_000, "nested"),
        ('{"a": ' * 100_000 + "1" + "}" * 100_000, "nested"),
        ('{"a": ' * 40 + "1" + "}" * 40, "nested more than 32 levels deep"),
    ],
    ids=[
        "nan",
        "infinity",
        "minus-infinity",
        "overflowing-number",
        "deep-list",
        "deep-object",
        "deep",
    ],
)
def test_metadata_that_json_does_not_allow_is_refused(
    artifact: Path, text: str, fragment: str
) -> None:
    members = read_members(artifact)
    members["metadata"] = np.array(text)
    write_members(artifact, members)
    assert_refused(artifact, "metadata", fragment)


def test_metadata_nested_as_deep_as_allowed_loads(artifact: Path) -> None:
    members = read_members(artifact)
    members["metadata"] = np.array('{"a": ' * 31 + "1" + "}" * 31)
    write_members(artifact, members)
    assert model.load(artifact).metadata["a"]["a"]["a"]


def member_data_offset(path: Path, name: str) -> tuple[int, int]:
    """(offset, size) of a zip member's stored bytes, read from its local file header."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(name)
    with path.open("rb") as f:
        f.seek(info.header_offset + 26)
        name_length, extra_length = np.frombuffer(f.read(4), dtype="<u2")
    return info.header_offset + 30 + int(name_length) + int(extra_length), info.compress_size


def test_flipped_bytes_inside_the_archive_are_refused(artifact: Path) -> None:
    """Members are CRC-checked: corruption among the weights is found, not trusted."""
    data = bytearray(artifact.read_bytes())
    offset, size = member_data_offset(artifact, "coef_1.npy")
    # The last bytes of the member are weights, past the .npy header.
    data[offset + size - 8 : offset + size] = bytes(range(1, 9))
    artifact.write_bytes(bytes(data))
    assert_refused(artifact, "corrupt")


def test_corrupt_compressed_member_is_refused(artifact: Path) -> None:
    """An archive written with savez_compressed and damaged inside a deflate stream."""
    np.savez_compressed(artifact, **read_members(artifact))
    data = bytearray(artifact.read_bytes())
    offset, _ = member_data_offset(artifact, "coef_1.npy")
    # Damage to the block header at the start of the stream makes zlib itself fail.
    data[offset : offset + 16] = b"\xff" * 16
    artifact.write_bytes(bytes(data))
    assert_refused(artifact, "corrupt")


def central_directory(data: bytes) -> int:
    """Where the zip central directory starts, read from the end-of-directory record."""
    end = data.rfind(b"PK\x05\x06")
    return int.from_bytes(data[end + 16 : end + 20], "little")


def set_bytes(data: bytearray, offset: int, value: bytes) -> None:
    data[offset : offset + len(value)] = value


# Each takes the artifact's bytes and damages its zip structure in place, given where the
# central directory starts (its first entry describes the first member).
ZIP_DAMAGE: dict[str, Any] = {
    "central-directory-signature": lambda d, cd: set_bytes(d, cd, b"XXXX"),
    "central-directory-offset": lambda d, cd: set_bytes(
        d, len(d) - 6, (cd + 7).to_bytes(4, "little")
    ),
    "unknown-compression-method": lambda d, cd: set_bytes(d, cd + 10, (99).to_bytes(2, "little")),
    "encrypted-member": lambda d, cd: set_bytes(d, cd + 8, (1).to_bytes(2, "little")),
    "local-header-offset": lambda d, cd: set_bytes(d, cd + 42, (5).to_bytes(4, "little")),
    "name-differs-from-local-header": lambda d, cd: set_bytes(d, 30, b"X"),
    "bytes-cut-from-the-middle": lambda d, cd: d.__delitem__(slice(len(d) // 2, len(d) // 2 + 100)),
}


@pytest.mark.parametrize("damage", ZIP_DAMAGE.values(), ids=ZIP_DAMAGE.keys())
def test_damaged_zip_structure_is_refused(artifact: Path, damage: Any) -> None:
    data = bytearray(artifact.read_bytes())
    damage(data, central_directory(data))
    artifact.write_bytes(bytes(data))
    assert_refused(artifact, "corrupt")


def test_random_damage_to_the_zip_structure_is_refused_or_harmless(artifact: Path) -> None:
    """Any byte of the central directory set to any value: the file loads or is refused."""
    original = artifact.read_bytes()
    offset = central_directory(original)
    rng = np.random.default_rng(0)
    for position in rng.integers(offset, len(original), 60):
        data = bytearray(original)
        data[position] = (data[position] + int(rng.integers(1, 256))) % 256
        artifact.write_bytes(bytes(data))
        try:
            model.load(artifact)
        except model.ArtifactError as exc:
            assert str(artifact) in str(exc)


def test_member_that_is_not_an_npy_array_is_refused(artifact: Path) -> None:
    """A zip member without the .npy suffix comes back from numpy as raw bytes, not an array."""
    members = read_members(artifact)
    with zipfile.ZipFile(artifact, "w") as archive:
        for key, value in members.items():
            if key == "format_version":
                archive.writestr("format_version", b"1")
            else:
                buffer = io.BytesIO()
                np.save(buffer, value, allow_pickle=False)
                archive.writestr(f"{key}.npy", buffer.getvalue())
    assert_refused(artifact, "'format_version'", "not a .npy array")


def test_archive_that_decompresses_to_hundreds_of_megabytes_is_refused(tmp_path: Path) -> None:
    """A zip bomb: 260 MiB of zeros deflate to about 1 MB; refused before decompressing."""
    path = tmp_path / "model.npz"
    zeros = bytes(4 << 20)
    with (
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive,
        archive.open("coef_0.npy", "w", force_zip64=True) as member,
    ):
        for _ in range(65):
            member.write(zeros)
    assert_refused(path, "implausibly large")


def npy_bytes(header: str, payload: bytes) -> bytes:
    """A .npy file (format 1.0) with a hand-written header, padded as numpy pads it."""
    text = header.encode("latin1")
    text += b" " * (64 - (10 + len(text) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text + payload


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': '<f8', ",
        "{'descr': 5, 'fortran_order': False, 'shape': (3,), }",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (-3,), }",
        "[1, 2, 3]",
    ],
    ids=["unterminated", "bad-dtype", "negative-shape", "not-a-dict"],
)
def test_member_with_malformed_npy_header_is_refused(artifact: Path, header: str) -> None:
    members = read_members(artifact)
    with zipfile.ZipFile(artifact, "w") as archive:
        for key, value in members.items():
            if key == "mean":
                archive.writestr("mean.npy", npy_bytes(header, bytes(24)))
            else:
                buffer = io.BytesIO()
                np.save(buffer, value, allow_pickle=False)
                archive.writestr(f"{key}.npy", buffer.getvalue())
    assert_refused(artifact, "'mean'", "unreadable")


def write_with_member(artifact: Path, key: str, npy: bytes) -> None:
    """Rewrite the artifact with the member for ``key`` replaced by the raw .npy bytes ``npy``."""
    members = read_members(artifact)
    with zipfile.ZipFile(artifact, "w") as archive:
        for name, value in members.items():
            buffer = io.BytesIO()
            np.save(buffer, value, allow_pickle=False)
            archive.writestr(f"{name}.npy", npy if name == key else buffer.getvalue())


@pytest.mark.parametrize(
    ("key", "header", "payload", "fragment"),
    [
        # 24 bytes that would become 10^11 empty strings: all memory, before any check.
        ("features", "<U0", (10**11,), "items of size zero"),
        ("coef_0", "<f4", (10**11,), "more than"),
        ("mean", "<f8", (4,), "declares 32 bytes of data, its member holds 24"),
        ("mean", "<f8", (2,), "declares 16 bytes of data, its member holds 24"),
        ("mean", "<c16", (1,), "unsupported dtype"),
        ("mean", "|b1", (24,), "unsupported dtype"),
        ("mean", "|V8", (3,), "unsupported dtype"),
    ],
    ids=[
        "zero-size-strings",
        "too-many-elements",
        "shape-beyond-data",
        "data-beyond-shape",
        "complex",
        "bool",
        "void",
    ],
)
def test_member_whose_header_does_not_fit_is_refused_before_its_data_is_read(
    artifact: Path, key: str, header: str, payload: tuple[int, ...], fragment: str
) -> None:
    npy = npy_bytes(
        f"{{'descr': '{header}', 'fortran_order': False, 'shape': {payload}, }}", bytes(24)
    )
    write_with_member(artifact, key, npy)
    assert_refused(artifact, repr(key), fragment)


# --- atomic save -----------------------------------------------------------------------


def test_save_creates_missing_directories_and_leaves_no_temp_file(
    trained_classifier: model.Classifier, tmp_path: Path
) -> None:
    path = tmp_path / "models" / "v1" / "model.npz"
    trained_classifier.save(path)

    assert os.listdir(path.parent) == ["model.npz"]
    assert model.load(path).version == trained_classifier.version


def test_saved_artifact_is_readable_by_other_users(artifact: Path) -> None:
    """Temporary files are created private (0600); a service running as another user
    (the container's non-root user) must still be able to read the artifact."""
    assert stat.S_IMODE(artifact.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    ("bad_metadata", "error"),
    [({"when": object()}, TypeError), ({"loss": float("nan")}, ValueError)],
    ids=["not-serializable", "nan"],
)
def test_failed_save_leaves_previous_artifact_byte_identical(
    trained_classifier: model.Classifier,
    artifact: Path,
    bad_metadata: dict[str, Any],
    error: type[Exception],
) -> None:
    before = artifact.read_bytes()
    broken = dataclasses.replace(trained_classifier, metadata=bad_metadata)

    with pytest.raises(error):
        broken.save(artifact)

    assert artifact.read_bytes() == before
    assert os.listdir(artifact.parent) == [artifact.name]


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_save_failing_midway_leaves_previous_artifact_and_no_temp_file(
    trained_classifier: model.Classifier,
    artifact: Path,
    monkeypatch: pytest.MonkeyPatch,
    failing: str,
) -> None:
    """A disk that fails on fsync, or a rename that fails, cannot be produced for real."""
    before = artifact.read_bytes()
    other = replace_weight(trained_classifier, 0, (0, 0), 0.25)

    def fail(*args: Any) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(OSError, match="Input/output error"):
        other.save(artifact)
    monkeypatch.undo()

    assert artifact.read_bytes() == before
    assert os.listdir(artifact.parent) == [artifact.name]


def test_new_content_is_complete_and_synced_before_it_replaces_the_old(
    trained_classifier: model.Classifier, artifact: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = artifact.read_bytes()
    other = replace_weight(trained_classifier, 0, (0, 0), 0.25)
    real_replace, real_fsync = os.replace, os.fsync
    synced: list[int] = []
    seen: dict[str, Any] = {}

    def recording_fsync(fd: int) -> None:
        synced.append(os.fstat(fd).st_ino)
        real_fsync(fd)

    def checking_replace(src: str, dst: str | os.PathLike[str]) -> None:
        # At the moment of the rename: the old file is untouched and the new one is whole.
        seen["old_intact"] = Path(dst).read_bytes() == before
        seen["same_directory"] = Path(src).parent == Path(dst).parent
        seen["synced_first"] = os.stat(src).st_ino in synced
        seen["version"] = model.load(src).version
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    monkeypatch.setattr(os, "replace", checking_replace)
    other.save(artifact)
    monkeypatch.undo()

    assert seen == {
        "old_intact": True,
        "same_directory": True,
        "synced_first": True,
        "version": other.version,
    }
    assert model.load(artifact).version == other.version


def test_process_killed_mid_save_leaves_previous_artifact_intact(
    trained_classifier: model.Classifier, artifact: Path
) -> None:
    """A real crash: the process dies (no cleanup runs) after writing part of the new file."""
    before = artifact.read_bytes()
    script = textwrap.dedent(
        """
        import os, sys
        import numpy as np
        import model

        clf = model.load(sys.argv[1])
        real_savez = np.savez

        def dying_savez(file, *args, **kwargs):
            file.write(b"PK\\x03\\x04 half of a new artifact")
            file.flush()
            os._exit(17)

        np.savez = dying_savez
        clf.save(sys.argv[1])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(artifact)],
        cwd=REPO_ROOT,
        capture_output=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 17, result.stderr.decode()
    assert artifact.read_bytes() == before
    assert model.load(artifact).version == trained_classifier.version
    # The half-written temporary file may remain, but never under the artifact's name.
    leftovers = [p for p in os.listdir(artifact.parent) if p != artifact.name]
    assert all(p.startswith(".") and p.endswith(".tmp") for p in leftovers)


def test_saved_file_is_an_ordinary_npz_of_plain_arrays(artifact: Path) -> None:
    """Every member is a .npy array numpy reads without pickle; nothing is an object array."""
    with zipfile.ZipFile(artifact) as archive:
        assert all(name.endswith(".npy") for name in archive.namelist())
    with np.load(artifact, allow_pickle=False) as npz:
        kinds = {key: npz[key].dtype.kind for key in npz.files}
    assert "O" not in kinds.values()
    assert kinds["metadata"] == "U"


# --- the novelty model in the artifact ----------------------------------------------------


def test_novelty_model_round_trips_exactly(
    trained_classifier: model.Classifier, artifact: Path
) -> None:
    loaded = model.load(artifact)
    X = np.random.default_rng(3).normal(scale=3.0, size=(200, 2))

    assert loaded.novelty_model.method == "class_mahalanobis"
    assert loaded.novelty_model.threshold == trained_classifier.novelty_model.threshold
    assert loaded.novelty_model.target_rate == trained_classifier.novelty_model.target_rate
    np.testing.assert_array_equal(loaded.novelty(X), trained_classifier.novelty(X))


def test_version_follows_the_novelty_threshold(trained_classifier: model.Classifier) -> None:
    novelty = trained_classifier.novelty_model
    moved = dataclasses.replace(
        trained_classifier,
        novelty_model=dataclasses.replace(novelty, threshold=novelty.threshold * 1.01),
    )
    assert moved.version != trained_classifier.version


def test_artifact_without_novelty_model_is_refused_with_a_retrain_hint(artifact: Path) -> None:
    members = read_members(artifact)
    for key in [k for k in members if k.startswith("novelty_")]:
        del members[key]
    write_members(artifact, members)
    assert_refused(artifact, "no novelty model", "retrain with `python -m training`")


def test_format_version_1_artifact_is_refused_with_a_retrain_hint(artifact: Path) -> None:
    """What an artifact written before novelty detection looks like: version 1, no novelty keys."""
    members = read_members(artifact)
    for key in [k for k in members if k.startswith("novelty_")]:
        del members[key]
    members["format_version"] = np.array(1)
    write_members(artifact, members)
    assert_refused(artifact, "format version 1", "retrain with `python -m training`")


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("novelty_method", np.array("knn"), "unknown novelty method"),
        ("novelty_threshold", np.array(0.0), "threshold must be positive"),
        ("novelty_threshold", np.array(np.nan), "threshold must be positive"),
        ("novelty_target_rate", np.array(1.5), "target rate"),
        ("novelty_means", np.zeros((3, 3)), "whiteners have shape"),
        ("novelty_whiteners", np.full((3, 2, 2), np.inf), "non-finite"),
        ("novelty_whiteners", np.zeros((3, 2, 2), dtype=np.int64), "floating point"),
    ],
)
def test_invalid_novelty_model_is_refused(
    artifact: Path, key: str, value: NDArray[Any], fragment: str
) -> None:
    members = read_members(artifact)
    members[key] = value
    write_members(artifact, members)
    assert_refused(artifact, "novelty", fragment)


def test_novelty_model_for_other_classes_is_refused(artifact: Path) -> None:
    members = read_members(artifact)
    members["novelty_means"] = members["novelty_means"][:2]
    members["novelty_whiteners"] = members["novelty_whiteners"][:2]
    write_members(artifact, members)
    assert_refused(artifact, "novelty model covers 2 classes")


def test_more_classes_than_a_model_may_have_are_refused_when_built_and_when_loaded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every answer lists every class, the card and the metrics draw them: past MAX_CLASSES a
    # model is a label column that names no class, and a hand-made file must not get in either.
    too_many = [f"c{i}" for i in range(model.MAX_CLASSES + 1)]
    with pytest.raises(
        ValueError, match=f"{len(too_many)} classes, more than the {model.MAX_CLASSES}"
    ):
        build_classifier(classes=too_many)
    build_classifier(classes=too_many[:-1])  # the most there may be
    monkeypatch.setattr(model.classifier, "MAX_CLASSES", len(too_many))
    path = tmp_path / "many.npz"
    build_classifier(classes=too_many).save(path)
    monkeypatch.undo()
    with pytest.raises(model.ArtifactError, match=f"{len(too_many)} classes, more than the"):
        model.load(path)
