"""Shared data for the tests of airmlops_core.stats: model outputs and a mixed-type frame."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture
def binary() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """y in {0, 1}; a champion and a better challenger, probabilities with many ties."""
    rng = np.random.default_rng(7)
    n = 3000
    y = (rng.random(n) < 0.35).astype(int)
    champ = np.round(_sigmoid(rng.normal(size=n) + 0.8 * y), 2)
    chall = np.round(_sigmoid(rng.normal(size=n) + 1.6 * y), 2)
    return y, champ, chall


def _multiclass(
    n: int = 1500, k: int = 3, seed: int = 3, signal: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, size=n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += signal
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, proba


@pytest.fixture
def multiclass() -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """multiclass(n=1500, k=3, seed=3, signal=1.0): class codes and softmax probabilities."""
    return _multiclass


def _mixed(
    rng: np.random.Generator, n: int, *, shift: float = 0.0, new_share: float = 0.0
) -> pd.DataFrame:
    num = rng.normal(shift, 1.0, n)
    num[rng.random(n) < 0.04] = np.nan
    cat = rng.choice(np.array(["a", "b", "c", "d"]), n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    cat[rng.random(n) < 0.03] = None
    cat[rng.random(n) < new_share] = "zz"
    return pd.DataFrame(
        {"num": num, "cat": pd.array(cat, dtype="str"), "pois": rng.poisson(2.0, n).astype("int64")}
    )


@pytest.fixture
def mixed_frame() -> Callable[..., pd.DataFrame]:
    """mixed_frame(rng, n, shift=0, new_share=0): numeric "num" (4% missing, mean `shift`),
    string "cat" (a/b/c/d, 3% missing, `new_share` of rows the unseen "zz") and integer "pois"."""
    return _mixed
