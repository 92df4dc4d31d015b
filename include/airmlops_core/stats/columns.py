"""Column values as the drift profile and the drift check read them, and their thread pool."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["category_counts", "category_key", "numeric_values", "thread_map", "worker_count"]

_T = TypeVar("_T")
_R = TypeVar("_R")


def worker_count(workers: int | None) -> int:
    """Threads for per-column work: numpy's sort, search and arithmetic release the GIL."""
    return max(1, min(4, os.cpu_count() or 1) if workers is None else workers)


def thread_map(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """[fn(x) for x in items], on `workers` threads when there is more than one item."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def numeric_values(series: pd.Series, column: str, where: str) -> np.ndarray:
    """float64 values (missing -> NaN; callers treat every non-finite value as missing)."""
    import pandas as pd

    dtype = series.dtype
    if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
        raise ValueError(f"{where}: column '{column}' must be numeric, got dtype {dtype}")
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def category_key(value: Any) -> str:
    """The category key of a value: integral floats as integers, so 1 and 1.0 match."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)


def category_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """Counts per category key, and the number of missing values."""
    n_missing = int(series.isna().sum())
    counts: dict[str, int] = {}
    for value, count in series.value_counts(dropna=True, sort=False).items():
        key = category_key(value)
        counts[key] = counts.get(key, 0) + int(count)
    return counts, n_missing
