"""Train / validation / test splits: stratified by class, or by group so no group straddles two parts."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

PART_NAMES = ("train", "validation", "test")


class SplitError(ValueError):
    """The data cannot be split so that every class is in every part; names the class."""

    def __init__(self, message: str, class_index: int) -> None:
        super().__init__(message)
        self.class_index = class_index


@dataclass(frozen=True)
class Split:
    """Row indices of each part, each an int ndarray of shape (n_part,); together a partition."""

    train: NDArray[np.intp]
    validation: NDArray[np.intp]
    test: NDArray[np.intp]

    def sizes(self) -> dict[str, int]:
        return {name: int(getattr(self, name).shape[0]) for name in PART_NAMES}


def _part_sizes(n: int, validation_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """Rows (or groups) for train, validation, test out of ``n``: every part gets at least one."""
    n_test = max(1, round(test_fraction * n))
    n_validation = max(1, round(validation_fraction * n))
    return n - n_validation - n_test, n_validation, n_test


def _check_fractions(validation_fraction: float, test_fraction: float) -> None:
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1):
        raise ValueError("validation and test fractions must be between 0 and 1")
    if validation_fraction + test_fraction >= 1:
        raise ValueError("validation and test fractions must leave rows for training")


def _allocate(
    members_by_class: list[NDArray[np.intp]],
    validation_fraction: float,
    test_fraction: float,
    rng: np.random.Generator,
    unit: str,
) -> tuple[list[NDArray[np.intp]], list[NDArray[np.intp]], list[NDArray[np.intp]]]:
    """Shuffle each class's members (rows or groups) and deal them out to the three parts."""
    parts: tuple[list[NDArray[np.intp]], ...] = ([], [], [])
    for k, members in enumerate(members_by_class):
        if members.size == 0:
            continue
        n_train, n_validation, _ = _part_sizes(members.size, validation_fraction, test_fraction)
        if n_train < 1 and members.size >= 3:
            raise SplitError(
                f"{members.size} {unit}s: the validation and test fractions ({validation_fraction:g}"
                f" and {test_fraction:g}) leave none of them for training; lower them",
                class_index=k,
            )
        if n_train < 1:
            raise SplitError(
                f"{members.size} {unit}{'s' if members.size != 1 else ''}: too few to split into "
                "train, validation and test (needs at least 3)",
                class_index=k,
            )
        shuffled = rng.permutation(members)
        parts[0].append(shuffled[:n_train])
        parts[1].append(shuffled[n_train : n_train + n_validation])
        parts[2].append(shuffled[n_train + n_validation :])
    return parts


def stratified_split(
    y: NDArray[np.intp],
    rng: np.random.Generator,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> Split:
    """Split rows so each part has (about) the class proportions of ``y`` (n_samples,).

    Every class must have at least three rows; raises SplitError naming the class otherwise.
    Parts are shuffled.
    """
    _check_fractions(validation_fraction, test_fraction)
    y = np.asarray(y, dtype=np.intp)
    order = np.argsort(y, kind="stable")
    bounds = np.searchsorted(y[order], np.arange(y.max() + 2))
    by_class = [order[bounds[k] : bounds[k + 1]] for k in range(bounds.size - 1)]
    parts = _allocate(by_class, validation_fraction, test_fraction, rng, unit="row")
    return Split(*(rng.permutation(np.concatenate(p)) for p in parts))


def grouped_split(
    y: NDArray[np.intp],
    groups: NDArray[np.intp],
    rng: np.random.Generator,
    validation_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> Split:
    """Split whole groups (``groups`` (n_samples,) of ids), stratified by each group's majority class.

    All rows of a group land in one part, so rows that are correlated (one machine, one
    cycle) never sit on both sides. Fractions count groups, not rows. Raises SplitError when a
    class ends up missing from a part (it has fewer than three groups of its own).
    """
    _check_fractions(validation_fraction, test_fraction)
    y = np.asarray(y, dtype=np.intp)
    group_ids, group_of_row = np.unique(groups, return_inverse=True)
    n_groups, n_classes = group_ids.size, int(y.max()) + 1
    # Majority class of each group: a (groups, classes) count table, argmax per row.
    counts = np.bincount(group_of_row * n_classes + y, minlength=n_groups * n_classes)
    counts = counts.reshape(n_groups, n_classes)
    majority = counts.argmax(axis=1)
    groups_by_class = [np.flatnonzero(majority == k) for k in range(n_classes)]
    parts = _allocate(groups_by_class, validation_fraction, test_fraction, rng, unit="group")
    in_part = np.full(n_groups, -1, dtype=np.intp)
    for p, chosen in enumerate(parts):
        for members in chosen:
            in_part[members] = p
    part_of_row = in_part[group_of_row]
    indices = [rng.permutation(np.flatnonzero(part_of_row == p)) for p in range(3)]
    for p, index in enumerate(indices):
        missing = np.setdiff1d(np.unique(y), np.unique(y[index]))
        if missing.size:
            k = int(missing[0])
            n_own = int(np.sum(majority == k))
            raise SplitError(
                f"no rows in the {PART_NAMES[p]} part: only {n_own} group"
                f"{'s' if n_own != 1 else ''} mostly of this class (needs at least 3)",
                class_index=k,
            )
    return Split(*indices)
