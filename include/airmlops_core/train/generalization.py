"""How well a fitted pipeline generalises: the train-versus-holdout gap and a k-fold estimate.

The gap is the primary metric on the training rows minus on the holdout, signed so that a
positive gap always means "better on the rows it was fitted on" (for lower-is-better metrics
such as rmse it is holdout minus train). The gate rejects a challenger whose gap exceeds
`promotion.max_overfit_gap`; the k-fold estimate (`promotion.cv_folds`) is evidence only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from airmlops_core.spec import LOWER_IS_BETTER, ModelSpec
from airmlops_core.train import estimator as training
from airmlops_core.train import evaluation, search


def overfit_gap(metric: str, train: float, holdout: float) -> float:
    """Train minus holdout for higher-is-better metrics, holdout minus train otherwise."""
    return holdout - train if metric in LOWER_IS_BETTER else train - holdout


@dataclass(frozen=True)
class CrossValidation:
    """The metric on each held-out fold of a k-fold split of the training rows."""

    metric: str
    values: list[float]

    @property
    def folds(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def std(self) -> float:
        """Sample standard deviation across folds (ddof=1)."""
        return float(np.std(self.values, ddof=1)) if self.folds > 1 else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {"folds": self.folds, "mean": self.mean, "std": self.std, "values": self.values}


@dataclass(frozen=True)
class OverfitCheck:
    """The gap of `metric` between the training rows and the holdout, against its limit.

    `train` is NaN when it could not be measured (`note` says why); with a limit set that
    fails closed.
    """

    metric: str
    train: float
    holdout: float
    max_gap: float | None
    cv: CrossValidation | None = None
    note: str = field(default="")

    @property
    def gap(self) -> float:
        return overfit_gap(self.metric, self.train, self.holdout)

    @property
    def passed(self) -> bool:
        if self.max_gap is None:
            return True
        return not math.isnan(self.gap) and self.gap <= self.max_gap

    @property
    def reason(self) -> str:
        """One sentence naming the gap and the limit."""
        cv = (
            f"; {self.cv.folds}-fold CV {self.metric} {self.cv.mean:.4f} ± {self.cv.std:.4f}"
            if self.cv is not None
            else ""
        )
        limit = (
            "no limit set: promotion.max_overfit_gap"
            if self.max_gap is None
            else f"max_overfit_gap {self.max_gap:g}"
        )
        if math.isnan(self.gap):
            return f"overfit: the train-versus-holdout gap of {self.metric} is unknown " + (
                f"({self.note or 'the metric is undefined'}; {limit}){cv}"
            )
        values = f"train {self.train:.4f}, holdout {self.holdout:.4f}"
        if self.max_gap is None:
            return f"overfit gap of {self.metric}: {self.gap:.4f} ({values}; {limit}){cv}"
        verdict = "is within" if self.passed else "exceeds"
        return (
            f"overfit: the train-versus-holdout gap of {self.metric} {self.gap:.4f} {verdict} "
            f"{limit} ({values}){cv}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "train": self.train,
            "holdout": self.holdout,
            "gap": self.gap,
            "max_gap": self.max_gap,
            "passed": self.passed,
            "cv": None if self.cv is None else self.cv.to_dict(),
            "note": self.note,
        }

    def metrics(self) -> dict[str, float]:
        """Finite numbers for mlflow.log_metrics."""
        out = {f"train_{self.metric}": self.train, "overfit_gap": self.gap}
        if self.cv is not None:
            out |= {
                f"cv_{self.metric}_mean": self.cv.mean,
                f"cv_{self.metric}_std": self.cv.std,
                "cv_folds": float(self.cv.folds),
            }
        return {k: float(v) for k, v in out.items() if math.isfinite(v)}


def cross_validate(
    spec: ModelSpec,
    train: pd.DataFrame,
    metric: str,
    folds: int,
    params: dict[str, Any] | None = None,
) -> CrossValidation:
    """Refit the spec's pipeline (with `params`, e.g. a search's choice) on k-1 folds of
    `train` and score `metric` on the k-th.

    Folds are shuffled with the spec's split seed and stratified on the target for classifiers.
    """
    from sklearn.model_selection import KFold, StratifiedKFold

    splitter = (StratifiedKFold if spec.is_classifier else KFold)(
        n_splits=folds, shuffle=True, random_state=spec.split.seed
    )
    y = train[spec.target]
    values = []
    for fit_rows, test_rows in splitter.split(train, y):
        model = training.fit(spec, train.iloc[fit_rows], params=params)
        values.append(evaluation.evaluate(spec, model, train.iloc[test_rows])[metric])
    return CrossValidation(metric, values)


def overfit_check(
    spec: ModelSpec, model: Any, train: pd.DataFrame, holdout_metrics: dict[str, float]
) -> OverfitCheck:
    """The primary metric of `model` on its own training rows against the holdout's, with the
    k-fold estimate when `promotion.cv_folds` is set (refitting the parameters `model` was
    fitted with when `estimator.search` chose them)."""
    metric = spec.metrics.primary
    folds = spec.promotion.cv_folds
    params = search.chosen_params(spec, model)
    return OverfitCheck(
        metric=metric,
        train=evaluation.evaluate(spec, model, train)[metric],
        holdout=holdout_metrics[metric],
        max_gap=spec.promotion.max_overfit_gap,
        cv=cross_validate(spec, train, metric, folds, params) if folds else None,
    )
