"""Permutation importance of the input columns: scikit-learn's scorers agree, and it can tell
an informative column from noise."""

from __future__ import annotations

import secrets
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import permutation_importance

from airmlops_core.spec import ModelSpec
from airmlops_core.train import estimator as training
from airmlops_core.train import importance


def _spec(task: str, estimator: str, primary: str) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "toy",
            "task": task,
            "source": {"kind": "file", "uri": "toy.parquet"},
            "target": "y",
            "features": {"numeric": ["strong", "weak", "noise"], "categorical": ["colour"]},
            "estimator": {"class": estimator},
            "metrics": {"primary": primary},
        }
    )


def _frame(n: int, seed: int, *, regression: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    strong, weak = rng.normal(size=n), rng.normal(size=n)
    signal = 2.0 * strong + 0.5 * weak + rng.normal(scale=0.5, size=n)
    return pd.DataFrame(
        {
            "strong": strong,
            "weak": weak,
            "noise": rng.normal(size=n),
            "colour": rng.choice(["red", "blue", "green"], size=n),
            "y": signal if regression else np.where(signal > 0, "yes", "no"),
        }
    )


@pytest.fixture(scope="module")
def classifier() -> tuple[ModelSpec, object, pd.DataFrame]:
    spec = _spec("binary", "sklearn.linear_model.LogisticRegression", "roc_auc")
    return spec, training.fit(spec, _frame(1500, 1)), _frame(3000, 2)


def test_table_schema_order_and_the_informative_column_first(classifier) -> None:
    spec, model, holdout = classifier
    table = importance.permutation_table(spec, model, holdout, seed=7)
    assert set(table) == {"metric", "n_repeats", "features"}
    assert table["metric"] == "roc_auc"
    assert table["n_repeats"] == importance.N_REPEATS
    names = [f["feature"] for f in table["features"]]
    assert sorted(names) == sorted(spec.features.all)  # raw input columns, not encoded ones
    means = [f["importance_mean"] for f in table["features"]]
    assert means == sorted(means, reverse=True)
    by_name = {f["feature"]: f for f in table["features"]}
    assert names[0] == "strong"
    assert by_name["weak"]["importance_mean"] > by_name["noise"]["importance_mean"]
    assert abs(by_name["noise"]["importance_mean"]) < 0.005
    assert by_name["strong"]["importance_mean"] > 0.2
    assert all(f["importance_std"] >= 0 for f in table["features"])


def test_matches_sklearn_scorer_on_the_same_sampled_rows_and_seed(classifier) -> None:
    spec, model, holdout = classifier
    table = importance.permutation_table(spec, model, holdout, seed=7, n_repeats=3, max_rows=500)
    rows = holdout.sample(n=500, random_state=7)
    want = permutation_importance(
        model,
        training.feature_frame(spec, rows),
        rows["y"],
        scoring="roc_auc",  # scikit-learn's own scorer, not the pack's metric code
        n_repeats=3,
        random_state=7,
    )
    got = {f["feature"]: (f["importance_mean"], f["importance_std"]) for f in table["features"]}
    for i, col in enumerate(training.feature_frame(spec, rows).columns):
        assert got[col][0] == pytest.approx(want.importances_mean[i], abs=1e-12)
        assert got[col][1] == pytest.approx(want.importances_std[i], abs=1e-12)


def test_lower_is_better_metric_counts_a_larger_error_as_importance() -> None:
    spec = _spec("regression", "sklearn.linear_model.Ridge", "rmse")
    model = training.fit(spec, _frame(800, 3, regression=True))
    holdout = _frame(600, 4, regression=True)
    table = importance.permutation_table(spec, model, holdout, seed=1, n_repeats=4)
    X = training.feature_frame(spec, holdout)
    want = permutation_importance(
        model, X, holdout["y"], scoring="neg_root_mean_squared_error", n_repeats=4, random_state=1
    )
    got = {f["feature"]: f["importance_mean"] for f in table["features"]}
    assert [f["feature"] for f in table["features"]][0] == "strong"
    assert got["strong"] > 1.0  # shuffling it adds more than one unit of rmse
    for i, col in enumerate(X.columns):
        assert got[col] == pytest.approx(want.importances_mean[i], abs=1e-9)


def test_chart_is_a_png(classifier, tmp_path: Path) -> None:
    spec, model, holdout = classifier
    table = importance.permutation_table(spec, model, holdout, seed=7, n_repeats=2, max_rows=300)
    path = importance.plot(table, "toy", tmp_path)
    assert path.name == "permutation_importance.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_read_back_from_a_run_and_none_without_the_table(mlflow_url: str) -> None:
    from mlflow import MlflowClient

    client = MlflowClient(mlflow_url)
    exp = client.create_experiment(f"importance-{secrets.token_hex(3)}")
    with_table, without = (client.create_run(exp).info.run_id for _ in "ab")
    table = {
        "metric": "roc_auc",
        "n_repeats": 5,
        "features": [
            {"feature": "tenure", "importance_mean": 0.2, "importance_std": 0.01},
            {"feature": "noise", "importance_mean": float("nan"), "importance_std": 0.0},
        ],
    }
    client.log_dict(with_table, table, importance.IMPORTANCE_ARTIFACT)
    assert importance.read_importance(client, with_table) == {"tenure": 0.2}  # NaN left out
    assert importance.read_importance(client, without) is None
