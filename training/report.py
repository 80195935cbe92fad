"""The `--report DIR` output: metrics.json and PNG plots (loss curves, confusion, reliability, regions)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

import model

if TYPE_CHECKING:
    from training.pipeline import TrainingResult

logger = logging.getLogger(__name__)

# Readings drawn in the decision-region plot: enough to show the class clouds, few enough that
# the regions stay visible underneath.
_MAX_SCATTER = 4000
_GRID = 400
_NOVEL_GREY = (0.62, 0.62, 0.62)
_CLASS_COLORS = ("#2a9d8f", "#e9c46a", "#e76f51", "#264653", "#8ab17d", "#f4a261", "#6d597a")


def _pyplot() -> Any:
    # Imported here, not at module level: matplotlib costs ~0.5 s to import and only --report
    # needs it. Agg renders to files without a display.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _colors(n: int) -> list[str]:
    return [_CLASS_COLORS[i % len(_CLASS_COLORS)] for i in range(n)]


def _label(name: str, unit: str) -> str:
    return f"{name} ({unit})" if unit else name


def plot_loss(history: dict[str, Any], path: Path) -> None:
    """Training and validation loss per epoch, the kept epoch marked; validation accuracy below."""
    plt = _pyplot()
    epochs = np.arange(1, len(history["train_loss"]) + 1)
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(7, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    top.plot(epochs, history["train_loss"], "o-", label="training (mean over the epoch)")
    top.plot(epochs, history["validation_loss"], "s-", label="validation (after the epoch)")
    best = history["best_epoch"]
    for ax in (top, bottom):
        ax.axvline(best, color="grey", linestyle="--", linewidth=1)
        ax.grid(alpha=0.3)
    # Label the kept epoch just under the top edge, on the side with room, clear of the curves.
    left = best > (len(epochs) + 1) / 2
    top.text(
        best + (-0.15 if left else 0.15),
        0.97,
        f"kept: epoch {best}",
        transform=top.get_xaxis_transform(),
        ha="right" if left else "left",
        va="top",
        color="dimgrey",
    )
    top.set_ylabel("cross-entropy loss")
    top.set_title("Loss by epoch")
    top.legend(loc="center right")
    bottom.plot(epochs, history["validation_accuracy"], "s-", color="C1")
    bottom.set_ylabel("validation accuracy")
    bottom.set_xlabel("epoch")
    bottom.xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_confusion(metrics: dict[str, Any], path: Path) -> None:
    """Confusion matrix: colour is the share of each true class, text gives count and share."""
    plt = _pyplot()
    labels = metrics["labels"]
    counts = np.asarray(metrics["confusion_matrix"], dtype=np.float64)
    shares = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = 1.3 * len(labels) + 2.5
    fig, ax = plt.subplots(figsize=(size + 1.5, size), layout="constrained")
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{int(counts[i, j])}\n{shares[i, j]:.1%}",
                ha="center",
                va="center",
                color="white" if shares[i, j] > 0.5 else "black",
            )
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(f"Test confusion matrix (accuracy {metrics['accuracy']:.4f}, n = {metrics['n']})")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_reliability(
    P: NDArray[np.floating],
    P_uncalibrated: NDArray[np.floating],
    y: NDArray[np.intp],
    path: Path,
    n_bins: int = 15,
) -> None:
    """Reliability diagram: accuracy against confidence per bin, before and after calibration.

    P, P_uncalibrated : ndarray of shape (n_samples, n_classes); y : (n_samples,)
    """
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(7, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]}
    )
    edges = np.linspace(0, 1, n_bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    width = 1 / n_bins
    top.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for offset, probabilities, name, color in (
        (-0.2, P_uncalibrated, "before calibration", "C1"),
        (0.2, P, "after calibration", "C0"),
    ):
        confidence, accuracy, counts = model.reliability_bins(probabilities, y, n_bins)
        ece = model.expected_calibration_error(probabilities, y, n_bins)
        used = counts > 0
        top.plot(
            confidence[used],
            accuracy[used],
            "o-",
            color=color,
            label=f"{name} (ECE {ece:.4f})",
        )
        bottom.bar(
            centers + offset * width,
            counts,
            width=0.4 * width,
            color=color,
            label=name,
        )
    # The readings pile up near confidence 1; start the axis at the lowest possible confidence.
    lowest = 1 / P.shape[1]
    top.set_xlim(lowest - 0.02, 1.01)
    # Accuracy in a sparsely filled bin can be anything, so the y axis keeps its full range.
    top.set_ylim(-0.02, 1.02)
    top.set_ylabel("accuracy in bin")
    top.set_title(f"Reliability on the test set ({n_bins} equal-width confidence bins)")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    bottom.set_yscale("log")
    bottom.set_ylabel("readings in bin")
    bottom.set_xlabel("confidence (highest class probability)")
    bottom.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_decision_regions(
    classifier: model.Classifier,
    X: NDArray[np.floating],
    y: NDArray[np.intp],
    path: Path,
    rng: np.random.Generator,
) -> None:
    """For two-feature models: predicted class over the plane (paler = less sure) with test readings.

    Where readings would be flagged novel the plane is shaded grey, edged by the novelty
    threshold's contour.
    X : ndarray of shape (n_samples, 2), y : (n_samples,) true classes of the readings drawn.
    """
    plt = _pyplot()
    from matplotlib.colors import to_rgb
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    colors = np.array([to_rgb(c) for c in _colors(classifier.n_classes)])
    low, high = X.min(axis=0), X.max(axis=0)
    margin = 0.05 * (high - low)
    low, high = low - margin, high + margin
    g0, g1 = np.linspace(low[0], high[0], _GRID), np.linspace(low[1], high[1], _GRID)
    grid = np.column_stack([np.repeat(g0, _GRID), np.tile(g1, _GRID)])
    P = classifier.predict_proba(grid)
    winner, confidence = P.argmax(axis=1), P.max(axis=1)
    # Blend the winning class's colour with white: full colour where the model is sure.
    strength = (confidence - 1 / classifier.n_classes) / (1 - 1 / classifier.n_classes)
    rgb = 1 - (0.15 + 0.7 * strength[:, None]) * (1 - colors[winner])
    novelty = classifier.novelty(grid).reshape(_GRID, _GRID).T
    image = rgb.reshape(_GRID, _GRID, 3).transpose(1, 0, 2)
    # Novel readings: the class colour washed out towards grey, whatever the confidence.
    image[novelty > 1] = 0.2 * image[novelty > 1] + 0.8 * np.array(_NOVEL_GREY)
    fig, ax = plt.subplots(figsize=(8, 6))
    ax.imshow(
        image,
        origin="lower",
        extent=(low[0], high[0], low[1], high[1]),
        aspect="auto",
        interpolation="nearest",
    )
    # The 50 % contour of each class's probability is where the decision flips.
    for k in range(classifier.n_classes):
        ax.contour(
            g0,
            g1,
            P[:, k].reshape(_GRID, _GRID).T,
            levels=[0.5],
            colors=[colors[k]],
            linewidths=1,
        )
    ax.contour(g0, g1, novelty, levels=[1.0], colors=["dimgrey"], linewidths=1.2)
    shown = rng.permutation(X.shape[0])[:_MAX_SCATTER]
    ax.scatter(
        X[shown, 0],
        X[shown, 1],
        c=colors[y[shown]],
        s=6,
        edgecolors="black",
        linewidths=0.2,
        alpha=0.8,
    )
    handles = [
        Line2D(
            [], [], marker="o", linestyle="", color=colors[k], markeredgecolor="black", label=name
        )
        for k, name in enumerate(classifier.classes)
    ]
    rate = classifier.novelty_model.target_rate
    handles.append(
        Patch(
            facecolor=_NOVEL_GREY,
            edgecolor="dimgrey",
            label=f"novel (target false alarms {rate:.1%})",
        )
    )
    ax.legend(handles=handles, title="true class (dots)\nregion: predicted", loc="upper left")
    ax.set_xlabel(_label(classifier.features[0], classifier.units[0]))
    ax.set_ylabel(_label(classifier.features[1], classifier.units[1]))
    ax.set_title(
        f"Decision regions (paler = less sure, grey = novel) and {shown.size} test readings"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_json(data: dict[str, Any], path: Path) -> None:
    """Write ``data`` as indented JSON, atomically."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    os.replace(tmp, path)


def write_training_report(result: TrainingResult, directory: Path) -> list[Path]:
    """Write metrics.json and the PNG plots of one training run into ``directory``; returns the paths."""
    directory.mkdir(parents=True, exist_ok=True)
    classifier = result.classifier
    test = result.parts.test
    written = [directory / "metrics.json"]
    write_json(
        {
            "model_version": classifier.version,
            "test": result.metrics,
            "training": result.history.to_dict(),
            "config": classifier.metadata.get("config", {}),
            "data": classifier.metadata.get("data", {}),
        },
        written[0],
    )
    plot_loss(result.history.to_dict(), directory / "loss.png")
    plot_confusion(result.metrics, directory / "confusion_matrix.png")
    plot_reliability(
        classifier.predict_proba(test.X),
        classifier.predict_proba(test.X, calibrated=False),
        test.y,
        directory / "reliability.png",
    )
    written += [
        directory / name for name in ("loss.png", "confusion_matrix.png", "reliability.png")
    ]
    if classifier.n_features == 2:
        plot_decision_regions(
            classifier, test.X, test.y, directory / "decision_regions.png", np.random.default_rng(0)
        )
        written.append(directory / "decision_regions.png")
    return written
