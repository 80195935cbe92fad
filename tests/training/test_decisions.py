"""Costs and rare classes on the command line: --cost, `costs`, `evaluate --cost`, --min-recall."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

import model
from tests.training.conftest import TINY_TRAIN
from tests.training.test_cli import GOOD_CSV, _known_classifier
from training.cli import main
from training.costs import cost_matrix, parse_cost
from training.evaluate import recall_at_false_alarm_rate

MISS = ["--cost", "critical:normal=10", "--cost", "critical:warning=10"]


def _json_line(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _known_data(write_csv) -> Path:
    l3, l9 = math.log(3), math.log(9)
    # The known classifier's calibrated P(b): 0.75 at x = 2 ln 3, 0.25 at -2 ln 3, 0.9 at 2 ln 9.
    rows = [(2 * l3, "b")] * 3 + [(2 * l3, "a")] + [(-2 * l3, "a")] * 3 + [(-2 * l3, "b")]
    rows += [(2 * l9, "b")] * 2
    return write_csv("x,label\n" + "".join(f"{x!r},{lab}\n" for x, lab in rows))


def test_cost_flags_build_the_matrix() -> None:
    specs = [
        parse_cost(t) for t in ("critical:normal=50", "critical:warning=5", "warning:normal=5")
    ]
    costs = cost_matrix(specs, ("normal", "warning", "critical"))
    np.testing.assert_array_equal(costs, [[0, 1, 1], [5, 0, 1], [50, 5, 0]])
    assert parse_cost(" critical : normal = 2.5") == ("critical", "normal", 2.5)


def test_recall_at_false_alarm_rate_by_hand() -> None:
    # 10 negatives scored 0.0 .. 0.9, positives at 0.95, 0.85, 0.55, 0.05.
    scores = np.array([*np.arange(10) / 10, 0.95, 0.85, 0.55, 0.05])
    positive = np.arange(14) >= 10
    # 10 %: one negative (0.9) may pass, so the threshold is 0.8: 0.95 and 0.85 caught.
    assert recall_at_false_alarm_rate(scores, positive, 0.1) == 0.5
    # 5 %: no negative may pass; threshold 0.9.
    assert recall_at_false_alarm_rate(scores, positive, 0.05) == 0.25
    assert recall_at_false_alarm_rate(scores, positive, 0.5) == 0.75
    assert recall_at_false_alarm_rate(scores, np.zeros(14, dtype=bool), 0.1) is None


def test_evaluate_cost_reports_the_candidate_by_hand(write_csv, tmp_path: Path, capsys) -> None:
    model_path = tmp_path / "known.npz"
    _known_classifier(model_path)
    data = _known_data(write_csv)
    argv = ["evaluate", "--model", str(model_path), "--data", str(data), "--json"]
    # Missing b costs 5: answer b when 5 P(b) > 1 - P(b), i.e. P(b) > 1/6: every reading here.
    assert main([*argv, "--cost", "b:a=5"]) == 0
    got = _json_line(capsys.readouterr().out)
    assert got["decision"] == "least expected cost"
    assert got["costs"] == [[0.0, 1.0], [5.0, 0.0]]
    assert got["confusion_matrix"] == [[0, 4], [0, 6]]
    assert got["per_class"]["b"]["recall"] == 1.0 and got["per_class"]["a"]["recall"] == 0.0
    # Four a answered b at cost 1, out of 10 readings; argmax misses one b (5) and one a (1).
    assert got["expected_cost_per_1000"] == pytest.approx(400.0)
    assert got["expected_cost_per_1000_argmax"] == pytest.approx(600.0)
    # Probabilities are the model's: log-loss as without --cost.
    assert main(argv) == 0
    plain = _json_line(capsys.readouterr().out)
    assert got["log_loss"] == plain["log_loss"] and got["ece"] == plain["ece"]
    assert got["model_version"] == plain["model_version"] == model.load(model_path).version
    # What `costs` would write with the same flag.
    out = tmp_path / "costly.npz"
    assert main(["costs", "--model", str(model_path), "--out", str(out), "--cost", "b:a=5"]) == 0
    assert got["candidate_model_version"] == model.load(out).version != got["model_version"]


def test_costs_rewrite_changes_version_and_decisions_not_probabilities(
    tiny_artifact: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "costly.npz"
    assert main(["costs", "--model", str(tiny_artifact), "--out", str(out), *MISS]) == 0
    printed = capsys.readouterr().out
    before, after = model.load(tiny_artifact), model.load(out)
    assert after.version in printed and before.version in printed
    assert after.version != before.version
    np.testing.assert_array_equal(after.costs, [[0, 1, 1], [1, 0, 1], [10, 10, 0]])
    for a, b in zip(before.network.params, after.network.params, strict=True):
        np.testing.assert_array_equal(a, b)
    X = np.random.default_rng(0).uniform([20, 0], [90, 8], size=(2000, 2))
    P = before.predict_proba(X)
    np.testing.assert_array_equal(P, after.predict_proba(X))
    changed = before.decide(P) != after.decide(P)
    assert changed.any() and np.all(after.decide(P)[changed] == 2)
    assert after.metadata["cost_changes"][-1]["from_model_version"] == before.version
    assert after.metadata["config"] == before.metadata["config"]
    # Back to argmax, in place: the original version again.
    assert main(["costs", "--model", str(out), "--out", str(out)]) == 0
    capsys.readouterr()
    assert model.load(out).version == before.version
    assert sorted(p.name for p in tmp_path.iterdir()) == ["costly.npz"]


@pytest.mark.parametrize(
    ("flag", "message"),
    [
        (
            "critcal:normal=10",
            "unknown class 'critcal' (the classes are normal, warning, critical)",
        ),
        ("critical:normal=-1", "must be a finite number >= 0"),
        ("critical:normal=inf", "must be a finite number >= 0"),
        # 1000 x the mean cost would overflow: the expected cost per 1,000 readings is inf.
        ("critical:normal=1e307", "must be a finite number >= 0 and <= 1e+12"),
        ("critical:critical=3", "the diagonal is always 0"),
        ("critical=3", "expected TRUE:ANSWER=VALUE"),
        ("critical:normal=lots", "is not a number"),
    ],
)
def test_bad_costs_exit_2(
    flag: str, message: str, tiny_artifact: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "out.npz"
    for argv in (
        ["costs", "--model", str(tiny_artifact), "--out", str(out)],
        [*TINY_TRAIN, "--out", str(out)],
    ):
        with pytest.raises(SystemExit) as raised:
            raise SystemExit(main([*argv, "--cost", flag]))
        assert raised.value.code == 2
        assert message in capsys.readouterr().err
    assert not out.exists()


def _strict_json(out: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(out.strip().splitlines()[-1], parse_constant=refuse)


def test_evaluate_costs_up_to_the_bound_print_strict_json(
    write_csv, tmp_path: Path, capsys
) -> None:
    model_path = tmp_path / "known.npz"
    _known_classifier(model_path)
    argv = ["evaluate", "--model", str(model_path), "--data", str(_known_data(write_csv))]
    assert main([*argv, "--json", "--cost", "a:b=1e12", "--cost", "b:a=1e12"]) == 0
    got = _strict_json(capsys.readouterr().out)
    # Equal costs answer as argmax: two of the ten readings wrong, each at the largest cost.
    assert got["expected_cost_per_1000"] == pytest.approx(1000 * 1e12 * 2 / 10)


def test_train_with_costs_stores_them_and_reports_cost(tmp_path: Path, capsys) -> None:
    out = tmp_path / "model.npz"
    assert main([*TINY_TRAIN, "--out", str(out), "--json", *MISS]) == 0
    got = _json_line(capsys.readouterr().out)
    clf = model.load(out)
    np.testing.assert_array_equal(clf.costs, [[0, 1, 1], [1, 0, 1], [10, 10, 0]])
    assert got["decision"] == "least expected cost"
    # Least expected cost is no promise of least cost on 300 test readings of a barely
    # trained model; only that both are reported (the by-hand case is in evaluate's test).
    assert got["expected_cost_per_1000"] >= 0 and got["expected_cost_per_1000_argmax"] >= 0
    for name in ("normal", "warning", "critical"):
        assert set(got["per_class"][name]["recall_at_false_alarm_rate"]) == {"0.01", "0.05", "0.1"}


def test_train_table_leads_with_per_class_recall(tmp_path: Path, capsys) -> None:
    assert main([*TINY_TRAIN, "--out", str(tmp_path / "m.npz")]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split()[:3] == ["class", "recall", "precision"]
    assert lines[3].split()[0] == "normal"
    assert any(line.strip().startswith("balanced accuracy") for line in lines)


def test_min_recall_gate_exits_3_and_keeps_the_artifact(
    tiny_artifact: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "model.npz"
    out.write_bytes(tiny_artifact.read_bytes())
    before, mtime = out.read_bytes(), out.stat().st_mtime_ns
    with pytest.raises(SystemExit) as raised:
        main([*TINY_TRAIN, "--out", str(out), "--min-recall", "critical=1.01"])
    assert raised.value.code == 2
    assert "between 0 and 1" in capsys.readouterr().err
    assert main([*TINY_TRAIN, "--out", str(out), "--min-recall", "critcal=0.5"]) == 2
    assert "--min-recall: unknown class 'critcal'" in capsys.readouterr().err
    report = tmp_path / "report"
    argv = [*TINY_TRAIN, "--out", str(out), "--min-recall", "normal=0", "--min-recall"]
    assert main([*argv, "warning=1.0", "--report", str(report)]) == 3
    err = capsys.readouterr().err
    assert "test recall of 'warning'" in err and "below --min-recall warning=1.0" in err
    assert out.read_bytes() == before and out.stat().st_mtime_ns == mtime
    # Nothing written: no report of the model that failed (its directory was made up front).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.npz", "report"]
    assert list(report.iterdir()) == []
    assert main([*argv, "warning=0.5"]) == 0
    assert out.read_bytes() != before


def test_a_costs_rewrite_counts_the_labels_its_costs_answer_as_training_with_them_does(
    tmp_path: Path, capsys
) -> None:
    plain, trained, rewritten = (tmp_path / f"{n}.npz" for n in ("plain", "trained", "rewritten"))
    assert main([*TINY_TRAIN, "--seed", "3", "--out", str(plain)]) == 0
    assert main([*TINY_TRAIN, "--seed", "3", *MISS, "--out", str(trained)]) == 0
    assert main(["costs", "--model", str(plain), "--out", str(rewritten), *MISS]) == 0
    capsys.readouterr()
    before, after, expected = (model.load(p) for p in (plain, rewritten, trained))
    assert after.version == expected.version
    shares = [m.drift_reference.label_shares for m in (before, after, expected)]
    # The costs move answers to critical, and the reference the service compares live labels
    # with moves with them: exactly as far as training with those costs puts it (the tiny
    # model's validation readings are fewer than the reference keeps, so all of them count).
    assert shares[1][2] > shares[0][2]
    np.testing.assert_array_equal(shares[1], shares[2])
    assert after.drift_reference.probabilities.shape == (300, 3)


def test_a_costs_rewrite_of_an_artifact_without_validation_probabilities_says_what_stays(
    tiny_artifact: Path, tmp_path: Path, capsys
) -> None:
    older = tmp_path / "older.npz"
    with np.load(tiny_artifact) as npz:
        arrays = {k: v for k, v in npz.items() if k != "drift_validation_probabilities"}
    np.savez(older, **arrays)
    out = tmp_path / "costly.npz"
    assert main(["costs", "--model", str(older), "--out", str(out), *MISS]) == 0
    assert "its label shares stay those of the costs it was trained with" in capsys.readouterr().err
    np.testing.assert_array_equal(
        model.load(out).drift_reference.label_shares,
        model.load(older).drift_reference.label_shares,
    )


def test_a_cost_of_minus_zero_is_a_cost_of_zero(
    tiny_artifact: Path, tmp_path: Path, capsys
) -> None:
    versions = []
    for value in ("0", "-0", "-0.0"):
        out = tmp_path / f"{value}.npz"
        argv = ["costs", "--model", str(tiny_artifact), "--out", str(out)]
        assert main([*argv, "--cost", f"critical:normal={value}"]) == 0
        assert "critical:normal=0" in capsys.readouterr().out
        versions.append(model.load(out).version)
    assert len(set(versions)) == 1


def test_minus_zero_costs_print_as_zero_in_training_and_evaluation(
    write_csv, tiny_artifact: Path, tmp_path: Path, capsys
) -> None:
    data = write_csv(GOOD_CSV)
    evaluate = ["evaluate", "--model", str(tiny_artifact), "--data", str(data), "--json"]
    train = [*TINY_TRAIN, "--out", str(tmp_path / "m.npz"), "--json"]
    for argv in (evaluate, train):
        printed = []
        for value in ("0", "-0"):
            assert main([*argv, "--cost", f"critical:normal={value}"]) == 0
            printed.append(json.loads(capsys.readouterr().out.splitlines()[-1]))
        assert "-0" not in json.dumps(printed[1]["costs"]), printed[1]["costs"]
        assert printed[1]["costs"] == printed[0]["costs"]
        version = "candidate_model_version" if argv is evaluate else "model_version"
        assert printed[1][version] == printed[0][version]
