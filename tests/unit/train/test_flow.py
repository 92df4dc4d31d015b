"""The train path against a real MLflow server: metrics, lineage, retry safety."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import roc_auc_score

from airmlops_core import errors
from airmlops_core.io import data
from airmlops_core.spec import load_spec
from airmlops_core.tracking import model_load, registry
from airmlops_core.tracking.runs import RunContext, experiment_name, get_or_create_run
from airmlops_core.train import estimator as training
from airmlops_core.train import flow as train_flow
from paths import PROJECT_DIR as PROJECT
from score_helpers import mlflow_sklearn_load


@pytest.fixture(scope="module")
def churn_spec():
    return load_spec(PROJECT / "include" / "models" / "customer_churn.yaml")


@pytest.fixture(scope="module")
def churn_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from airmlops_dev import demo_data

    root = tmp_path_factory.mktemp("data")
    data.write_frame(demo_data.churn(), str(root / "demo" / "churn.parquet"))
    return root


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, churn_data: Path, tmp_path: Path) -> Path:
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(churn_data))
    monkeypatch.setenv("AIRMLOPS_WORK_URI", str(tmp_path / "work"))
    return tmp_path


def ctx(run_id: str, task_id: str = "train", try_number: int = 1) -> RunContext:
    return RunContext(
        model="customer_churn",
        dag_id="customer_churn__train",
        run_id=run_id,
        task_id=task_id,
        try_number=try_number,
    )


def train_runs(client: MlflowClient, c: RunContext) -> list[Any]:
    """The model's train runs of one DAG run."""
    exp = client.get_experiment_by_name(experiment_name(c.model))
    assert exp is not None
    return client.search_runs(
        [exp.experiment_id],
        f"tags.`airmlops.run_id` = '{c.run_id}' and tags.`airmlops.purpose` = 'train'",
    )


def test_full_path_and_idempotent_retries(churn_spec, env, mlflow_url: str) -> None:
    c = ctx("manual__t1")
    refs = train_flow.extract_step(churn_spec, c)
    assert refs["train"]["rows"] + refs["holdout"]["rows"] == refs["extract"]["rows"] == 7043
    assert refs == train_flow.extract_step(churn_spec, c)  # same files, same hashes
    trained = train_flow.train_step(churn_spec, c, refs, tracking_uri=mlflow_url)
    retried = train_flow.train_step(
        churn_spec, ctx("manual__t1", try_number=2), refs, tracking_uri=mlflow_url
    )
    assert retried["mlflow_run_id"] == trained["mlflow_run_id"]  # no ghost run
    evaluated = train_flow.evaluate_step(churn_spec, c, refs, retried, tracking_uri=mlflow_url)

    # metrics equal an independent computation on the same holdout
    holdout = data.read_ref(data.DataRef.from_dict(refs["holdout"]))
    model = mlflow_sklearn_load(retried["model_uri"])
    proba = model.predict_proba(training.feature_frame(churn_spec, holdout))[:, 1]
    assert evaluated["metrics"]["roc_auc"] == pytest.approx(
        roc_auc_score(holdout["churn"], proba), abs=1e-12
    )
    assert evaluated["floor_failures"] == []

    first = train_flow.register_step(
        churn_spec, c, refs, retried, evaluated, tracking_uri=mlflow_url, spec_sha="s1"
    )
    again = train_flow.register_step(
        churn_spec, c, refs, retried, evaluated, tracking_uri=mlflow_url, spec_sha="s1"
    )
    assert first["created"] is True
    assert again["created"] is False
    assert again["version"] == first["version"]
    client = MlflowClient(mlflow_url)
    assert registry.alias_version(client, "customer_churn", "challenger") == first["version"]
    versions = registry.versions_with_key(
        client, "customer_churn", "customer_churn__train/manual__t1"
    )
    assert [v.version for v in versions] == [first["version"]]
    run = client.get_run(trained["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["airmlops.try_number"] == "2"
    assert run.data.metrics["train.rows"] == refs["train"]["rows"]
    assert run.data.metrics["train.cpu_seconds"] > 0
    assert run.data.metrics["train.peak_rss_mib"] > 50


def test_the_logged_example_is_synthetic_not_a_training_row(
    churn_spec, env, mlflow_url: str, tmp_path: Path
) -> None:
    """What MLflow keeps with the version (input and serving example) copies no training row."""
    from mlflow.models import Model

    c = ctx("manual__example")
    refs = train_flow.extract_step(churn_spec, c)
    trained = train_flow.train_step(churn_spec, c, refs, tracking_uri=mlflow_url)
    local = Path(mlflow.artifacts.download_artifacts(trained["model_uri"], dst_path=str(tmp_path)))
    meta = Model.load(str(local))
    example = meta.load_input_example(str(local))
    X = training.feature_frame(churn_spec, data.read_ref(data.DataRef.from_dict(refs["train"])))
    assert isinstance(example, pd.DataFrame)
    assert len(example) == 5
    assert list(example.columns) == list(X.columns)

    def rows(frame: pd.DataFrame) -> set[tuple]:
        return {
            tuple(None if pd.isna(v) else (float(v) if isinstance(v, float) else v) for v in r)
            for r in frame.itertuples(index=False)
        }

    assert not rows(example) & rows(X)
    serving = json.loads(meta.get_serving_input(str(local)))
    assert serving["dataframe_split"]["data"] == example.values.tolist()
    # and the golden request the model API builds from it is scored as any request
    from airmlops_core.serve.scoring import parse_request

    parsed, _ = parse_request(json.dumps(serving).encode(), None, meta.get_input_schema())
    assert len(model_load.load_dir(local, "the trained model").pyfunc().predict(parsed)) == 5


def test_training_data_gate_fails_closed_and_quarantines(
    churn_spec, env, mlflow_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRMLOPS_LOCAL_DIR", str(env / "local"))
    client = MlflowClient(mlflow_url)
    good = ctx("manual__gate_good", task_id="check_data")
    refs = train_flow.extract_step(churn_spec, good)
    passed = train_flow.check_training_data_step(churn_spec, good, refs, tracking_uri=mlflow_url)
    assert passed["success"] is True
    assert "PASSED" in passed["summary"]
    [run] = train_runs(client, good)
    assert run.data.tags["airmlops.data_check.training_data"] == "pass"

    bad = ctx("manual__gate_bad", task_id="check_data")
    frame = data.read_ref(data.DataRef.from_dict(refs["extract"])).assign(tenure=-1)
    bad_ref = data.write_frame(frame, str(env / "bad" / "extract.parquet"))
    with pytest.raises(errors.DataCheckFailed, match="tenure.range") as info:
        train_flow.check_training_data_step(
            churn_spec, bad, {"extract": bad_ref.to_dict()}, tracking_uri=mlflow_url
        )
    # under the work URI (shared by the workers), not the worker's local directory
    where = env / "work" / "quarantine" / "customer_churn" / bad.dag_id / "manual__gate_bad"
    assert str(where) in str(info.value)
    assert sorted(p.name for p in where.iterdir()) == ["data.parquet", "report.html", "result.json"]
    [run] = train_runs(client, bad)  # looked up without reopening it
    assert run.info.status == "FAILED"
    assert run.data.tags["airmlops.data_check.training_data"] == "fail"


def test_twin_versions_from_a_lost_response_are_removed(churn_spec, env, mlflow_url) -> None:
    c = ctx("manual__twin")
    refs = train_flow.extract_step(churn_spec, c)
    trained = train_flow.train_step(churn_spec, c, refs, tracking_uri=mlflow_url)
    key = "customer_churn__train/manual__twin"
    # a version with the key exists already, as if the client's POST retry made it
    mlflow.set_tracking_uri(mlflow_url)
    twin = mlflow.register_model(
        trained["model_uri"], "customer_churn", tags={registry.IDEMPOTENCY_TAG: key}
    )
    evaluated = {"metrics": {"roc_auc": 0.8}, "floor_failures": []}
    out = train_flow.register_step(
        churn_spec, c, refs, trained, evaluated, tracking_uri=mlflow_url, spec_sha="s1"
    )
    assert out["version"] == str(twin.version)
    assert out["created"] is False
    client = MlflowClient(mlflow_url)
    assert len(registry.versions_with_key(client, "customer_churn", key)) == 1


def test_run_is_found_again_by_its_tags(mlflow_url: str) -> None:
    client = MlflowClient(mlflow_url)
    a = get_or_create_run(client, "airmlops/tag-test", ctx("r1"), "train")
    b = get_or_create_run(client, "airmlops/tag-test", ctx("r1", try_number=3), "train")
    c = get_or_create_run(client, "airmlops/tag-test", ctx("r2"), "train")
    assert a == b != c


def test_floor_failures_name_metric_value_and_floor(churn_spec) -> None:
    from airmlops_core.train.evaluation import floor_failures

    failures = floor_failures(churn_spec, {"roc_auc": 0.70, "f1": 0.9})
    assert failures == ["roc_auc=0.7000 misses the floor >= 0.75"]


def test_classification_metrics_match_sklearn() -> None:
    from sklearn import metrics as skm

    from airmlops_core.train.evaluation import classification_metrics, regression_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500)
    p1 = np.clip(y * 0.3 + rng.random(500) * 0.7, 0, 1)
    proba = np.column_stack([1 - p1, p1])
    m = classification_metrics(y, proba, np.array([0, 1]))
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, p1))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, proba))
    assert m["f1"] == pytest.approx(skm.f1_score(y, p1 >= 0.5))
    yr = rng.normal(size=300)
    pred = yr + rng.normal(scale=0.5, size=300)
    r = regression_metrics(yr, pred)
    assert r["rmse"] == pytest.approx(np.sqrt(np.mean((yr - pred) ** 2)))
    assert r["r2"] == pytest.approx(skm.r2_score(yr, pred))


@pytest.mark.parametrize(
    ("cls", "message"),
    [
        ("sklearn.linear_model.NoSuchModel", "has no 'NoSuchModel'"),
        ("nosuchpackage.Model", "cannot import module 'nosuchpackage'"),
        ("sklearn.linear_model.Ridge", "is a regressor but task is 'binary'"),
    ],
)
def test_estimator_errors_name_the_problem(churn_spec, cls: str, message: str) -> None:
    spec = churn_spec.model_copy(
        update={
            "estimator": churn_spec.estimator.model_copy(update={"class_path": cls, "params": {}})
        }
    )
    with pytest.raises(errors.EstimatorError, match=message):
        training.build_pipeline(spec)


def test_bad_estimator_params(churn_spec) -> None:
    spec = churn_spec.model_copy(
        update={
            "estimator": churn_spec.estimator.model_copy(update={"params": {"no_such_param": 1}})
        }
    )
    with pytest.raises(errors.EstimatorError, match="rejects"):
        training.build_pipeline(spec)


def test_target_with_missing_values_is_refused(churn_spec) -> None:
    from airmlops_dev import demo_data

    df = demo_data.churn().head(200)
    df.loc[3, "churn"] = np.nan
    with pytest.raises(ValueError, match="target 'churn' has 1 missing"):
        training.fit(churn_spec, pd.DataFrame(df))
