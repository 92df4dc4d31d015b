"""Drafting a suite from reference data, for a person to review and commit.

`profile` turns a frame into a `Suite`; `profile_to_file` reads a data file (optionally a window
of it) and writes the suite's YAML. The CLI is `python -m airmlops_core.quality profile`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airmlops_core.io import data
from airmlops_core.io.window import window_mask
from airmlops_core.quality.suite import Suite, parse_suite, write_suite

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def _dtype_name(dtype: Any) -> str:
    name = str(dtype)
    return {"string": "str", "object": "str"}.get(name, name)


def _outward(value: float, step: float, up: bool) -> float:
    """`value` rounded outward to about three significant digits of `step`."""
    if step <= 0 or not math.isfinite(step):
        return float(value)
    decimals = max(0, 3 - math.floor(math.log10(step)))
    scale = 10.0**decimals
    scaled = round(value * scale, 6)  # no float fuzz: 0.8 * 1e4 must floor to 8000
    rounded = (math.ceil(scaled) if up else math.floor(scaled)) / scale
    return round(rounded, decimals)


def _profile_column(
    s: pd.Series, *, unique: bool, max_categories: int, margin: float
) -> dict[str, Any]:
    from pandas.api import types as ptypes

    rules: dict[str, Any] = {"dtype": _dtype_name(s.dtype)}
    null_fraction = float(s.isna().mean()) if len(s) else 0.0
    if null_fraction == 0:
        rules["nullable"] = False
    else:
        allowed = min(1.0, max(2 * null_fraction, 0.01))
        rules["max_null_fraction"] = math.ceil(allowed * 10_000) / 10_000
        rules["severities"] = {"max_null_fraction": "warn"}
    values = s.dropna()
    if unique:
        rules["unique"] = True
        return rules  # keys: new values are expected, ranges and sets would reject them
    distinct = int(values.nunique())
    if ptypes.is_bool_dtype(s.dtype):
        pass
    elif ptypes.is_numeric_dtype(s.dtype) and distinct:
        lo, hi = values.min(), values.max()
        if ptypes.is_integer_dtype(s.dtype) and {int(lo), int(hi)} <= {0, 1}:
            rules["allowed"] = sorted(int(v) for v in values.unique())
        else:
            span = margin * float(hi - lo)
            new_lo, new_hi = float(lo) - span, float(hi) + span
            if lo >= 0:
                new_lo = max(0.0, new_lo)
            if ptypes.is_integer_dtype(s.dtype):
                rules["min"], rules["max"] = math.floor(new_lo), math.ceil(new_hi)
            else:
                rules["min"] = _outward(new_lo, span, up=False)
                rules["max"] = _outward(new_hi, span, up=True)
    elif (ptypes.is_string_dtype(s.dtype) or str(s.dtype) == "category") and (
        0 < distinct <= max_categories
    ):
        rules["allowed"] = sorted(str(v) for v in values.unique())
    if distinct >= 2:
        rules["min_distinct"] = 2
    return rules


def profile(
    df: pd.DataFrame,
    *,
    model: str,
    target: str | None,
    unique: Sequence[str] = (),
    max_categories: int = 50,
    margin: float = 0.1,
    min_rows: int = 100,
) -> Suite:
    """Draft a suite from a reference dataset, for a person to review.

    Every column gets its dtype; `nullable: false` when it has no nulls, else a
    `max_null_fraction` of twice the observed fraction (at least 0.01) with severity warn.
    Numeric columns get min/max widened by `margin` times their range (never below 0 when the
    reference is non-negative; integer columns rounded outward); 0/1 integer flags and text
    columns with at most `max_categories` values get an `allowed` set; columns that vary get
    `min_distinct: 2`; `unique` columns are keys (no range, set or distinct rules).

    Args:
        df: the reference data, e.g. a training window.
        model: the model name (the suite file's name).
        target: the label column, or None.
        unique: columns whose values must be unique (row keys).
        max_categories: largest set of text values written as `allowed`.
        margin: widening of numeric ranges, as a fraction of the observed range.
        min_rows: the row-count floor (lowered to the reference size when that is smaller).

    Raises:
        ValueError: the frame is empty, or the target or a unique column is missing.
    """
    if len(df) == 0:
        raise ValueError("cannot profile an empty frame")
    missing = [c for c in [*([target] if target else []), *unique] if c not in df.columns]
    if missing:
        raise ValueError(
            f"columns {missing} are not in the frame; available: {[str(c) for c in df.columns]}"
        )
    columns = {
        str(name): _profile_column(
            df[name], unique=name in unique, max_categories=max_categories, margin=margin
        )
        for name in df.columns
    }
    raw = {
        "model": model,
        "target": target,
        "row_count": {"min": max(1, min(min_rows, len(df))), "max": max(50_000_000, 100 * len(df))},
        "columns": columns,
    }
    return parse_suite(raw, f"<profile of {model}>")


def profile_to_file(
    data_uri: str,
    model: str,
    target: str | None,
    out_path: str | Path,
    unique: Sequence[str] = (),
    *,
    window: tuple[str, Any, Any] | None = None,
    s3_client: Any | None = None,
    source_name: str | None = None,
    **options: Any,
) -> Suite:
    """Profile a data file (optionally a window of it) and write the suite for review.

    Args:
        data_uri: a Parquet/CSV path or s3:// URI.
        model: the model name.
        target: the label column.
        out_path: where to write the YAML.
        unique: row-key columns.
        window: (column, start, end) keeps rows with start <= column <= end, like a spec's
            source window.
        s3_client: for s3:// URIs.
        source_name: how the header names the data (e.g. the spec's relative `source.uri`,
            so the committed suite holds no machine's path); default `data_uri`.
        **options: passed to `profile` (max_categories, margin, min_rows).
    """
    df = data.read_frame(data_uri, s3_client=s3_client)
    where = source_name or data_uri
    if window is not None:
        col, start, end = window
        df = df[window_mask(where, df[col], start, end)].reset_index(drop=True)
        where += f" ({start!r} <= {col} <= {end!r})"
    suite = profile(df, model=model, target=target, unique=unique, **options)
    header = (
        f"Data expectations for {model}: drafted by airmlops_core.quality.drafting.profile "
        "from\n"
        f"{len(df)} rows of {where}. Review and edit by hand; see the module docs.\n"
        "Ranges are the reference's, widened a little, and block a batch that leaves them (it is\n"
        "quarantined): for open-ended columns (amounts, incomes) add `severities: {range: warn}`."
    )
    write_suite(suite, out_path, header=header)
    log.info("profiled %d rows of %s into %s", len(df), where, out_path)
    return suite
