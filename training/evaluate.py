"""Classification metrics on held-out data, and their plain-text table."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

import model

ECE_BINS = 15


def confusion_matrix(
    y: NDArray[np.intp], predicted: NDArray[np.intp], n_classes: int
) -> NDArray[np.int64]:
    """Counts of (true class, predicted class): ndarray of shape (n_classes, n_classes), rows are truth."""
    flat = np.bincount(y * n_classes + predicted, minlength=n_classes * n_classes)
    return flat.reshape(n_classes, n_classes).astype(np.int64)


def classification_metrics(
    P: NDArray[np.floating],
    y: NDArray[np.intp],
    classes: tuple[str, ...],
    P_uncalibrated: NDArray[np.floating] | None = None,
) -> dict[str, Any]:
    """Accuracy, per-class precision / recall / F1, confusion matrix, log-loss and ECE.

    P : ndarray of shape (n_samples, n_classes), the (calibrated) probabilities
    y : ndarray of shape (n_samples,), true class indices
    P_uncalibrated : the same readings' probabilities before calibration, if there was one;
        adds ``log_loss_uncalibrated`` and ``ece_uncalibrated``.

    Returns a JSON-serializable dict. A class that is never predicted has precision 0 (and
    one that never occurs recall 0), as scikit-learn reports with ``zero_division=0``.
    """
    y = np.asarray(y, dtype=np.intp)
    n_classes = len(classes)
    predicted = np.asarray(P).argmax(axis=1)
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
    }
    if P_uncalibrated is not None:
        metrics["log_loss_uncalibrated"] = model.log_loss(P_uncalibrated, y)
        metrics["ece_uncalibrated"] = model.expected_calibration_error(
            P_uncalibrated, y, n_bins=ECE_BINS
        )
    return metrics


def format_metrics(metrics: dict[str, Any], title: str = "test metrics") -> str:
    """A short plain-text table of ``classification_metrics`` output, for a terminal."""
    lines = [f"{title} ({metrics['n']} readings)"]
    lines.append(f"  accuracy   {metrics['accuracy']:.4f}    macro F1 {metrics['macro_f1']:.4f}")
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
    lines.append(f"  {'class':<{width}}  precision  recall     F1  support")
    for name in labels:
        row = metrics["per_class"][name]
        lines.append(
            f"  {name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  {row['f1']:.4f}"
            f"  {row['support']:7d}"
        )
    lines.append("")
    lines.append("  confusion matrix (rows: true class, columns: predicted)")
    counts = metrics["confusion_matrix"]
    cell = max(7, *(len(str(v)) for row in counts for v in row), *(len(name) for name in labels))
    lines.append(f"  {'':<{width}}  " + " ".join(f"{name:>{cell}}" for name in labels))
    for name, row in zip(labels, counts, strict=True):
        lines.append(f"  {name:<{width}}  " + " ".join(f"{v:>{cell}d}" for v in row))
    return "\n".join(lines)
