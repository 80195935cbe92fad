"""Classification metrics on held-out data, and their plain-text table."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

import model

ECE_BINS = 15
# False-alarm rates at which each class's one-against-the-rest recall is reported.
FALSE_ALARM_RATES = (0.01, 0.05, 0.1)


def confusion_matrix(
    y: NDArray[np.intp], predicted: NDArray[np.intp], n_classes: int
) -> NDArray[np.int64]:
    """Counts of (true class, predicted class): ndarray of shape (n_classes, n_classes), rows are truth."""
    flat = np.bincount(y * n_classes + predicted, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def recall_at_false_alarm_rate(
    scores: NDArray[np.floating], positive: NDArray[np.bool_], rate: float
) -> float | None:
    """Share of positives caught by the best threshold on ``scores`` that keeps false alarms <= ``rate``.

    scores : ndarray of shape (n_samples,), higher means more likely positive (a class's
        probability); positive : (n_samples,) whether each reading is of that class.
    A reading is flagged when its score is strictly above the threshold, so ties among the
    negatives never push the false-alarm rate past ``rate``. None without positives or negatives.
    """
    negatives = np.sort(scores[~positive])[::-1]
    if negatives.size == 0 or not positive.any():
        return None
    allowed = int(np.floor(rate * negatives.size + 1e-9))
    if allowed >= negatives.size:
        return 1.0
    threshold = negatives[allowed]
    return float(np.mean(scores[positive] > threshold))


def reliability(P: NDArray[np.floating], y: NDArray[np.intp], n_bins: int) -> list[dict[str, Any]]:
    """The reliability diagram's points: each non-empty confidence bin of the ECE, as JSON.

    One ``{"lower", "upper", "count", "confidence", "accuracy"}`` per bin holding a prediction:
    the bin's confidence interval ``(lower, upper]``, how many predictions fall in it, their
    mean confidence (the top probability) and the share of them that are right. The ECE is
    the count-weighted mean of ``|accuracy - confidence|`` over these bins.
    """
    confidence, accuracy, counts = model.reliability_bins(P, y, n_bins)
    return [
        {
            "lower": b / n_bins,
            "upper": (b + 1) / n_bins,
            "count": int(counts[b]),
            "confidence": float(confidence[b]),
            "accuracy": float(accuracy[b]),
        }
        for b in np.flatnonzero(counts).tolist()
    ]


def classification_metrics(
    P: NDArray[np.floating],
    y: NDArray[np.intp],
    classes: tuple[str, ...],
    P_uncalibrated: NDArray[np.floating] | None = None,
    decided: NDArray[np.intp] | None = None,
    costs: NDArray[np.float64] | None = None,
) -> dict[str, Any]:
    """Metrics at the decision made: per-class recall / precision / F1, balanced accuracy, costs.

    P : ndarray of shape (n_samples, n_classes), the (calibrated) probabilities
    y : ndarray of shape (n_samples,), true class indices
    P_uncalibrated : the same readings' probabilities before calibration, if there was one;
        adds ``log_loss_uncalibrated`` and ``ece_uncalibrated``.
    decided : ndarray of shape (n_samples,), the answers given (``Classifier.decide``);
        default: argmax of ``P``.
    costs : ndarray of shape (n_classes, n_classes), the cost matrix when costs are set; adds
        ``expected_cost_per_1000`` (mean cost of the answers given, per 1,000 readings) and
        ``expected_cost_per_1000_argmax`` (the same matrix applied to argmax's answers).

    Also, per class, ``recall_at_false_alarm_rate``: one class against the rest, thresholding
    its probability, at each rate of ``FALSE_ALARM_RATES`` (independent of the decision).
    ``reliability``: the reliability diagram of ``P`` (see `reliability`), in the ECE's bins.
    Returns a JSON-serializable dict. A class that is never predicted has precision 0 (and
    one that never occurs recall 0), as scikit-learn reports with ``zero_division=0``.
    """
    y = np.asarray(y, dtype=np.intp)
    P = np.asarray(P)
    n_classes = len(classes)
    argmax = P.argmax(axis=1)
    predicted = argmax if decided is None else np.asarray(decided, dtype=np.intp)
    matrix = confusion_matrix(y, predicted, n_classes)
    true_positive = np.diag(matrix).astype(np.float64)
    support = matrix.sum(axis=1)
    predicted_count = matrix.sum(axis=0)
    precision = np.divide(
        true_positive, predicted_count, out=np.zeros(n_classes), where=predicted_count > 0
    )
    recall = np.divide(true_positive, support, out=np.zeros(n_classes), where=support > 0)
    denominator = precision + recall
    f1 = np.divide(
        2 * precision * recall, denominator, out=np.zeros(n_classes), where=denominator > 0
    )
    n = int(y.shape[0])
    metrics: dict[str, Any] = {
        "n": n,
        "accuracy": float(true_positive.sum() / n) if n else 0.0,
        "log_loss": model.log_loss(P, y),
        "ece": model.expected_calibration_error(P, y, n_bins=ECE_BINS),
        "labels": list(classes),
        "per_class": {
            name: {
                "precision": float(precision[k]),
                "recall": float(recall[k]),
                "f1": float(f1[k]),
                "support": int(support[k]),
            }
            for k, name in enumerate(classes)
        },
        "macro_f1": float(f1.mean()),
        "confusion_matrix": matrix.tolist(),
        "ece_bins": ECE_BINS,
        "reliability": reliability(P, y, ECE_BINS),
    }
    present = support > 0
    metrics["balanced_accuracy"] = float(recall[present].mean()) if present.any() else 0.0
    metrics["decision"] = "argmax" if costs is None else "least expected cost"
    for k, name in enumerate(classes):
        metrics["per_class"][name]["recall_at_false_alarm_rate"] = {
            f"{rate:g}": recall_at_false_alarm_rate(P[:, k], y == k, rate)
            for rate in FALSE_ALARM_RATES
        }
    if costs is not None:
        metrics["costs"] = np.asarray(costs).tolist()
        metrics["expected_cost_per_1000"] = float(1000 * costs[y, predicted].mean()) if n else 0.0
        metrics["expected_cost_per_1000_argmax"] = (
            float(1000 * costs[y, argmax].mean()) if n else 0.0
        )
    if P_uncalibrated is not None:
        metrics["log_loss_uncalibrated"] = model.log_loss(P_uncalibrated, y)
        metrics["ece_uncalibrated"] = model.expected_calibration_error(
            P_uncalibrated, y, n_bins=ECE_BINS
        )
    return metrics


def format_metrics(metrics: dict[str, Any], title: str = "test metrics") -> str:
    """A short plain-text table of ``classification_metrics`` output, for a terminal.

    Leads with what a rare class needs: per-class recall at the decision made.
    """
    labels = metrics["labels"]
    width = max(8, *(len(name) for name in labels))
    rates = list(next(iter(metrics["per_class"].values()))["recall_at_false_alarm_rate"])
    lines = [f"{title} ({metrics['n']} readings)", f"  decision: {metrics['decision']}"]
    lines.append(
        f"  {'class':<{width}}  recall  precision     F1  support  "
        + "  ".join(f"recall@{float(r):.0%}FA" for r in rates)
    )
    for name in labels:
        row = metrics["per_class"][name]
        at_rate = [row["recall_at_false_alarm_rate"][r] for r in rates]
        lines.append(
            f"  {name:<{width}}  {row['recall']:6.4f}  {row['precision']:9.4f}  {row['f1']:.4f}"
            f"  {row['support']:7d}  "
            + "  ".join(
                f"{'-' if v is None else f'{v:.4f}':>{len(f'recall@{float(r):.0%}FA')}}"
                for r, v in zip(rates, at_rate, strict=True)
            )
        )
    lines.append("")
    lines.append(
        f"  balanced accuracy {metrics['balanced_accuracy']:.4f}    macro F1 "
        f"{metrics['macro_f1']:.4f}    accuracy {metrics['accuracy']:.4f}"
    )
    if "expected_cost_per_1000" in metrics:
        lines.append(
            f"  expected cost per 1,000 readings {metrics['expected_cost_per_1000']:.1f}"
            f" (argmax would cost {metrics['expected_cost_per_1000_argmax']:.1f})"
        )
    if "ece_uncalibrated" in metrics:
        lines.append(
            f"  log-loss   {metrics['log_loss_uncalibrated']:.4f} -> {metrics['log_loss']:.4f}"
            "  (before -> after calibration)"
        )
        lines.append(
            f"  ECE        {metrics['ece_uncalibrated']:.4f} -> {metrics['ece']:.4f}"
            f"  ({metrics['ece_bins']} equal-width bins)"
        )
    else:
        lines.append(f"  log-loss   {metrics['log_loss']:.4f}")
        lines.append(f"  ECE        {metrics['ece']:.4f}  ({metrics['ece_bins']} equal-width bins)")
    if "novelty" in metrics:
        novelty = metrics["novelty"]
        lines.append(
            f"  novel      {novelty['false_alarm_rate']:.2%} of test readings flagged "
            f"(target {novelty['target_false_alarm_rate']:.2%}, validation "
            f"{novelty['validation_false_alarm_rate']:.2%}; {novelty['method']})"
        )
    labels = metrics["labels"]
    width = max(8, *(len(name) for name in labels))
    lines.append("")
    lines.append("  confusion matrix (rows: true class, columns: answered)")
    counts = metrics["confusion_matrix"]
    cell = max(7, *(len(str(v)) for row in counts for v in row), *(len(name) for name in labels))
    lines.append(f"  {'':<{width}}  " + " ".join(f"{name:>{cell}}" for name in labels))
    for name, row in zip(labels, counts, strict=True):
        lines.append(f"  {name:<{width}}  " + " ".join(f"{v:>{cell}d}" for v in row))
    return "\n".join(lines)
