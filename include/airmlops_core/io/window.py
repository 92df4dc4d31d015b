"""The training window: extract rows from a file, S3 or SQL, filter them by a window, split.

`extract` writes the window atomically and returns its `DataRef`; `split_frame` makes the
train/holdout split, by row key hash when there is one, so a row keeps its side as the window
grows.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api import types as ptypes

from airmlops_core.errors import DataError
from airmlops_core.io.data import (
    DataRef,
    check_columns,
    is_s3,
    read_frame,
    resolve_uri,
    write_frame,
)
from airmlops_core.io.sql import first_line, read_sql

log = logging.getLogger(__name__)


def _is_datetime_like(value: Any) -> bool:

    return isinstance(value, dt.date | np.datetime64)


def _align_ts(where: str, bound: Any, tz: Any) -> Any:
    """`bound` as a pandas Timestamp in the column's timezone (naive columns: naive UTC)."""
    import pandas as pd

    try:
        ts = pd.Timestamp(bound)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: window bound {bound!r} is not a date/time: {exc}") from exc
    if tz is None and ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    elif tz is not None and ts.tz is None:
        ts = ts.tz_localize(tz)
    return ts


def _to_number(where: str, col: str, bound: Any) -> Any:
    import pandas as pd

    if isinstance(bound, bool) or _is_datetime_like(bound):
        raise DataError(
            f"{where}: window bound {bound!r} is not comparable with numeric column '{col}'"
        )
    try:
        return pd.to_numeric(bound) if isinstance(bound, str) else bound
    except ValueError as exc:
        raise DataError(
            f"{where}: window bound {bound!r} is not a number, but column '{col}' is numeric"
        ) from exc


def _comparable(where: str, series: pd.Series, bounds: list[Any]) -> tuple[pd.Series, list[Any]]:
    """The column's values and the window bounds, converted to one comparable type."""
    import pandas as pd

    col = str(series.name)
    if ptypes.is_datetime64_any_dtype(series):
        tz = getattr(series.dtype, "tz", None)
        return series, [_align_ts(where, b, tz) for b in bounds]
    if ptypes.is_numeric_dtype(series) and not ptypes.is_bool_dtype(series):
        return series, [_to_number(where, col, b) for b in bounds]
    # Text, e.g. dates in a CSV file: compare as timestamps when the column and the bounds
    # parse as ISO-8601 dates, else as strings.
    try:
        parsed = pd.to_datetime(series, format="ISO8601")
        tz = getattr(parsed.dtype, "tz", None)
        return parsed, [_align_ts(where, b, tz) for b in bounds]
    except (ValueError, TypeError, OverflowError, DataError):
        pass
    if any(_is_datetime_like(b) for b in bounds):
        raise DataError(
            f"{where}: window column '{col}' does not hold dates; cannot compare it with {bounds!r}"
        )
    return series, [str(b) for b in bounds]


def window_mask(where: str, series: pd.Series, start: Any, end: Any) -> pd.Series:
    """True for rows with start <= value <= end (None = open); missing values never match."""
    given = [b for b in (start, end) if b is not None]
    values, converted = _comparable(where, series, given)
    it = iter(converted)
    lo = next(it) if start is not None else None
    hi = next(it) if end is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise DataError(f"{where}: window start {start!r} is after its end {end!r}")
    mask = values.notna()
    if lo is not None:
        mask &= values >= lo
    if hi is not None:
        mask &= values <= hi
    return mask.fillna(False).astype(bool)


def _describe_window(col: str, start: Any, end: Any) -> str:
    if start is None and end is None:
        return f"{col} (open)"
    if start is None:
        return f"{col} <= {end!r}"
    if end is None:
        return f"{col} >= {start!r}"
    return f"{start!r} <= {col} <= {end!r}"


def extract(
    *,
    kind: str,
    uri: str | None,
    query: str | None,
    format: str | None,
    columns: list[str],
    dest_uri: str,
    window: tuple[str, Any, Any] | None = None,
    base_dir: str | Path,
    s3_client: Any | None = None,
    sql_engine: Any | None = None,
) -> DataRef:
    """Read a source, keep `columns`, apply an inclusive window and write the result.

    Args:
        kind: "file" (local path, relative to base_dir), "s3" (s3://bucket/key) or "sql".
        uri: the source file for kinds file and s3.
        query: the SQL for kind sql.
        format: "parquet" or "csv" for file sources; None infers it from the extension.
        columns: columns to keep, in this order (an empty list keeps all columns).
        dest_uri: where to write the result (Parquet, or CSV if it ends with .csv); relative
            paths are resolved against base_dir.
        window: (column, start, end): keep rows with start <= column <= end; None is open.
            Datetime columns compare as timestamps (a tz-aware bound is converted to UTC for a
            naive column), numeric columns as numbers, text columns as ISO dates when they
            parse as such, else as strings.
        base_dir: the directory relative paths are resolved against.
        s3_client: a boto3 S3 client for s3:// sources or destinations.
        sql_engine: a SQLAlchemy engine or connection for kind sql.

    Returns:
        DataRef of the written file.

    Raises:
        DataError: bad arguments, unreadable source, missing columns, or no rows left.
    """
    wanted = list(dict.fromkeys(columns))
    win_col = window[0] if window is not None else None
    read_cols: list[str] | None = None
    if wanted:
        read_cols = wanted + ([win_col] if win_col and win_col not in wanted else [])

    if kind in ("file", "s3"):
        if not uri:
            raise DataError(f"extract: kind '{kind}' needs a uri")
        src = resolve_uri(uri, base_dir)
        if kind == "s3" and not is_s3(src):
            raise DataError(f"{uri}: kind 's3' needs an s3://bucket/key uri")
        where = src
        df = read_frame(src, format=format, columns=read_cols, s3_client=s3_client)
    elif kind == "sql":
        if not query or not query.strip():
            raise DataError("extract: kind 'sql' needs a query")
        if sql_engine is None:
            raise DataError(
                f"SQL query '{first_line(query)}': a SQLAlchemy engine is needed (pass sql_engine=)"
            )
        where = f"SQL query '{first_line(query)}'"
        df = read_sql(query, sql_engine)
        if read_cols is not None:
            df = df[check_columns(where, [str(c) for c in df.columns], read_cols)]
    else:
        raise DataError(f"extract: unknown source kind {kind!r} (expected file, s3 or sql)")

    total = len(df)
    if window is not None:
        col, start, end = window
        if col not in df.columns:
            raise DataError(
                f"{where}: missing columns {[col]} (window); "
                f"available columns: {[str(c) for c in df.columns]}"
            )
        df = df[window_mask(where, df[col], start, end)]
        if df.empty:
            raise DataError(
                f"{where}: no rows in the window {_describe_window(col, start, end)} "
                f"(of {total} rows read)"
            )
    if df.empty:
        raise DataError(f"{where}: no rows")
    if wanted:
        df = df[wanted]
    df = df.reset_index(drop=True)

    dest = resolve_uri(dest_uri, base_dir)
    dest_fmt = "csv" if dest.lower().endswith(".csv") else "parquet"
    ref = write_frame(df, dest, format=dest_fmt, s3_client=s3_client)
    log.info("extracted %d of %d rows from %s to %s", len(df), total, where, ref.uri)
    return ref


# --------------------------------------------------------------------------------------------
# Split


def split_frame(
    df: pd.DataFrame,
    *,
    test_size: float,
    seed: int,
    stratify_on: str | None,
    key: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic shuffled train/holdout split.

    Without `key`: scikit-learn's train_test_split. With `key` (the row key), a row's side
    depends only on its key and the seed, so a row keeps its side when the table grows (a
    retrained challenger's holdout holds no row the champion trained on); class proportions
    then match in expectation rather than exactly.

    Args:
        df: the table.
        test_size: fraction of rows for the holdout, 0 < test_size < 1.
        seed: random seed; the same seed and data give the same split.
        stratify_on: keep this column's class proportions in both parts (None: no stratifying).
        key: split by this column's hashed values (unique, no missing values).

    Returns:
        (train, holdout), each with a fresh RangeIndex.

    Raises:
        DataError: bad test_size, missing stratify column, or data too small to split.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(test_size) < 1.0:
        raise DataError(f"split: test_size must be between 0 and 1 (exclusive), got {test_size}")
    stratify = None
    if stratify_on is not None:
        if stratify_on not in df.columns:
            raise DataError(
                f"split: stratify column '{stratify_on}' missing; "
                f"available columns: {[str(c) for c in df.columns]}"
            )
        stratify = df[stratify_on]
        if stratify.isna().any():
            raise DataError(
                f"split: stratify column '{stratify_on}' has "
                f"{int(stratify.isna().sum())} missing values"
            )
    if key is not None:
        return _split_by_key(df, key, float(test_size), seed, stratify)
    try:
        train, test = train_test_split(
            df, test_size=float(test_size), random_state=seed, shuffle=True, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(
            f"split: cannot split {len(df)} rows (test_size={test_size}, "
            f"stratify_on={stratify_on!r}): {exc}"
        ) from exc
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _split_by_key(
    df: pd.DataFrame, key: str, test_size: float, seed: int, stratify: pd.Series | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """split_frame by key: holdout iff the key's 64-bit hash, mixed with the seed, / 2**64 <
    test_size."""
    import pandas as pd

    if key not in df.columns:
        raise DataError(
            f"split: row key '{key}' missing; available columns: {[str(c) for c in df.columns]}"
        )
    keys = df[key]
    if keys.isna().any() or keys.duplicated().any():
        raise DataError(
            f"split: row key '{key}' has {int(keys.isna().sum())} missing and "
            f"{int(keys.duplicated().sum())} duplicated values"
        )
    x = pd.util.hash_pandas_object(keys, index=False).to_numpy(dtype=np.uint64)
    x = x ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):  # splitmix64
        x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
    u = (x ^ (x >> np.uint64(31))) / float(2**64)
    order = np.argsort(u, kind="stable")  # a seeded shuffle that is also stable per key
    in_holdout = u[order] < test_size
    train, test = df.iloc[order[~in_holdout]], df.iloc[order[in_holdout]]
    missing: list[str] = []
    if stratify is not None:
        both = set(stratify.loc[train.index]) & set(stratify.loc[test.index])
        missing = sorted(str(c) for c in set(stratify) - both)
    if train.empty or test.empty or missing:
        raise DataError(
            f"split: {len(df)} rows split by '{key}' (test_size={test_size}) leave "
            f"{len(train)} train and {len(test)} holdout rows"
            + (f"; classes {missing} missing from one side" if missing else "")
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)
