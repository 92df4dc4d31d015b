"""The train-versus-holdout gap and the k-fold estimate, against scikit-learn's own computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score

from airmlops_core.spec import ModelSpec
from airmlops_core.train import estimator as training
from airmlops_core.train import generalization


def _spec(task: str, estimator: str, primary: str, **promotion: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "toy",
            "task": task,
            "source": {"kind": "file", "uri": "toy.parquet"},
            "target": "y",
            "features": {"numeric": ["x1", "x2", "noise"], "categorical": ["colour"]},
            "estimator": {"class": estimator, "params": {"random_state": 0}},
            "split": {"seed": 3},
            "metrics": {"primary": primary},
            "promotion": promotion,
        }
    )


def _frame(n: int, seed: int, *, regression: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    signal = 1.5 * x1 - x2 + rng.normal(scale=1.0, size=n)
    return pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "noise": rng.normal(size=n),
            "colour": rng.choice(["red", "blue"], size=n),
            "y": signal if regression else np.where(signal > 0.3, "yes", "no"),
        }
    )


def test_gap_is_sign_aware() -> None:
    assert generalization.overfit_gap("roc_auc", 0.95, 0.80) == pytest.approx(0.15)
    assert generalization.overfit_gap("rmse", 1.0, 1.4) == pytest.approx(0.4)  # worse on holdout
    assert generalization.overfit_gap("r2", 0.5, 0.6) == pytest.approx(-0.1)


def test_a_deep_tree_overfits_and_the_gap_matches_sklearn() -> None:
    spec = _spec("binary", "sklearn.tree.DecisionTreeClassifier", "roc_auc", max_overfit_gap=0.05)
    train, holdout = _frame(600, 1), _frame(400, 2)
    model = training.fit(spec, train)
    proba = model.predict_proba(training.feature_frame(spec, holdout))[:, 1]
    holdout_auc = skm.roc_auc_score(holdout["y"] == "yes", proba)
    check = generalization.overfit_check(spec, model, train, {"roc_auc": holdout_auc})
    train_auc = skm.roc_auc_score(
        train["y"] == "yes", model.predict_proba(training.feature_frame(spec, train))[:, 1]
    )
    assert check.train == pytest.approx(train_auc, abs=1e-12)
    assert check.gap == pytest.approx(train_auc - holdout_auc, abs=1e-12)
    assert check.gap > 0.1  # an unpruned tree memorises its training rows
    assert not check.passed
    assert check.cv is None


@pytest.mark.parametrize("folds", [3, 5])
def test_stratified_k_fold_equals_sklearn_cross_val_score(folds: int) -> None:
    spec = _spec("binary", "sklearn.linear_model.LogisticRegression", "roc_auc", cv_folds=folds)
    train = _frame(500, 4)
    check = generalization.overfit_check(spec, training.fit(spec, train), train, {"roc_auc": 0.8})
    assert check.cv is not None
    splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=3)
    want = cross_val_score(
        training.build_pipeline(spec),
        training.feature_frame(spec, train),
        train["y"],
        cv=splitter,
        scoring="roc_auc",
    )
    assert check.cv.folds == folds
    assert check.cv.values == pytest.approx(want.tolist(), abs=1e-12)
    assert check.cv.mean == pytest.approx(want.mean(), abs=1e-12)
    assert check.cv.std == pytest.approx(want.std(ddof=1), abs=1e-12)
    assert f"{folds}-fold CV roc_auc" in check.reason
    assert check.passed  # no limit set
    assert "no limit set: promotion.max_overfit_gap" in check.reason
    assert set(check.metrics()) == {
        "train_roc_auc",
        "overfit_gap",
        "cv_roc_auc_mean",
        "cv_roc_auc_std",
        "cv_folds",
    }


def test_regression_folds_are_plain_k_fold_and_rmse_gap_is_holdout_minus_train() -> None:
    spec = _spec("regression", "sklearn.ensemble.RandomForestRegressor", "rmse", cv_folds=4)
    spec.estimator.params.update(n_estimators=20)
    train, holdout = _frame(400, 5, regression=True), _frame(200, 6, regression=True)
    model = training.fit(spec, train)
    pred = model.predict(training.feature_frame(spec, holdout))
    holdout_rmse = math.sqrt(skm.mean_squared_error(holdout["y"], pred))
    check = generalization.overfit_check(spec, model, train, {"rmse": holdout_rmse})
    train_rmse = math.sqrt(
        skm.mean_squared_error(train["y"], model.predict(training.feature_frame(spec, train)))
    )
    assert check.gap == pytest.approx(holdout_rmse - train_rmse, abs=1e-9)
    assert check.gap > 0  # a forest fits its own rows better
    want = -cross_val_score(
        training.build_pipeline(spec),
        training.feature_frame(spec, train),
        train["y"],
        cv=KFold(n_splits=4, shuffle=True, random_state=3),
        scoring="neg_root_mean_squared_error",
    )
    assert check.cv is not None
    assert check.cv.values == pytest.approx(want.tolist(), abs=1e-9)
