"""`python -m training`: end to end runs, bad data, the quality gate, evaluate, interrupts, progress."""

from __future__ import annotations

import json
import math
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import model
from tests.training.conftest import REAL_DATA, REPO, TINY_TRAIN, needs_real_data
from training.cli import main

GOOD_CSV = "".join(
    ["temperature,vibration,label\n"]
    + [f"{20 + i % 7},{0.5 + i % 5 * 0.3},normal\n" for i in range(30)]
    + [f"{45 + i % 7},{2 + i % 5 * 0.3},warning\n" for i in range(30)]
    + [f"{65 + i % 7},{5 + i % 5 * 0.3},critical\n" for i in range(30)]
)


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """The real command line in a child process, as a user or a pipeline runs it."""
    return subprocess.run(
        [sys.executable, "-m", "training", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _json_line(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_tiny_run_writes_a_loadable_artifact_with_metadata(tiny_artifact: Path) -> None:
    clf = model.load(tiny_artifact)
    assert clf.classes == ("normal", "warning", "critical")
    assert clf.features == ("temperature", "vibration")
    assert clf.units == ("°C", "mm/s")
    meta = clf.metadata
    assert {"config", "data", "metrics", "created_at", "libraries"} <= set(meta)
    assert meta["config"]["architecture"] == [2, 64, 64, 3]
    assert meta["config"]["seed"] == 0
    assert meta["config"]["training"]["epochs_run"] >= 1
    assert meta["data"]["source"] == "synthetic"
    assert meta["data"]["rows_per_split"] == {"train": 3000, "validation": 300, "test": 300}
    test = meta["metrics"]["test"]
    for key in ("accuracy", "ece", "ece_uncalibrated", "log_loss", "log_loss_uncalibrated"):
        assert 0 <= test[key] < 1
    assert set(test["per_class"]) == set(clf.classes)
    assert np.sum(test["confusion_matrix"]) == test["n"] == 300
    # Even four epochs on 3,000 readings land far above chance (1/3) on this distribution.
    assert test["accuracy"] > 0.9
    P = clf.predict_proba([[30.0, 1.0], [45.0, 3.0], [70.0, 6.0]])
    np.testing.assert_array_equal(P.argmax(axis=1), [0, 1, 2])


def test_same_seed_same_model_version(tmp_path: Path) -> None:
    versions = []
    for name, seed in (("a", "7"), ("b", "7"), ("c", "8")):
        out = tmp_path / f"{name}.npz"
        assert main([*TINY_TRAIN, "--seed", seed, "--out", str(out)]) == 0
        versions.append(model.load(out).version)
    assert versions[0] == versions[1] != versions[2]


def test_prints_a_metrics_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*TINY_TRAIN, "--out", str(tmp_path / "m.npz")]) == 0
    out = capsys.readouterr().out
    for text in ("accuracy", "ECE", "log-loss", "precision", "recall", "F1", "confusion matrix"):
        assert text in out
    assert f"wrote {tmp_path / 'm.npz'}" in out


def test_trains_on_a_csv_with_three_features_and_two_classes(
    write_csv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(400, 3))
    label = np.where(X[:, 0] + X[:, 2] > 0, "up", "down")
    lines = ["a,b,c,machine,state"] + [
        f"{x[0]},{x[1]},{x[2]},m{i % 40},{lab}"
        for i, (x, lab) in enumerate(zip(X, label, strict=True))
    ]
    path = write_csv("\n".join(lines) + "\n")
    out = tmp_path / "m.npz"
    argv = [
        "--data",
        str(path),
        "--features",
        "a,b,c",
        "--label",
        "state",
        "--group-column",
        "machine",
    ]
    assert main([*argv, "--units", "V,,A", "--out", str(out), "--quiet", "--json"]) == 0
    metrics = _json_line(capsys.readouterr().out)
    clf = model.load(out)
    assert clf.classes == ("down", "up")
    assert clf.features == ("a", "b", "c")
    assert clf.units == ("V", "", "A")
    assert metrics["labels"] == ["down", "up"]
    assert metrics["accuracy"] > 0.85
    data = clf.metadata["data"]
    assert data["group_column"] == "machine"
    assert sum(data["groups_per_split"].values()) == 40
    assert sum(data["rows_per_split"].values()) == 400


BAD_DATA = {
    "missing column": ("temperature,label\n1,normal\n", "line 1, column 'vibration'"),
    "duplicate column": (
        "temperature,vibration,label,vibration\n"
        + "".join(f"{row},1\n" for row in GOOD_CSV.splitlines()[1:]),
        "line 1, column 'vibration': the header names 'vibration' twice",
    ),
    "non-numeric": (
        GOOD_CSV + "12,abc,normal\n",
        "line 92, column 'vibration': non-numeric value 'abc'",
    ),
    "NaN": (
        GOOD_CSV.replace("20,0.5,normal", "NaN,0.5,normal", 1),
        "line 2, column 'temperature': NaN",
    ),
    "infinity": (
        GOOD_CSV + "inf,1,normal\n",
        "line 92, column 'temperature': NaN or infinite value 'inf'",
    ),
    "huge": (
        GOOD_CSV + "1e308,1,normal\n",
        "line 92, column 'temperature': value beyond ±1e+100 '1e+308'",
    ),
    "one class": (
        "temperature,vibration,label\n" + "1,2,normal\n" * 20,
        "column 'label': only one class ('normal')",
    ),
    "too few rows": (
        GOOD_CSV + "99,9,broken\n99,9,broken\n",
        "lines 92, 93, column 'label': class 'broken' has 2 rows",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_DATA))
def test_bad_data_exits_2_naming_line_and_column(
    case: str, write_csv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, expected = BAD_DATA[case]
    path = write_csv(text)
    out = tmp_path / "model.npz"
    assert main(["--data", str(path), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{path}, {expected}" in err
    assert "Traceback" not in err
    assert not out.exists()


def test_bad_data_in_a_real_process_exits_2_without_traceback(write_csv) -> None:
    path = write_csv(GOOD_CSV + "12,,warning\n")
    result = _run("--data", str(path), "--out", str(path.with_suffix(".npz")))
    assert result.returncode == 2
    assert f"{path}, line 92, column 'vibration': missing value" in result.stderr
    assert "Traceback" not in result.stderr
    usage = _run("--samples", "many")
    assert usage.returncode == 2 and "usage:" in usage.stderr


def test_drop_invalid_says_how_many(
    write_csv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(GOOD_CSV + "12,abc,normal\nnan,1,warning\n")
    out = tmp_path / "m.npz"
    assert (
        main(["--data", str(path), "--drop-invalid", "--epochs", "3", "--out", str(out), "-q"]) == 0
    )
    assert "skipped 2 invalid rows of 92" in capsys.readouterr().err
    meta = model.load(out).metadata["data"]
    assert meta["rows_dropped"] == 2 and meta["rows"] == 90


def test_quality_gate_leaves_the_old_artifact_byte_identical(
    tiny_artifact: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "models" / "model.npz"
    out.parent.mkdir()
    out.write_bytes(tiny_artifact.read_bytes())
    before = out.read_bytes()
    mtime = out.stat().st_mtime_ns
    code = main([*TINY_TRAIN, "--seed", "3", "--min-accuracy", "0.999", "--out", str(out)])
    assert code == 3
    assert "below --min-accuracy" in capsys.readouterr().err
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime
    assert sorted(p.name for p in out.parent.iterdir()) == ["model.npz"]
    # A bar the model clears lets the new artifact through.
    assert main([*TINY_TRAIN, "--seed", "3", "--min-accuracy", "0.5", "--out", str(out)]) == 0
    assert out.read_bytes() != before


def _known_classifier(path: Path) -> None:
    """One feature x, classes (a, b), logits (0, x), temperature 2: P(b) = sigmoid(x / 2)."""
    network = model.MLP([np.array([[0.0, 1.0]])], [np.zeros(2)])
    model.Classifier(
        network=network,
        standardizer=model.Standardizer(mean=np.zeros(1), scale=np.ones(1)),
        classes=("a", "b"),
        features=("x",),
        units=("",),
        feature_min=np.array([-5.0]),
        feature_max=np.array([5.0]),
        temperature=2.0,
        novelty_model=model.ClassMahalanobis(
            means=np.zeros((2, 1)), whiteners=np.ones((2, 1, 1)), threshold=5.0
        ),
    ).save(path)


def test_evaluate_json_gives_known_numbers(write_csv, tmp_path: Path, capsys) -> None:
    model_path = tmp_path / "known.npz"
    _known_classifier(model_path)
    l3, l9 = math.log(3), math.log(9)
    # Calibrated P(b): 0.75 at x = 2 ln 3, 0.25 at -2 ln 3, 0.9 at 2 ln 9.
    rows = [(2 * l3, "b")] * 3 + [(2 * l3, "a")] + [(-2 * l3, "a")] * 3 + [(-2 * l3, "b")]
    rows += [(2 * l9, "b")] * 2
    path = write_csv("x,label\n" + "".join(f"{x!r},{lab}\n" for x, lab in rows))
    assert main(["evaluate", "--model", str(model_path), "--data", str(path), "--json"]) == 0
    got = _json_line(capsys.readouterr().out)
    assert got["n"] == 10
    assert got["labels"] == ["a", "b"]
    assert got["accuracy"] == pytest.approx(0.8)
    assert got["confusion_matrix"] == [[3, 1], [1, 5]]
    # One against the rest, thresholding P(class): the highest negative score (0.75 for
    # both classes) is the threshold at every rate, as fewer than 1 in 4 negatives may pass.
    at_rates = {name: got["per_class"][name].pop("recall_at_false_alarm_rate") for name in "ab"}
    assert at_rates == {"a": {"0.01": 0.0, "0.05": 0.0, "0.1": 0.0}} | {
        "b": pytest.approx({"0.01": 2 / 6, "0.05": 2 / 6, "0.1": 2 / 6})
    }
    assert got["per_class"]["a"] == pytest.approx(
        {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    )
    assert got["per_class"]["b"] == pytest.approx(
        {"precision": 5 / 6, "recall": 5 / 6, "f1": 5 / 6, "support": 6}
    )
    assert got["balanced_accuracy"] == pytest.approx((0.75 + 5 / 6) / 2)
    assert got["decision"] == "argmax" and "expected_cost_per_1000" not in got
    by_hand = -(6 * math.log(0.75) + 2 * math.log(0.25) + 2 * math.log(0.9)) / 10
    assert got["log_loss"] == pytest.approx(by_hand, rel=1e-9)
    # Eight readings at confidence 0.75 with 6 right (gap 0), two at 0.9 both right (gap 0.1).
    assert got["ece"] == pytest.approx(0.2 * 0.1, abs=1e-12)
    # The same in the reliability diagram (15 bins): 0.75 is in bin (11/15, 12/15], 0.9 in
    # (13/15, 14/15]; the empty bins are left out.
    assert got["reliability"] == [
        pytest.approx(
            {"lower": 11 / 15, "upper": 12 / 15, "count": 8, "confidence": 0.75, "accuracy": 0.75}
        ),
        pytest.approx(
            {"lower": 13 / 15, "upper": 14 / 15, "count": 2, "confidence": 0.9, "accuracy": 1.0}
        ),
    ]
    # Uncalibrated: P(b) = 0.9, 0.1 and 81/82.
    unc = -(6 * math.log(0.9) + 2 * math.log(0.1) + 2 * math.log(81 / 82)) / 10
    assert got["log_loss_uncalibrated"] == pytest.approx(unc, rel=1e-9)
    assert got["ece_uncalibrated"] == pytest.approx((8 * 0.15 + 2 * (1 - 81 / 82)) / 10, abs=1e-12)
    assert got["model_version"] == model.load(model_path).version


def test_evaluate_table_and_bad_inputs(tiny_artifact: Path, write_csv, capsys) -> None:
    path = write_csv(GOOD_CSV)
    assert main(["evaluate", "--model", str(tiny_artifact), "--data", str(path)]) == 0
    out = capsys.readouterr().out
    assert "(90 readings)" in out and "confusion matrix" in out
    bad = write_csv("temperature,vibration,label\n30,1,normal\n40,2,fine\n", "bad.csv")
    assert main(["evaluate", "--model", str(tiny_artifact), "--data", str(bad)]) == 2
    assert "line 3, column 'label': unknown class 'fine'" in capsys.readouterr().err
    missing = Path(path).with_name("missing.npz")
    assert main(["evaluate", "--model", str(missing), "--data", str(path)]) == 2
    assert "file does not exist" in capsys.readouterr().err
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(tiny_artifact),
                "--data",
                str(path),
                "--features",
                "temperature",
            ]
        )
        == 2
    )
    assert "the model takes 2" in capsys.readouterr().err


def test_evaluate_maps_other_column_names_onto_the_model(
    tiny_artifact: Path, write_csv, capsys
) -> None:
    path = write_csv(GOOD_CSV.replace("temperature,vibration,label", "t,v,state", 1))
    argv = ["evaluate", "--model", str(tiny_artifact), "--data", str(path), "--json"]
    assert main([*argv, "--features", "t,v", "--label", "state"]) == 0
    assert _json_line(capsys.readouterr().out)["n"] == 90


def test_generate_writes_balanced_synthetic_csv(tmp_path: Path) -> None:
    out = tmp_path / "synthetic.csv"
    assert main(["generate", "--samples", "99", "--seed", "1", "--out", str(out)]) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == "temperature,vibration,label"
    labels = [line.rsplit(",", 1)[1] for line in lines[1:]]
    assert {name: labels.count(name) for name in set(labels)} == {
        "normal": 33,
        "warning": 33,
        "critical": 33,
    }


def test_generate_into_a_directory_or_an_unwritable_path_says_so(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    assert main(["generate", "--samples", "9", "--out", str(folder)]) == 2
    assert f"--out {folder} is a directory" in capsys.readouterr().err
    blocker = folder / "a-file"
    blocker.write_text("")
    out = blocker / "synthetic.csv"
    assert main(["generate", "--samples", "9", "--out", str(out)]) == 1
    assert (
        f"error: cannot write {out}: {blocker} is a file, not a directory"
        in capsys.readouterr().err
    )


def test_report_writes_metrics_and_readable_plots(tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    assert (
        main([*TINY_TRAIN, "--out", str(tmp_path / "m.npz"), "--report", str(report), "--json"])
        == 0
    )
    printed = _json_line(capsys.readouterr().out)
    saved = json.loads((report / "metrics.json").read_text())
    assert saved["test"]["accuracy"] == printed["accuracy"]
    assert saved["model_version"] == printed["model_version"]
    assert len(saved["training"]["train_loss"]) == len(saved["training"]["validation_loss"]) >= 1
    for name in ("loss.png", "confusion_matrix.png", "reliability.png", "decision_regions.png"):
        data = (report / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        # A real picture, not an empty canvas: tens of kB at this size.
        assert len(data) > 15_000, name


@pytest.mark.parametrize("option", ["--report", "--out"])
def test_an_output_that_cannot_be_written_fails_before_training(
    tmp_path: Path, capsys, option: str
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    paths = {"--report": tmp_path / "report", "--out": tmp_path / "m.npz"}
    paths[option] = blocker / "below-a-file" / ("m.npz" if option == "--out" else "report")
    argv = [*TINY_TRAIN, "--out", str(paths["--out"]), "--report", str(paths["--report"])]
    assert main([*argv, "--quiet"]) == 1
    captured = capsys.readouterr()
    assert f"error: cannot write {paths[option]}" in captured.err
    assert "Not a directory" in captured.err
    # Nothing was trained: no test metrics were printed.
    assert "test metrics" not in captured.out and not (tmp_path / "m.npz").exists()


def test_report_has_no_decision_regions_beyond_two_features(write_csv, tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(120, 3))
    rows = [f"{a},{b},{c},{'hi' if a > 0 else 'lo'}" for a, b, c in X]
    path = write_csv("a,b,c,label\n" + "\n".join(rows) + "\n")
    report = tmp_path / "report"
    argv = ["--data", str(path), "--features", "a,b,c", "--epochs", "2", "-q"]
    assert main([*argv, "--out", str(tmp_path / "m.npz"), "--report", str(report)]) == 0
    assert sorted(p.name for p in report.iterdir()) == [
        "confusion_matrix.png",
        "loss.png",
        "metrics.json",
        "reliability.png",
    ]


def test_plain_log_lines_when_not_a_terminal(tmp_path: Path) -> None:
    result = _run("--samples", "3000", "--epochs", "3", "--out", str(tmp_path / "m.npz"))
    assert result.returncode == 0, result.stderr
    epochs = [line for line in result.stderr.splitlines() if "epoch " in line and "/3:" in line]
    assert len(epochs) == 3
    assert "\r" not in result.stderr


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "training",
            "--samples",
            "3000",
            "--epochs",
            "3",
            "--out",
            str(tmp_path / "m.npz"),
        ],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        stdin=subprocess.DEVNULL,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 1.0)
            if ready:
                try:
                    chunk = os.read(leader, 4096)
                except OSError:  # the child closed the terminal
                    break
                if not chunk:
                    break
                seen += chunk
            elif process.poll() is not None:
                break
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        os.close(leader)
    text = seen.decode(errors="replace")
    assert "training:" in text and "step" in text and "%|" in text
    # The per-epoch lines are the bar's job on a terminal.
    assert "epoch 1/3:" not in text


def test_ctrl_c_leaves_the_previous_artifact(tiny_artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "model.npz"
    out.write_bytes(tiny_artifact.read_bytes())
    before = out.read_bytes()
    command = [sys.executable, "-m", "training", "--samples", "60000", "--epochs", "100"]
    command += ["--patience", "100", "--out", str(out)]
    with subprocess.Popen(
        command,
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        # As in a terminal: a suite started in the background by a non-interactive shell would
        # otherwise hand the child an ignored SIGINT, and Python then never raises Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    ) as process:
        try:
            assert process.stderr is not None
            # Interrupt once training is under way (its first epoch line), like a user would.
            for line in process.stderr:
                if "epoch 1/100" in line:
                    break
            process.send_signal(signal.SIGINT)
            rest = process.stderr.read()
            assert process.wait(timeout=60) == 130
        finally:
            if process.poll() is None:
                process.kill()
    assert "interrupted" in rest and "Traceback" not in rest
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["model.npz"]


@needs_real_data
def test_real_hydraulic_data_by_cycle(tmp_path: Path, capsys) -> None:
    out = tmp_path / "real.npz"
    argv = ["--data", str(REAL_DATA), "--group-column", "cycle", "--out", str(out), "--json", "-q"]
    assert main(argv) == 0
    metrics = _json_line(capsys.readouterr().out)
    # scikit-learn's MLPClassifier((16,)) scores 0.977 on an 80/20 split by cycle (data README).
    assert metrics["accuracy"] >= 0.977
    # Test cycles are readings of the training distribution: few may look novel (issue 15).
    assert metrics["novelty"]["false_alarm_rate"] <= 0.02
    data = model.load(out).metadata["data"]
    assert data["rows"] == 132_300
    groups = data["groups_per_split"]
    assert sum(groups.values()) == 2205
    assert groups["test"] / 2205 == pytest.approx(0.2, abs=0.005)


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["--data", "x.csv", "--samples", "10"], "cannot be used with --data"),
        (["--group-column", "cycle"], "--group-column applies to --data only"),
        (["--validation-fraction", "0.5", "--test-fraction", "0.5"], "must be below 1"),
        (["--hidden", "64,0"], "layer sizes must be positive"),
        (["--min-accuracy", "1.5"], "between 0 and 1"),
        # A typed extra zero: the readings are made in memory, and 2e9 of them took the OOM
        # killer, unannounced, after a minute.
        (["--samples", "2000000000"], "at most 10000000"),
        (["generate", "--samples", "2000000000", "--out", "x.csv"], "at most 10000000"),
        # A repeated setting would quietly override the first.
        (
            ["--limits", "vibration=0:20", "--limits", "vibration=0:30"],
            "argument --limits: 'vibration' is given twice",
        ),
        (
            ["--cost", "critical:normal=5", "--cost", " critical : normal=5"],
            "argument --cost: 'critical:normal' is given twice",
        ),
        (
            [
                "--min-recall",
                "critical=0.5",
                "--min-recall",
                "warning=0.5",
                "--min-recall",
                "critical=0.9",
            ],
            "argument --min-recall: 'critical' is given twice",
        ),
    ],
)
def test_usage_errors_exit_2(argv: list[str], expected: str, capsys) -> None:
    with pytest.raises(SystemExit) as raised:
        code = main([*argv, "--quiet"])
        raise SystemExit(code)
    assert raised.value.code == 2
    assert expected in capsys.readouterr().err


def test_layers_larger_than_an_artifact_holds_exit_2_before_training(
    tmp_path: Path, capsys
) -> None:
    out = tmp_path / "model.npz"
    # 2,048 x 1,024 weights: training would run, and the artifact could not be written.
    assert main(["--samples", "300", "--hidden", "2048,1024", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "2048 x 1024" in err and "--hidden" in err and "Traceback" not in err
    assert not out.exists()


def test_more_classes_than_an_artifact_holds_exit_2_naming_the_column(
    tmp_path: Path, capsys
) -> None:
    # A label column that is no class at all (a serial number, a timestamp). 1,025 of them
    # used to train, then fail to save with a traceback (their cost matrix was too large).
    n = model.MAX_CLASSES + 1
    data = tmp_path / "serials.csv"
    data.write_text(
        "temperature,vibration,serial\n"
        + "".join(f"{20 + i % 50},{i % 7 * 0.5},S{i // 3}\n" for i in range(3 * n))
    )
    out = tmp_path / "model.npz"
    assert main(["--data", str(data), "--label", "serial", "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"error: {data}, column 'serial': {n} classes" in err
    assert f"at most {model.MAX_CLASSES}" in err and "Traceback" not in err
    assert not out.exists()


def test_more_features_than_the_novelty_model_can_store_exit_2_before_training(
    tmp_path: Path, capsys
) -> None:
    # 3 classes x 600 x 600 whitening weights: more than one artifact array holds.
    rng = np.random.default_rng(0)
    names = [f"f{j}" for j in range(600)]
    rows = [",".join([*names, "label"])]
    for i in range(60):
        rows.append(",".join([*(f"{v:.3f}" for v in rng.random(600)), ("a", "b", "c")[i % 3]]))
    data = tmp_path / "wide.csv"
    data.write_text("\n".join(rows) + "\n")
    out = tmp_path / "model.npz"
    argv = ["--data", str(data), "--features", ",".join(names), "--out", str(out), "--quiet"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "600 features" in err and "3 classes" in err and "Traceback" not in err
    assert not out.exists()


def test_running_out_of_memory_is_an_error_message_not_a_traceback(tmp_path: Path) -> None:
    # An endless --data (here /dev/zero) or a file larger than memory: read in full, it ends in
    # MemoryError under an address-space limit (3 GB, so that this machine is not emptied).
    import resource

    def limited() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    done = subprocess.run(
        [sys.executable, "-m", "training", "--data", "/dev/zero", "--out", str(tmp_path / "m.npz")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        preexec_fn=limited,
    )
    assert done.returncode == 1
    assert "error: out of memory" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "m.npz").exists()


def test_out_must_not_be_a_directory(tmp_path: Path, capsys) -> None:
    assert main(["--samples", "30", "--out", str(tmp_path)]) == 2
    assert "is a directory" in capsys.readouterr().err


def test_out_naming_the_data_file_is_a_usage_error_that_keeps_it(
    write_csv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_csv(GOOD_CSV)
    link = tmp_path / "link.csv"
    link.symlink_to(path)
    for out in (path, link):
        assert main(["--data", str(path), "--out", str(out), "--epochs", "1", "-q"]) == 2
        assert "is the --data file" in capsys.readouterr().err
    assert path.read_text() == GOOD_CSV


def test_a_learning_rate_that_blows_the_weights_up_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    # The validation loss stays finite; the self-test at a far reading overflows.
    out = tmp_path / "m.npz"
    argv = ["--samples", "3000", "--epochs", "2", "--learning-rate", "1e11", "--seed", "0"]
    assert main([*argv, "--out", str(out), "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: training diverged: ") and err.count("\n") == 1, err
    assert "try a smaller --learning-rate" in err and not out.exists()


def test_readings_outside_physical_limits_are_bad_data_located_and_skippable(
    write_csv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # -999: a sensor's fault code, below absolute zero; lines 2, 40 and 80 (of the data rows,
    # split across train, validation and test).
    rows = GOOD_CSV.splitlines(keepends=True)
    for line in (2, 40, 80):
        rows[line - 1] = "-999" + rows[line - 1][rows[line - 1].index(",") :]
    path = write_csv("".join(rows))
    out = tmp_path / "m.npz"
    argv = ["--data", str(path), "--out", str(out), "--epochs", "1", "-q"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert (
        f"{path}, line 2, column 'temperature': -999 is no possible reading: 3 readings of"
        " 'temperature' lie outside its physical limits [-273.15, inf] (set them with --limits)"
    ) in err
    assert "(3 of 90 rows are invalid; --drop-invalid skips them)" in err
    assert not out.exists()
    assert main([*argv, "--drop-invalid", "--json"]) == 0
    assert "skipped 3 invalid rows of 90" in capsys.readouterr().err
    assert model.load(out).metadata["data"]["rows_dropped"] == 3
    # Limits of one's own widen what is allowed.
    assert main([*argv, "--limits", "temperature=-1000:"]) == 0
