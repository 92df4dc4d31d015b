"""Reproducible row samples of a frame, shared by the data-gate tests."""

from __future__ import annotations

import pandas as pd


def sample_rows(df: pd.DataFrame, seed: int, n: int = 1000) -> pd.DataFrame:
    """`n` rows of `df` drawn with `seed`, re-indexed from 0."""
    return df.sample(n=n, random_state=seed).reset_index(drop=True)
