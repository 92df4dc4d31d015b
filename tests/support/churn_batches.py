"""Churn-like batches shared by the scoring and onboarding tests."""

from __future__ import annotations

import numpy as np
import pandas as pd

CONTRACTS = ["month", "year1", "year2"]


def frame(n: int, seed: int, start: int = 0) -> pd.DataFrame:
    """A churn-like batch: int64 key, int64 and float64 numerics, a str category, a label."""
    rng = np.random.default_rng(seed)
    tenure = rng.integers(0, 73, n)
    monthly = np.round(rng.uniform(18, 120, n), 2)
    contract = rng.choice(CONTRACTS, n)
    logit = 1.5 - 0.05 * tenure + 0.01 * monthly + np.where(contract == "month", 1.0, -1.0)
    churn = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")
    return pd.DataFrame(
        {
            "customer_id": np.arange(start, start + n, dtype="int64"),
            "tenure": tenure.astype("int64"),
            "monthly": monthly,
            "contract": pd.array(contract, dtype="str"),
            "churn": churn,
        }
    )
