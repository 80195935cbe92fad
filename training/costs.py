"""What a wrong answer costs: `--cost TRUE:ANSWER=VALUE` and `--min-recall CLASS=X` into arrays."""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

import model


class CostError(ValueError):
    """A cost or recall setting that does not fit the model's classes; exit status 2."""


def parse_cost(text: str) -> tuple[str, str, float]:
    """Argparse type for ``TRUE:ANSWER=VALUE`` -> (true class, answered class, cost)."""
    pair, equals, value_text = text.partition("=")
    true, colon, answer = pair.partition(":")
    true, answer = true.strip(), answer.strip()
    if not (equals and colon and true and answer):
        raise argparse.ArgumentTypeError(
            f"expected TRUE:ANSWER=VALUE such as critical:normal=50, got {text!r}"
        )
    try:
        value = float(value_text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"cost in {text!r} is not a number: {value_text!r}"
        ) from None
    # The model's bound keeps an expected cost per 1,000 readings finite.
    if not 0 <= value <= model.MAX_COST:
        raise argparse.ArgumentTypeError(
            f"cost in {text!r} must be a finite number >= 0 and <= {model.MAX_COST:g}, "
            f"got {value_text!r}"
        )
    if true == answer:
        raise argparse.ArgumentTypeError(
            f"{text!r} sets the cost of a right answer; the diagonal is always 0"
        )
    return true, answer, value


def parse_min_recall(text: str) -> tuple[str, float]:
    """Argparse type for ``CLASS=X`` with X in [0, 1] -> (class, minimum recall)."""
    name, equals, value_text = text.partition("=")
    name = name.strip()
    if not (equals and name):
        raise argparse.ArgumentTypeError(f"expected CLASS=X such as critical=0.95, got {text!r}")
    try:
        value = float(value_text)
    except ValueError:
        value = math.nan
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(
            f"recall in {text!r} must be a number between 0 and 1, got {value_text!r}"
        )
    return name, value


def _index(classes: Sequence[str], name: str, flag: str) -> int:
    if name not in classes:
        raise CostError(f"{flag}: unknown class {name!r} (the classes are {', '.join(classes)})")
    return list(classes).index(name)


def cost_matrix(
    specs: Sequence[tuple[str, str, float]], classes: Sequence[str]
) -> NDArray[np.float64]:
    """The (n_classes, n_classes) matrix: ``model.default_costs`` with each spec's entry set.

    Raises CostError for an unknown class. (The command line refuses a pair given twice.)
    """
    costs = model.default_costs(len(classes))
    for true, answer, value in specs:
        costs[_index(classes, true, "--cost"), _index(classes, answer, "--cost")] = value
    model.check_costs(costs, tuple(classes))
    return costs


def min_recalls(specs: Sequence[tuple[str, float]], classes: Sequence[str]) -> dict[str, float]:
    """``--min-recall`` settings by class name; raises CostError for an unknown class."""
    for name, _ in specs:
        _index(classes, name, "--min-recall")
    return dict(specs)


def describe(costs: NDArray[np.float64], classes: Sequence[str]) -> list[str]:
    """The entries that differ from the default, as ``TRUE:ANSWER=VALUE`` (what --cost takes)."""
    default = model.default_costs(len(classes))
    return [
        f"{classes[i]}:{classes[j]}={costs[i, j]:g}"
        for i, j in zip(*np.nonzero(costs != default), strict=True)
    ]
