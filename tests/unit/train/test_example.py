"""Synthetic input examples: shaped like the training features, never one of their rows.

Whether a row is copied is checked independently of the code under test: every synthetic row
is looked up among the training rows as a tuple of Python values (missing values as None).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from airmlops_core.spec import load_spec
from airmlops_core.train import estimator as training
from airmlops_core.train.example import EXAMPLE_ROWS, synthetic_example
from airmlops_dev import demo_data
from paths import PROJECT_DIR as PROJECT


def as_rows(frame: pd.DataFrame) -> set[tuple[object, ...]]:
    def plain(v: object) -> object:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return None
        return v.item() if isinstance(v, np.generic) else v

    return {tuple(plain(v) for v in row) for row in frame.itertuples(index=False)}


def copied(example: pd.DataFrame, train: pd.DataFrame) -> set[tuple[object, ...]]:
    return as_rows(example) & as_rows(train)


def test_churn_example_is_shaped_like_the_features_and_copies_no_customer() -> None:
    spec = load_spec(PROJECT / "include" / "models" / "customer_churn.yaml")
    df = demo_data.churn()
    X = training.feature_frame(spec, df)
    example = synthetic_example(X)
    assert example is not None
    assert len(example) == EXAMPLE_ROWS
    assert list(example.columns) == list(X.columns)
    assert example.dtypes.to_dict() == X.dtypes.to_dict()
    assert not copied(example, X)
    # within each column's range, categories seen in training: a row the model can score
    for col in spec.features.numeric:
        assert X[col].min() <= example[col].min() <= example[col].max() <= X[col].max(), col
    for col in spec.features.categorical:
        assert set(example[col]) <= set(X[col].dropna()), col
    # most frequent category first, as the summary has it
    for col in spec.features.categorical:
        assert example[col].iloc[0] == X[col].value_counts().index[0], col
    pipeline = training.fit(spec, df)
    assert pipeline.predict_proba(example).shape == (EXAMPLE_ROWS, 2)


def test_rows_that_equal_a_training_row_are_dropped() -> None:
    # coarse features: half 0, half 1, so only the median falls between two values (0.5)
    rng = np.random.default_rng(0)
    X = pd.DataFrame(
        {
            "flag": np.repeat([0.0, 1.0], 200),
            "c": rng.choice(["x", "y"], 400).astype(object),
        }
    )
    example = synthetic_example(X)
    assert example is not None
    assert example["flag"].tolist() == [0.5]  # the four rows of 0 or 1 were real rows
    assert not copied(example, X)


def test_no_example_when_every_possible_row_is_a_training_row() -> None:
    combos = list(itertools.product(["a", "b"], [True, False]))
    X = pd.DataFrame(combos * 10, columns=["c", "b"]).astype({"c": object})
    assert synthetic_example(X) is None


@pytest.mark.parametrize("dtype", ["int64", "float64"])
def test_missing_values_and_integer_columns(dtype: str) -> None:
    X = pd.DataFrame(
        {
            "n": pd.array(np.arange(100), dtype=dtype),
            "empty": [np.nan] * 100,
            "cat": [None] * 50 + ["k"] * 50,
        }
    ).astype({"cat": object})
    example = synthetic_example(X)
    assert example is not None
    assert example.dtypes.to_dict() == X.dtypes.to_dict()
    assert example["empty"].isna().all()
    assert set(example["cat"]) == {"k"}  # missing values are not a category
    if dtype == "int64":
        assert (example["n"] == example["n"].round()).all()
    assert not copied(example, X)
