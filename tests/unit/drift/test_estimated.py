"""Performance before labels in the drift DAG, against a real MLflow server: training stores the
holdout calibration, the drift check estimates each scoring run from it, logs the estimates
over time and alerts on estimated decay."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from sklearn.metrics import brier_score_loss

from airmlops_core.drift import flow as drift_flow
from airmlops_core.io import data
from airmlops_core.spec import ModelSpec, load_spec
from airmlops_core.stats.estimate import expected_metrics
from airmlops_core.tracking import model_metrics, registry
from airmlops_core.tracking.runs import RunContext
from airmlops_core.train import estimator as training
from airmlops_core.train import flow as train_flow
from paths import PROJECT_DIR as PROJECT
from score_helpers import mlflow_sklearn_load

NAME = "churn_cbpe"
DATES = ("2026-03-01T00:00:00Z", "2026-03-02T00:00:00Z")


def _spec(**monitoring: Any) -> ModelSpec:
    """The churn demo without oversampling (oversampling would distort the probabilities)."""
    base = load_spec(PROJECT / "include" / "models" / "customer_churn.yaml")
    return base.model_copy(
        update={
            "name": NAME,
            "rebalance": None,
            "monitoring": base.monitoring.model_copy(update=monitoring),
        }
    )


def ctx(dag: str, run_id: str) -> RunContext:
    return RunContext(model=NAME, dag_id=f"{NAME}__{dag}", run_id=run_id, task_id=dag)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, mlflow_url: str) -> dict[str, Any]:
    """A champion trained by the train path on churn, and two scored runs of held-back rows."""
    from airmlops_dev import demo_data

    root = tmp_path_factory.mktemp("cbpe")
    churn = demo_data.churn()
    data.write_frame(churn, str(root / "demo" / "churn.parquet"))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRMLOPS_DATA_DIR", str(root))
        mp.setenv("AIRMLOPS_WORK_URI", str(root / "work"))
        spec, c = _spec(), ctx("train", "manual__cbpe")
        refs = train_flow.extract_step(spec, c)
        run = train_flow.train_step(spec, c, refs, tracking_uri=mlflow_url)
        evaluated = train_flow.evaluate_step(spec, c, refs, run, tracking_uri=mlflow_url)
        reg = train_flow.register_step(
            spec, c, refs, run, evaluated, tracking_uri=mlflow_url, spec_sha="s"
        )
    MlflowClient(mlflow_url).set_registered_model_alias(NAME, registry.CHAMPION, reg["version"])
    model = mlflow_sklearn_load(run["model_uri"])
    holdout = data.read_ref(data.DataRef.from_dict(refs["holdout"]))
    batches = [churn.sample(800, random_state=s) for s in (1, 2)]
    probas = []
    for date, batch in zip(DATES, batches, strict=True):
        proba = model.predict_proba(training.feature_frame(spec, batch))[:, 1]
        _scored_run(root, reg["version"], date, batch.drop(columns=["churn"]), proba)
        probas.append(proba)
    return {
        "root": root,
        "version": reg["version"],
        "run_id": run["mlflow_run_id"],
        "holdout": holdout,
        "holdout_proba": model.predict_proba(training.feature_frame(spec, holdout))[:, 1],
        "probas": probas,
    }


def _scored_run(root: Path, version: str, date: str, frame: pd.DataFrame, p: np.ndarray) -> None:
    """One scoring run's files as the score DAG lays them out: input, output, manifest."""
    src = data.write_frame(frame, str(root / "landing" / f"{date[:10]}.parquet"))
    out = pd.DataFrame(
        {
            "customer_id": frame["customer_id"],
            "prediction": (p > 0.5).astype(int),
            "proba_0": 1 - p,
            "proba_1": p,
        }
    )
    run_dir = root / "scored" / NAME / date[:10]
    dst = data.write_frame(out, str(run_dir / "part.parquet"))
    part = {
        "partition": "part",
        "status": "scored",
        "input_uri": src.uri,
        "input_sha256": src.sha256,
        "output_uri": dst.uri,
    }
    manifest = {"model_name": NAME, "model_version": version, "logical_date": date}
    (run_dir / "_manifest.json").write_text(json.dumps({**manifest, "partitions": [part]}))


def _check(trained: dict[str, Any], spec: ModelSpec, url: str, run_id: str) -> Any:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRMLOPS_DATA_DIR", str(trained["root"]))
        return drift_flow.check_step(spec, ctx("drift", run_id), tracking_uri=url)


def test_training_stores_the_holdout_calibration(trained, mlflow_url: str) -> None:
    client = MlflowClient(mlflow_url)
    doc = client.download_artifacts(trained["run_id"], "monitoring/calibration.json")
    stored = json.loads(Path(doc).read_text())
    y, p = trained["holdout"]["churn"].to_numpy(), trained["holdout_proba"]
    assert stored["n"] == len(y)
    assert stored["brier"] == pytest.approx(brier_score_loss(y, p))
    assert 0 < stored["ece"] < 0.05  # a logistic regression is calibrated on its holdout
    metrics = client.get_run(trained["run_id"]).data.metrics
    assert metrics["holdout_calibration_ece"] == pytest.approx(stored["ece"])


def test_drift_check_estimates_each_scoring_run_and_charts_it(trained, mlflow_url: str) -> None:
    checked = _check(trained, _spec(), mlflow_url, "manual__est1")
    est = checked["estimate"]
    assert est is not None
    assert est["status"] == "ok", est
    want = expected_metrics(trained["probas"][-1])  # the newest run decides
    assert est["estimated"] == pytest.approx(want)
    assert checked["estimated_decay"] is False
    client = MlflowClient(mlflow_url)
    runs = client.search_runs(
        [client.get_experiment_by_name(f"airmlops/{NAME}").experiment_id],
        "tags.`airmlops.run_id` = 'manual__est1'",
    )
    [run] = runs
    assert run.data.tags["airmlops.estimate_status"] == "ok"
    # MLflow 3: the drift numbers are on the champion's logged model too
    model_id = model_metrics.version_model_id(client, NAME, trained["version"])
    on_page = {m.key: m for m in client.get_logged_model(model_id).metrics or []}
    assert on_page["window.rows"].value == run.data.metrics["window.rows"] > 0
    assert on_page["window.rows"].run_id == run.info.run_id
    history = client.get_metric_history(run.info.run_id, "estimated_accuracy")
    stamps = [dt.datetime.fromisoformat(d) for d in DATES]
    assert sorted((h.step, h.timestamp) for h in history) == [
        (int(s.timestamp()), int(s.timestamp() * 1000)) for s in stamps
    ]
    by_step = {h.step: h.value for h in history}
    for s, proba in zip(stamps, trained["probas"], strict=True):
        assert by_step[int(s.timestamp())] == pytest.approx(expected_metrics(proba)["accuracy"])


def test_estimated_decay_alerts_and_miscalibration_withholds(trained, mlflow_url: str) -> None:
    strict = _spec(estimated_drop_max=0.0, min_rows=100)
    strict = strict.model_copy(
        update={"metrics": strict.metrics.model_copy(update={"floors": {"roc_auc": 0.99}})}
    )
    checked = _check(trained, strict, mlflow_url, "manual__est2")
    assert checked["estimated_decay"] is True
    assert any("below its floor 0.99" in r for r in checked["estimate"]["reasons"])
    _, message = drift_flow.alert_transition({}, checked, cooldown_hours=24)
    assert message is not None
    assert "Estimated (no labels yet): estimated roc_auc" in message

    withheld = _check(trained, _spec(calibration_max_ece=0.001), mlflow_url, "manual__est3")
    assert withheld["estimate"]["status"] == "not_calibrated"
    assert withheld["estimate"]["estimated"] == {}
    assert withheld["estimated_decay"] is False
