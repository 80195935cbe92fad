"""The mini-batch training loop: Adam, warm-up then cosine decay, early stopping on validation loss."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

import model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FitConfig:
    """How to train; every field lands in the artifact's metadata.

    The defaults were tuned on the synthetic distribution against an independent test set (see
    the README's training section): a high peak learning rate, decayed to zero, is what lets
    the ReLU network form the sharp, axis-aligned class boundaries of that distribution within
    a few epochs.
    """

    hidden: tuple[int, ...] = (64, 64)
    batch_size: int = 512
    learning_rate: float = 0.03
    # Fraction of all steps spent ramping the learning rate up from zero; Adam's first steps
    # at full rate can throw He-initialized weights far off.
    warmup_fraction: float = 0.05
    # None: as many epochs as give about ``target_steps`` optimizer steps, clipped to
    # [min_epochs, max_epochs], so small data sets get more passes than large ones.
    epochs: int | None = None
    target_steps: int = 4000
    min_epochs: int = 6
    max_epochs: int = 200
    # Epochs without a new best validation loss before stopping; the best weights are kept.
    patience: int = 5
    l2: float = 0.0

    def __post_init__(self) -> None:
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden layer sizes must be positive, got {self.hidden}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be positive, got {self.batch_size}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise ValueError(f"learning rate must be positive, got {self.learning_rate}")
        if not 0 <= self.warmup_fraction < 1:
            raise ValueError(f"warm-up fraction must be in [0, 1), got {self.warmup_fraction}")
        if self.epochs is not None and self.epochs < 1:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.patience < 1:
            raise ValueError(f"patience must be positive, got {self.patience}")
        if self.l2 < 0:
            raise ValueError(f"l2 must be non-negative, got {self.l2}")

    def plan(self, n_train: int) -> tuple[int, int, int]:
        """(batch size, steps per epoch, epochs) for ``n_train`` training rows."""
        batch_size = min(self.batch_size, n_train)
        steps_per_epoch = math.ceil(n_train / batch_size)
        if self.epochs is not None:
            return batch_size, steps_per_epoch, self.epochs
        epochs = math.ceil(self.target_steps / steps_per_epoch)
        return batch_size, steps_per_epoch, min(max(epochs, self.min_epochs), self.max_epochs)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass(frozen=True)
class EpochStats:
    """What one epoch did; passed to the ``on_epoch`` callback."""

    epoch: int  # 1-based
    epochs: int
    train_loss: float
    validation_loss: float
    validation_accuracy: float
    learning_rate: float
    seconds: float


@dataclass
class History:
    """Per-epoch losses and how training ended."""

    train_loss: list[float] = field(default_factory=list)
    validation_loss: list[float] = field(default_factory=list)
    validation_accuracy: list[float] = field(default_factory=list)
    best_epoch: int = 0  # 1-based epoch whose weights were kept
    epochs_planned: int = 0
    stopped_early: bool = False
    seconds: float = 0.0

    @property
    def epochs_run(self) -> int:
        return len(self.train_loss)

    def to_dict(self) -> dict[str, Any]:
        return {
            "train_loss": self.train_loss,
            "validation_loss": self.validation_loss,
            "validation_accuracy": self.validation_accuracy,
            "best_epoch": self.best_epoch,
            "epochs_run": self.epochs_run,
            "epochs_planned": self.epochs_planned,
            "stopped_early": self.stopped_early,
            "seconds": round(self.seconds, 3),
        }


def learning_rate_at(step: int, total_steps: int, config: FitConfig) -> float:
    """Linear warm-up over the first ``warmup_fraction`` of steps, then cosine decay to zero."""
    warmup = config.warmup_fraction * total_steps
    if step < warmup:
        return config.learning_rate * (step + 1) / warmup
    progress = (step - warmup) / max(total_steps - warmup, 1.0)
    return config.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(progress, 1.0)))


def _validation(
    net: model.MLP, Xs: NDArray[np.floating], y: NDArray[np.intp]
) -> tuple[float, float]:
    """Mean log-loss and accuracy of ``net`` on standardized ``Xs`` (n, n_features), labels ``y`` (n,)."""
    Z = net.logits(Xs)
    log_p = model.log_softmax(Z.astype(np.float64))
    loss = -float(log_p[np.arange(y.shape[0]), y].mean())
    return loss, float(np.mean(Z.argmax(axis=1) == y))


def fit(
    net: model.MLP,
    Xs_train: NDArray[np.floating],
    y_train: NDArray[np.intp],
    Xs_validation: NDArray[np.floating],
    y_validation: NDArray[np.intp],
    config: FitConfig,
    rng: np.random.Generator,
    on_epoch: Callable[[EpochStats], None] | None = None,
    on_steps: Callable[[int], None] | None = None,
) -> History:
    """Train ``net`` in place on standardized ``Xs_train`` (n_train, n_features), labels (n_train,).

    Only the validation data (standardized, (n_validation, n_features)) decides when to stop
    and which weights to keep. ``on_steps(k)`` is told every few dozen optimizer steps how
    many were done since the last call (for a progress bar); ``on_epoch`` gets each epoch's
    numbers. Returns the History; ``net`` holds the best epoch's weights.
    """
    started = time.perf_counter()
    dtype = net.dtype
    Xs_train = np.ascontiguousarray(Xs_train, dtype=dtype)
    Xs_validation = np.ascontiguousarray(Xs_validation, dtype=dtype)
    n_train = y_train.shape[0]
    batch_size, steps_per_epoch, epochs = config.plan(n_train)
    total_steps = steps_per_epoch * epochs
    optimizer = model.Adam(net.params, learning_rate=config.learning_rate)
    history = History(epochs_planned=epochs)
    best_loss, best_params, since_best = math.inf, [p.copy() for p in net.params], 0
    report_every = 32
    step = reported = 0
    for epoch in range(1, epochs + 1):
        epoch_started = time.perf_counter()
        order = rng.permutation(n_train)
        # One gather per epoch makes every mini-batch a contiguous slice.
        X_epoch, y_epoch = Xs_train[order], y_train[order]
        loss_sum = 0.0
        for start in range(0, n_train, batch_size):
            optimizer.learning_rate = learning_rate_at(step, total_steps, config)
            stop = start + batch_size
            loss, grads = net.loss_and_gradients(
                X_epoch[start:stop], y_epoch[start:stop], l2=config.l2
            )
            optimizer.step(grads)
            loss_sum += loss * (min(stop, n_train) - start)
            step += 1
            if on_steps is not None and step - reported >= report_every:
                on_steps(step - reported)
                reported = step
        if on_steps is not None and step > reported:
            on_steps(step - reported)
            reported = step
        validation_loss, validation_accuracy = _validation(net, Xs_validation, y_validation)
        history.train_loss.append(loss_sum / n_train)
        history.validation_loss.append(validation_loss)
        history.validation_accuracy.append(validation_accuracy)
        if not math.isfinite(validation_loss):
            raise FloatingPointError(
                f"training diverged in epoch {epoch} (validation loss {validation_loss}); "
                "try a smaller --learning-rate"
            )
        if validation_loss < best_loss:
            best_loss, since_best, history.best_epoch = validation_loss, 0, epoch
            for kept, p in zip(best_params, net.params, strict=True):
                kept[...] = p
        else:
            since_best += 1
        if on_epoch is not None:
            on_epoch(
                EpochStats(
                    epoch=epoch,
                    epochs=epochs,
                    train_loss=history.train_loss[-1],
                    validation_loss=validation_loss,
                    validation_accuracy=validation_accuracy,
                    learning_rate=optimizer.learning_rate,
                    seconds=time.perf_counter() - epoch_started,
                )
            )
        if since_best >= config.patience:
            history.stopped_early = epoch < epochs
            break
    for p, kept in zip(net.params, best_params, strict=True):
        p[...] = kept
    history.seconds = time.perf_counter() - started
    return history
