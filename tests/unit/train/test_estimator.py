"""Oversampling of imbalanced training folds (spec `rebalance`): SMOTE, SMOTE-NC, random.

The demo churn data is made strongly imbalanced (about 4% churners) by keeping a random 12% of
the churners. The sampler must act on the training fold only, inside the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import recall_score
from sklearn.model_selection import train_test_split

from airmlops_core.errors import SpecError
from airmlops_core.io import data
from airmlops_core.spec import Rebalance, load_spec
from airmlops_core.tracking.runs import RunContext
from airmlops_core.train import estimator as training
from airmlops_core.train import flow as train_flow
from airmlops_dev import demo_data
from paths import PROJECT_DIR as PROJECT
from score_helpers import mlflow_sklearn_load

CHURN_SPEC = PROJECT / "include" / "models" / "customer_churn.yaml"


@pytest.fixture(scope="module")
def imbalanced() -> pd.DataFrame:
    df = demo_data.churn()
    keep = (df["churn"] == 0) | (np.random.default_rng(0).random(len(df)) < 0.12)
    return df[keep].reset_index(drop=True)


@pytest.fixture(scope="module")
def folds(imbalanced: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    train, holdout = train_test_split(
        imbalanced, test_size=0.3, random_state=1, stratify=imbalanced["churn"]
    )
    return train, holdout


def with_rebalance(method: str | None, **kw: object):
    spec = load_spec(CHURN_SPEC)
    return spec.model_copy(update={"rebalance": Rebalance(method=method, **kw) if method else None})


def test_the_demo_churn_spec_rebalances_and_still_clears_its_floors() -> None:
    """customer_churn as `make up` trains it (split by the flow's rules, smote_nc at 0.6):
    the gate's floors hold on the holdout, and F1 on churners beats the same model without."""
    from airmlops_core.io.window import split_frame
    from airmlops_core.train import evaluation

    spec = load_spec(CHURN_SPEC)
    assert spec.rebalance == Rebalance(method="smote_nc", sampling_strategy=0.6)
    train, holdout = split_frame(
        demo_data.churn(),
        test_size=spec.split.test_size,
        seed=spec.split.seed,
        stratify_on=spec.target,
        key=spec.row_key,
    )
    model = training.fit(spec, train)
    metrics = evaluation.evaluate(spec, model, holdout)
    assert evaluation.floor_failures(spec, metrics) == [], metrics
    balance = training.class_balance(spec, model, train)
    before, after = balance["before"], balance["after"]
    assert before == {str(k): int(v) for k, v in train["churn"].value_counts().items()}
    assert before["1"] / before["0"] < 0.4
    assert after["0"] == before["0"]
    assert after["1"] == pytest.approx(0.6 * before["0"], abs=1)
    plain = with_rebalance(None)
    f1_plain = evaluation.evaluate(plain, training.fit(plain, train), holdout)["f1"]
    assert metrics["f1"] > f1_plain + 0.02, (metrics["f1"], f1_plain)


def test_the_demo_fold_is_imbalanced(folds) -> None:
    train, _ = folds
    assert train["churn"].mean() < 0.05


@pytest.mark.parametrize("method", ["smote_nc", "random_over"])
def test_oversampling_raises_minority_recall(folds, method: str) -> None:
    train, holdout = folds
    recalls = {}
    for m in (None, method):
        spec = with_rebalance(m)
        model = training.fit(spec, train)
        pred = model.predict(training.feature_frame(spec, holdout))
        assert len(pred) == len(holdout)  # predict never resamples
        recalls[m] = recall_score(holdout["churn"], pred)
    assert recalls[method] > recalls[None] + 0.3, recalls


def test_sampler_sees_the_training_fold_only(folds) -> None:
    train, holdout = folds
    spec = with_rebalance("smote_nc")
    model = training.fit(spec, train)
    counts = train["churn"].value_counts()
    # 'auto' generates majority - minority synthetic rows, computed from what fit saw
    generated = dict(model.named_steps["rebalance"].sampling_strategy_)
    assert {int(k): int(v) for k, v in generated.items()} == {1: counts[0] - counts[1]}
    balance = training.class_balance(spec, model, train)
    assert balance == {
        "before": {"0": int(counts[0]), "1": int(counts[1])},
        "after": {"0": int(counts[0]), "1": int(counts[0])},
    }


def test_ratio_strategy_counts(folds) -> None:
    train, _ = folds
    spec = with_rebalance("random_over", sampling_strategy=0.5)
    model = training.fit(spec, train)
    balance = training.class_balance(spec, model, train)
    majority = int((train["churn"] == 0).sum())
    assert balance["after"] == {"0": majority, "1": int(majority * 0.5)}


def test_numeric_smote(folds) -> None:
    train, holdout = folds
    spec = with_rebalance(None)
    spec = spec.model_copy(
        update={
            "features": spec.features.model_copy(update={"categorical": []}),
            "rebalance": Rebalance(method="smote"),
        }
    )
    model = training.fit(spec, train)
    assert training.class_balance(spec, model, train)["after"]["1"] == int(
        (train["churn"] == 0).sum()
    )
    assert model.predict_proba(training.feature_frame(spec, holdout)).shape == (len(holdout), 2)


@pytest.mark.parametrize(
    ("patch", "problem"),
    [
        (
            {
                "task": "regression",
                "target": "monthly_charges",
                "features": {"numeric": ["tenure"], "categorical": []},
                "metrics": {"primary": "rmse"},
                "estimator": {"class": "sklearn.linear_model.Ridge"},
                "sensitive_features": [],
                "rebalance": {"method": "random_over"},
            },
            "oversampling needs classes",
        ),
        ({"rebalance": {"method": "smote"}}, "use smote_nc"),
        (
            {
                "features": {"numeric": ["tenure"], "categorical": []},
                "rebalance": {"method": "smote_nc"},
            },
            "needs numeric and categorical",
        ),
        ({"rebalance": {"method": "smote", "sampling_strategy": 1.5}}, "must be in (0, 1]"),
        ({"rebalance": {"method": "adasyn"}}, "rebalance.method"),
    ],
)
def test_bad_rebalance_specs_are_named(tmp_path: Path, patch: dict, problem: str) -> None:
    import yaml

    raw = yaml.safe_load(CHURN_SPEC.read_text())
    raw.update(patch)
    path = tmp_path / "customer_churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(SpecError) as err:
        load_spec(path)
    assert problem in str(err.value)
    assert "customer_churn.yaml" in str(err.value)


def test_train_step_logs_class_ratios_and_leaves_the_holdout_alone(
    imbalanced, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mlflow_url: str
) -> None:
    data.write_frame(imbalanced, str(tmp_path / "data" / "demo" / "churn.parquet"))
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path / "data"))
    spec = with_rebalance("smote_nc")
    ctx = RunContext(
        model=spec.name, dag_id=f"{spec.name}__train", run_id="manual__smote", task_id="train"
    )
    refs = train_flow.extract_step(spec, ctx, work_uri=str(tmp_path / "work"))
    holdout_bytes = Path(refs["holdout"]["uri"]).read_bytes()
    trained = train_flow.train_step(spec, ctx, refs, tracking_uri=mlflow_url)
    assert Path(refs["holdout"]["uri"]).read_bytes() == holdout_bytes
    run = MlflowClient(mlflow_url).get_run(trained["mlflow_run_id"])
    train = data.read_ref(data.DataRef.from_dict(refs["train"]))
    counts = train["churn"].value_counts()
    assert run.data.metrics["train_class_before.1"] == counts[1]
    assert run.data.metrics["train_class_after.1"] == counts[0]
    mlflow.set_tracking_uri(mlflow_url)
    balance = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=trained["mlflow_run_id"],
                artifact_path="class_balance.json",
                dst_path=str(tmp_path / "dl"),
            )
        ).read_text()
    )
    assert balance["after"] == {"0": int(counts[0]), "1": int(counts[0])}
    # the logged model (skops, imblearn types trusted) loads and scores every holdout row
    holdout = data.read_ref(data.DataRef.from_dict(refs["holdout"]))
    model = mlflow_sklearn_load(trained["model_uri"])
    assert len(model.predict(training.feature_frame(spec, holdout))) == len(holdout)
