"""Synthetic input examples: what a logged model shows as its example, never a training row.

MLflow keeps a model's input example with the model (input_example.json and
serving_input_example.json), readable by everyone who can read the registry, and the model API
hands it out as the golden request. Training rows can be personal data, so the example is built
from per-column summaries of the training features, the kind the reference profile keeps:
numeric columns at evenly spaced quantiles (linear interpolation between neighbouring values),
categorical columns cycling through their most frequent values. The summaries are computed
here from the frame rather than read from a `ReferenceProfile`, because the profile stores
categories as text keys, which loses a column's type (an integer or boolean category).

A synthetic row that equals a training row anyway (few, coarse features) is dropped; when every
row is, there is no example (the model API then builds its golden request from the signature).
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

EXAMPLE_ROWS = 5


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(
        series.dtype
    )


def _column(series: pd.Series, rows: int) -> list[object]:
    """`rows` values of one column from its summary: quantiles, or the most frequent values."""
    if _numeric(series):
        values = series.to_numpy(dtype="float64", na_value=np.nan)
        present = values[np.isfinite(values)]
        if present.size == 0:
            return [np.nan] * rows
        quantiles = np.quantile(present, np.arange(1, rows + 1) / (rows + 1), method="linear")
        if pd.api.types.is_integer_dtype(series.dtype):
            quantiles = np.round(quantiles)
        return list(quantiles)
    top = series.value_counts(dropna=True).index.tolist()[:rows]
    return [top[i % len(top)] for i in range(rows)] if top else [None] * rows


def synthetic_example(features: pd.DataFrame, rows: int = EXAMPLE_ROWS) -> pd.DataFrame | None:
    """Rows shaped like `features` (same columns and dtypes) that copy none of its rows.

    Args:
        features: The model's input columns of the training data (`feature_frame`).
        rows: How many synthetic rows to build (fewer come back when some equal a real row).

    Returns:
        The synthetic rows, or None when each one equals a training row.
    """
    example = pd.DataFrame({c: _column(features[c], rows) for c in features.columns})
    example = example.astype(features.dtypes.to_dict())
    real = set(pd.util.hash_pandas_object(features, index=False).to_numpy())
    mine = pd.util.hash_pandas_object(example, index=False).to_numpy()
    fresh = example[[h not in real for h in mine]].reset_index(drop=True)
    if fresh.empty:
        log.warning(
            "every synthetic example row equals a training row (%d columns): no input example",
            features.shape[1],
        )
        return None
    return fresh
