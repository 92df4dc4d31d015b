"""Permutation importance of a fitted pipeline's input columns on the holdout.

Each raw feature column of the holdout is shuffled in turn and the whole pipeline re-scored
(scikit-learn's `permutation_importance`): the importance is how much the primary metric gets
worse, so higher is more important for every metric. The table is logged with each version at
`IMPORTANCE_ARTIFACT`; the drift alerts and the model card read it back.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, TypedDict

import pandas as pd

from airmlops_core.spec import LOWER_IS_BETTER, ModelSpec
from airmlops_core.tracking.runs import read_run_json
from airmlops_core.train import evaluation
from airmlops_core.train.estimator import feature_frame

log = logging.getLogger(__name__)

IMPORTANCE_ARTIFACT = "evaluation/permutation_importance.json"
MAX_ROWS = 2000
"""Holdout rows the importance is computed on (a seeded sample of larger holdouts)."""
N_REPEATS = 5


class FeatureImportance(TypedDict):
    feature: str
    importance_mean: float
    importance_std: float


class ImportanceTable(TypedDict):
    """The artifact's schema: features sorted by importance_mean, largest first."""

    metric: str
    n_repeats: int
    features: list[FeatureImportance]


def permutation_table(
    spec: ModelSpec,
    model: Any,
    holdout: pd.DataFrame,
    *,
    seed: int,
    n_repeats: int = N_REPEATS,
    max_rows: int = MAX_ROWS,
) -> ImportanceTable:
    """Drop of the primary metric when each input column of (at most `max_rows` of) the holdout
    is shuffled, `n_repeats` times with `seed`: mean and std per column, largest first."""
    from sklearn.inspection import permutation_importance

    metric = spec.metrics.primary
    rows = holdout.sample(n=max_rows, random_state=seed) if len(holdout) > max_rows else holdout
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def score(estimator: Any, X: pd.DataFrame, y: Any) -> float:
        return sign * evaluation.evaluate_xy(spec, estimator, X, y)[metric]

    X = feature_frame(spec, rows)
    result = permutation_importance(
        model, X, rows[spec.target], scoring=score, n_repeats=n_repeats, random_state=seed
    )
    features: list[FeatureImportance] = [
        {"feature": str(c), "importance_mean": float(m), "importance_std": float(s)}
        for c, m, s in zip(X.columns, result.importances_mean, result.importances_std, strict=True)
    ]
    features.sort(key=lambda f: -f["importance_mean"])
    return {"metric": metric, "n_repeats": n_repeats, "features": features}


def plot(table: ImportanceTable, title: str, out_dir: Path, *, top: int = 20) -> Path:
    """A horizontal bar chart of the `top` most important columns (error bars: std), as PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = table["features"][:top][::-1]
    fig, ax = plt.subplots(figsize=(6, 0.3 * len(shown) + 1.5))
    ax.barh(
        [f["feature"] for f in shown],
        [f["importance_mean"] for f in shown],
        xerr=[f["importance_std"] for f in shown],
    )
    ax.axvline(0, color="black", lw=1)
    ax.set_xlabel(f"drop in {table['metric']} when shuffled ({table['n_repeats']} repeats)")
    ax.set_title(f"{title}: permutation importance on holdout")
    out_dir.mkdir(parents=True, exist_ok=True)
    return evaluation.save_figure(fig, out_dir / "permutation_importance.png")


def read_importance(client: Any, run_id: str) -> dict[str, float] | None:
    """Feature -> importance_mean from a training run's table; None when the run has none."""
    import mlflow

    try:
        table = read_run_json(client, run_id, IMPORTANCE_ARTIFACT)
        means = {str(f["feature"]): float(f["importance_mean"]) for f in table["features"]}
        return {k: v for k, v in means.items() if math.isfinite(v)}
    except (OSError, ValueError, KeyError, TypeError, mlflow.exceptions.MlflowException) as exc:
        log.info("run %s has no usable %s: %s", run_id, IMPORTANCE_ARTIFACT, exc)
        return None
