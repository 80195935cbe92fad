"""From data to a calibrated, evaluated Classifier: split, standardize, fit, calibrate, test once."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import itertools
import logging
import math
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

import model
from model.artifact import MAX_ELEMENTS
from training.data import DataError, Dataset, synthetic
from training.evaluate import classification_metrics
from training.fit import EpochStats, FitConfig, History, fit
from training.limits import Limits
from training.split import PART_NAMES, SplitError, grouped_split, stratified_split

logger = logging.getLogger(__name__)

# Synthetic validation and test sets are fresh draws of this fraction of the training size (the
# generator has unlimited data, so nothing needs carving out of the training set), never fewer
# than this many readings.
SYNTHETIC_HOLDOUT_FRACTION = 0.1
SYNTHETIC_MIN_HOLDOUT = 300
# Share of held-out readings from the training distribution that may be flagged novel.
DEFAULT_NOVELTY_RATE = 0.005
# Validation readings whose probabilities the drift reference keeps: label shares counted from
# 2,000 readings are within about 1.1 percentage points of all of them (one standard error at
# a share of 0.5), far finer than a PSI alert (a share off by 0.011 adds 0.0002 to a PSI whose
# alert is at 0.25). 24 KB for 3 classes, which keeps the default artifact well inside what
# `kubectl apply` can put in a ConfigMap (deploy/README.md).
REFERENCE_PROBABILITIES = 2_000


@dataclass(frozen=True)
class Parts:
    """The three disjoint data sets of one training run."""

    train: Dataset
    validation: Dataset
    test: Dataset

    def sizes(self) -> dict[str, int]:
        return {name: len(getattr(self, name)) for name in PART_NAMES}


@dataclass(frozen=True)
class TrainingResult:
    """A trained classifier (metadata included), its test metrics and its training history."""

    classifier: model.Classifier
    metrics: dict[str, Any]
    history: History
    parts: Parts
    validation_logits: np.ndarray


def synthetic_parts(
    n_train: int, rng: np.random.Generator, limits: Mapping[str, Limits] | None = None
) -> Parts:
    """Training set of ``n_train`` synthetic readings plus independent validation and test sets.

    ``limits`` (feature -> (low, high)) replace the known physical limits, as in ``synthetic``.
    """
    n_holdout = max(SYNTHETIC_MIN_HOLDOUT, math.ceil(SYNTHETIC_HOLDOUT_FRACTION * n_train))
    # Independent streams per part: the training set for a seed does not depend on the
    # hold-out sizes.
    train_rng, validation_rng, test_rng = rng.spawn(3)
    parts = Parts(
        train=synthetic(n_train, train_rng, limits),
        validation=synthetic(n_holdout, validation_rng, limits),
        test=synthetic(n_holdout, test_rng, limits),
    )
    return parts


def split_parts(
    data: Dataset,
    rng: np.random.Generator,
    validation_fraction: float,
    test_fraction: float,
    path: str,
    label: str,
) -> Parts:
    """Split a loaded data set (by group when it has groups); bad class sizes become DataError."""
    try:
        if data.groups is not None:
            split = grouped_split(data.y, data.groups, rng, validation_fraction, test_fraction)
        else:
            split = stratified_split(data.y, rng, validation_fraction, test_fraction)
    except SplitError as exc:
        name = data.classes[exc.class_index]
        rows = np.flatnonzero(data.y == exc.class_index)
        where = f"{path}"
        if data.lines is not None and rows.size:
            shown = ", ".join(str(v) for v in data.lines[rows[:5]])
            # Parquet has no lines; its Dataset numbers rows instead.
            unit = "row" if data.description.get("source") == "parquet" else "line"
            where += (
                f", {unit}{'s' if rows.size > 1 else ''} {shown}{', ...' if rows.size > 5 else ''}"
            )
        raise DataError(
            f"{where}, column '{label}': class {name!r} has {rows.size} row"
            f"{'s' if rows.size != 1 else ''}, {exc}"
        ) from None
    return Parts(
        train=data.subset(split.train),
        validation=data.subset(split.validation),
        test=data.subset(split.test),
    )


def _single_threaded_blas() -> contextlib.AbstractContextManager[Any]:
    """Limit BLAS to one thread while training.

    The mini-batch products are small (512 x 64 by 64 x 64), so a second BLAS thread gains
    little; and on a machine whose cores are busy with other work, OpenBLAS threads that spin
    waiting for each other made a 3 s run take 10-35 s. One thread is also steady under load.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # an install without the train extra: correct, just less steady
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version(), "numpy": np.__version__}
    # Only what this run actually used: pandas is imported for CSV data alone.
    pandas = sys.modules.get("pandas")
    if pandas is not None:
        versions["pandas"] = pandas.__version__
    return versions


def checked_temperature(
    logits: np.ndarray, y: np.ndarray, groups: np.ndarray | None
) -> dict[str, Any]:
    """The calibration temperature fitted on validation ``logits`` (n, n_classes), if it holds up.

    A temperature is fitted on each half of the validation set (halves of its groups when it
    has groups, of its rows otherwise) and scored by the Brier score on the other half. Only
    when that beats leaving the logits alone (temperature 1) is the temperature fitted on the
    whole validation set kept. Why: on data split by group (cycles, machines), a validation
    set of some 150 cycles may hold a few cycles the model gets confidently wrong, and the
    log-loss the temperature minimizes is dominated by them; the temperature then follows
    those few cycles, and on the hydraulic rare-class check it more than doubled the test ECE
    (see the README). The Brier score is proper but bounded, so the few cannot dominate it.
    Returns the temperature kept and the numbers that decided it, for the artifact's metadata.
    """
    y = np.asarray(y, dtype=np.intp)
    units = np.arange(y.shape[0]) if groups is None else np.asarray(groups)
    ids = np.unique(units)
    fitted = model.fit_temperature(logits, y)
    if ids.size < 2:
        return {"temperature": fitted, "fitted": fitted, "check": "too few validation units"}
    first = np.isin(units, ids[::2])
    score_fitted = score_unit = 0.0
    for fit_on, score_on in ((first, ~first), (~first, first)):
        half = model.fit_temperature(logits[fit_on], y[fit_on])
        weight = score_on.sum() / y.shape[0]
        score_fitted += weight * model.brier_score(
            model.softmax(logits[score_on] / half), y[score_on]
        )
        score_unit += weight * model.brier_score(model.softmax(logits[score_on]), y[score_on])
    kept = fitted if score_fitted < score_unit else 1.0
    return {
        "temperature": kept,
        "fitted": fitted,
        "held_out_brier_fitted": score_fitted,
        "held_out_brier_unscaled": score_unit,
        "halves_of": "groups" if groups is not None else "rows",
    }


def train(
    parts: Parts,
    config: FitConfig,
    rng: np.random.Generator,
    seed: int | None = None,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_steps: Callable[[int], None] | None = None,
    on_start: Callable[[int], None] | None = None,
    novelty_rate: float = DEFAULT_NOVELTY_RATE,
    costs: np.ndarray | None = None,
) -> TrainingResult:
    """Train, calibrate and evaluate a classifier on ``parts``.

    The standardizer, the training range and the novelty model come from the training part
    only; early stopping, the calibration temperature and the novelty threshold (at most
    ``novelty_rate`` of validation readings novel) see only the validation part; the test
    part is scored exactly once, at the end. ``on_start(total_steps)`` is called before the
    first step. ``costs`` (n_classes, n_classes), if given, is stored in the classifier and
    the test metrics are those of its least-expected-cost decision; training itself ignores
    it. The artifact states the physical limits the training part was made or loaded within
    (``Dataset.lower_limits``, ``upper_limits``), which are not checked again here.
    """
    started = time.perf_counter()
    train_set, validation_set, test_set = parts.train, parts.validation, parts.test
    layer_sizes = [train_set.X.shape[1], *config.hidden, len(train_set.classes)]
    n_features, n_classes = layer_sizes[0], layer_sizes[-1]
    # The arrays that grow with the data and the settings, checked before training rather
    # than refused by `save` after it: what they are, how many numbers, what to change.
    planned = [
        *(
            (f"a layer of {n_in} x {n_out} weights", n_in * n_out, "choose smaller --hidden sizes")
            for n_in, n_out in itertools.pairwise(layer_sizes)
        ),
        (
            f"the novelty model of {n_classes} classes x {n_features} features squared",
            n_classes * n_features**2,
            "choose fewer --features",
        ),
    ]
    for what, size, change in planned:
        if size > MAX_ELEMENTS:
            raise DataError(
                f"{what} is more than an artifact holds ({MAX_ELEMENTS} numbers per array); "
                f"{change}"
            )
    standardizer = model.Standardizer.fit(train_set.X)
    network = model.MLP.initialize(
        layer_sizes=layer_sizes,
        rng=rng,
        dtype=np.float32,
    )
    Xs_train = standardizer.transform(train_set.X).astype(np.float32)
    Xs_validation = standardizer.transform(validation_set.X).astype(np.float32)
    if on_start is not None:
        _, steps_per_epoch, epochs = config.plan(len(train_set))
        on_start(steps_per_epoch * epochs)
    # A learning rate too high for the data overflows float32 on the way: what comes of it is
    # checked (a loss that is not finite, the self-test below) and said in one line, rather
    # than numpy warning from inside the optimizer first.
    with _single_threaded_blas(), np.errstate(over="ignore", invalid="ignore"):
        history = fit(
            network,
            Xs_train,
            train_set.y,
            Xs_validation,
            validation_set.y,
            config,
            rng,
            on_epoch=on_epoch,
            on_steps=on_steps,
        )
        validation_logits = network.logits(Xs_validation).astype(np.float64)
    calibration = checked_temperature(validation_logits, validation_set.y, validation_set.groups)
    temperature = calibration["temperature"]
    novelty_model = model.ClassMahalanobis.fit(
        standardizer.transform(train_set.X), train_set.y, len(train_set.classes)
    ).with_threshold(standardizer.transform(validation_set.X), novelty_rate)

    try:
        uncalibrated = model.Classifier(
            network=network,
            standardizer=standardizer,
            classes=train_set.classes,
            features=train_set.features,
            units=train_set.units,
            feature_min=train_set.X.min(axis=0),
            feature_max=train_set.X.max(axis=0),
            temperature=temperature,
            lower_limits=np.array(train_set.lower_limits),
            upper_limits=np.array(train_set.upper_limits),
            novelty_model=novelty_model,
            costs=costs,
        )
    except ValueError as exc:
        # Its self-test: a validation loss can stay finite while the weights grow past what a
        # far reading's forward pass survives.
        raise FloatingPointError(
            f"training diverged: {exc}; try a smaller --learning-rate"
        ) from None
    metrics = _metrics(uncalibrated, test_set)
    validation_P = model.softmax(validation_logits / temperature)
    metrics["validation"] = {
        "log_loss": model.log_loss(validation_P, validation_set.y),
        "accuracy": float(np.mean(validation_P.argmax(axis=1) == validation_set.y)),
    }
    metrics["novelty"] = {
        "method": novelty_model.method,
        "threshold": novelty_model.threshold,
        "target_false_alarm_rate": novelty_rate,
        "validation_false_alarm_rate": novel_share(uncalibrated, validation_set.X),
        "false_alarm_rate": novel_share(uncalibrated, test_set.X),
    }
    metadata = {
        "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "config": {
            **config.to_dict(),
            "architecture": layer_sizes,
            "activation": "relu",
            "optimizer": "adam",
            "schedule": "linear warm-up, cosine decay to zero",
            "dtype": "float32",
            "seed": seed,
            "temperature": temperature,
            "calibration": calibration,
            "training": history.to_dict(),
        },
        "data": {
            **train_set.description,
            "features": list(train_set.features),
            "units": list(train_set.units),
            "classes": list(train_set.classes),
            "rows_per_split": parts.sizes(),
            "groups_per_split": {
                name: int(np.unique(getattr(parts, name).groups).size)
                for name in PART_NAMES
                if getattr(parts, name).groups is not None
            }
            or None,
        },
        "metrics": {"test": metrics},
        "libraries": _library_versions(),
        "training_seconds": round(time.perf_counter() - started, 3),
    }
    # What live readings are compared with: the training readings' bins, and the labels the
    # service would answer on validation readings (least expected cost, as it answers). Their
    # probabilities are kept, evenly spaced rows up to REFERENCE_PROBABILITIES of them, so that a
    # change of costs alone (`python -m training costs`) counts the labels it answers anew.
    kept = np.linspace(0, len(validation_P) - 1, min(len(validation_P), REFERENCE_PROBABILITIES))
    drift_reference = model.DriftReference.fit(
        train_set.X,
        uncalibrated.decide(validation_P),
        len(train_set.classes),
        probabilities=validation_P[kept.astype(np.intp)],
    )
    classifier = dataclasses.replace(
        uncalibrated, metadata=metadata, drift_reference=drift_reference
    )
    return TrainingResult(
        classifier=classifier,
        metrics=metrics,
        history=history,
        parts=parts,
        validation_logits=validation_logits,
    )


def novel_share(classifier: model.Classifier, X: np.ndarray) -> float:
    """Share of raw readings ``X`` (n_samples, n_features) that ``classifier`` flags as novel."""
    return float(np.mean(classifier.novelty(X) > 1.0))


def _metrics(classifier: model.Classifier, data: Dataset) -> dict[str, Any]:
    """``classification_metrics`` at the classifier's own decision, costs included when set."""
    P = classifier.predict_proba(data.X)
    P_uncalibrated = classifier.predict_proba(data.X, calibrated=False)
    return classification_metrics(
        P,
        data.y,
        classifier.classes,
        P_uncalibrated,
        decided=classifier.decide(P),
        costs=None if classifier.has_default_costs else classifier.costs,
    )


def evaluate_classifier(classifier: model.Classifier, data: Dataset) -> dict[str, Any]:
    """Metrics of an existing classifier on labelled ``data`` (classes in the model's order)."""
    metrics = _metrics(classifier, data)
    metrics["model_version"] = classifier.version
    metrics["in_training_range"] = float(np.mean(classifier.in_training_range(data.X)))
    metrics["novel"] = novel_share(classifier, data.X)
    return metrics
