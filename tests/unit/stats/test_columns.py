"""Tests of airmlops_core.stats.columns: numeric values, category keys and counts, the pool."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from airmlops_core.stats.columns import (
    category_counts,
    category_key,
    numeric_values,
    thread_map,
    worker_count,
)


def test_numeric_values_are_float64_with_nan_for_missing() -> None:
    values = numeric_values(pd.Series([1, None, 3], dtype="Int64"), "x", "current data")
    assert values.dtype == np.float64
    assert values[0] == 1.0
    assert np.isnan(values[1])
    assert numeric_values(pd.Series([True, False]), "b", "here").tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="reference data: column 's' must be numeric"):
        numeric_values(pd.Series(["1", "2"]), "s", "reference data")


def test_category_keys_match_integral_floats_and_integers() -> None:
    assert category_key(1) == category_key(1.0) == category_key(np.int64(1)) == "1"
    assert category_key(np.float32(2.0)) == "2"
    assert category_key(2.5) == "2.5"
    assert category_key(True) == category_key(np.bool_(True)) == "True"
    assert category_key("a") == "a"


def test_category_counts_merge_equal_keys_and_count_missing() -> None:
    counts, n_missing = category_counts(pd.Series([1.0, 2.0, None, 1.0, 2.5, None, None]))
    assert counts == {"1": 2, "2": 1, "2.5": 1}
    assert n_missing == 3
    mixed = pd.Series([1, 1.0, "1", None], dtype=object)  # one key for all three
    assert category_counts(mixed) == ({"1": 3}, 1)


def test_thread_map_keeps_the_order_and_uses_threads() -> None:
    items = list(range(20))
    seen: set[int] = set()

    def square(x: int) -> int:
        seen.add(threading.get_ident())
        return x * x

    assert thread_map(square, items, 4) == [x * x for x in items]
    assert thread_map(square, items, 1) == [x * x for x in items]
    seen.clear()
    thread_map(square, [3], 4)  # a single item runs in the caller's thread
    assert seen == {threading.get_ident()}


def test_worker_count_defaults_to_at_most_four() -> None:
    assert 1 <= worker_count(None) <= 4
    assert worker_count(7) == 7
    assert worker_count(0) == 1
