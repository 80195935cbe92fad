"""Splits: every row in exactly one part, classes in every part, groups never straddling parts."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from training.split import SplitError, grouped_split, stratified_split


def _assert_partition(split, n: int) -> None:
    everything = np.concatenate([split.train, split.validation, split.test])
    assert everything.size == n
    np.testing.assert_array_equal(np.sort(everything), np.arange(n))


def test_stratified_split_keeps_class_proportions() -> None:
    y = np.repeat([0, 1, 2], [600, 300, 100])
    split = stratified_split(
        y, np.random.default_rng(0), validation_fraction=0.1, test_fraction=0.2
    )
    _assert_partition(split, y.size)
    assert split.sizes() == {"train": 700, "validation": 100, "test": 200}
    for part, size in (("train", 700), ("validation", 100), ("test", 200)):
        counts = np.bincount(y[getattr(split, part)], minlength=3)
        np.testing.assert_array_equal(counts, np.array([0.6, 0.3, 0.1]) * size)


def test_stratified_split_is_seeded() -> None:
    y = np.repeat([0, 1], 50)
    a = stratified_split(y, np.random.default_rng(3))
    b = stratified_split(y, np.random.default_rng(3))
    c = stratified_split(y, np.random.default_rng(4))
    np.testing.assert_array_equal(a.test, b.test)
    assert not np.array_equal(a.test, c.test)


def test_stratified_split_needs_three_rows_per_class() -> None:
    y = np.array([0, 0, 0, 0, 1, 1])
    with pytest.raises(SplitError) as error:
        stratified_split(y, np.random.default_rng(0))
    assert error.value.class_index == 1
    split = stratified_split(np.array([0, 0, 0, 1, 1, 1]), np.random.default_rng(0))
    for part in (split.train, split.validation, split.test):
        assert set(np.array([0, 0, 0, 1, 1, 1])[part]) == {0, 1}


@settings(max_examples=60, deadline=None)
@given(
    group_labels=st.lists(st.integers(0, 2), min_size=12, max_size=80),
    group_sizes=st.lists(st.integers(1, 9), min_size=80, max_size=80),
    mixed=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_grouped_split_never_leaks_a_group(group_labels, group_sizes, mixed, seed) -> None:
    rng = np.random.default_rng(seed)
    n_groups = len(group_labels)
    sizes = np.array(group_sizes[:n_groups])
    # Group ids that are neither 0..n-1 nor sorted, rows of a group scattered over the file.
    ids = rng.permutation(10 * n_groups)[:n_groups] * 7 - 100
    groups = np.repeat(ids, sizes)
    y = np.repeat(np.array(group_labels), sizes)
    if mixed:
        # Some rows disagree with their group's label (a group need not be pure).
        flip = rng.random(y.size) < 0.1
        y = np.where(flip, rng.integers(0, 3, y.size), y)
    order = rng.permutation(y.size)
    groups, y = groups[order], y[order]
    try:
        split = grouped_split(y, groups, rng)
    except SplitError:
        # Only allowed when some class lacks three groups of its own.
        own = np.bincount(np.array(group_labels), minlength=3)
        present = np.unique(y)
        assert np.any(own[present] < 3) or mixed
        return
    _assert_partition(split, y.size)
    parts = [set(groups[p]) for p in (split.train, split.validation, split.test)]
    assert not parts[0] & parts[1] and not parts[0] & parts[2] and not parts[1] & parts[2]
    for p in (split.train, split.validation, split.test):
        assert set(y[p]) == set(y)


def test_grouped_split_fractions_count_groups() -> None:
    groups = np.repeat(np.arange(100), 60)
    y = np.repeat(np.arange(100) % 2, 60)
    split = grouped_split(
        y, groups, np.random.default_rng(0), validation_fraction=0.1, test_fraction=0.2
    )
    assert split.sizes() == {"train": 70 * 60, "validation": 10 * 60, "test": 20 * 60}


def test_grouped_split_reports_a_class_with_too_few_groups() -> None:
    groups = np.repeat(np.arange(8), 5)
    y = np.repeat([0, 0, 0, 0, 0, 0, 1, 1], 5)
    with pytest.raises(SplitError) as error:
        grouped_split(y, groups, np.random.default_rng(0))
    assert error.value.class_index == 1


def test_fractions_that_leave_a_class_no_training_rows_say_so() -> None:
    # Four groups per class, 0.4 + 0.4 of them to validation and test: two each, none left.
    y = np.repeat([0, 1], 40)
    groups = np.repeat(np.arange(8), 10)
    with pytest.raises(
        SplitError,
        match=r"4 groups: the validation and test fractions \(0.4 and"
        r" 0.4\) leave none of them for training; lower them",
    ):
        grouped_split(y, groups, np.random.default_rng(0), 0.4, 0.4)
    with pytest.raises(SplitError, match="too few to split"):
        stratified_split(np.array([0, 0, 1, 1, 1]), np.random.default_rng(0))
