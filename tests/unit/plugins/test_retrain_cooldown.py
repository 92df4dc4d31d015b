"""The retrain cool-down: it starts when a retrain succeeded (the DAG's last task records it),
holds back only the automatic triggers, and never a run a person started.

The operators run outside a scheduler. The Variable is read through Airflow's real
environment-variable secrets backend (AIRFLOW_VAR_*), as a worker resolves it; writing one
needs a running task supervisor, so the record task's write is captured at Variable.set.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from airflow.sdk.api.datamodels._generated import DagRunType
from airflow.sdk.exceptions import AirflowSkipException

from airmlops.operators.train import ExtractRetrainingDataOperator, RecordRetrainOperator
from airmlops_core.io import data
from airmlops_dev import demo_data

MODEL = "churn_rt"
VARIABLE_ENV = f"AIRFLOW_VAR_AIRMLOPS_RETRAIN_{MODEL.upper()}"
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    source = data.write_frame(demo_data.churn().head(400), str(tmp_path / "churn.parquet"))
    spec = {
        "name": MODEL,
        "task": "binary",
        "target": "churn",
        "row_key": "customer_id",
        "source": {"kind": "file", "uri": source.uri},
        "features": {"numeric": ["tenure", "monthly_charges"], "categorical": ["contract"]},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "metrics": {"primary": "roc_auc"},
        "retrain": {"cooldown_hours": 24},
    }
    (d / f"{MODEL}.yaml").write_text(yaml.safe_dump(spec))
    for name, value in {
        "AIRMLOPS_MODELS_DIR": d,
        "AIRMLOPS_WORK_URI": tmp_path / "work",
        "AIRMLOPS_LOCAL_DIR": tmp_path / "local",
        "AIRMLOPS_DATA_DIR": tmp_path / "data",
    }.items():
        monkeypatch.setenv(name, str(value))
    monkeypatch.delenv(VARIABLE_ENV, raising=False)
    return d


def context(run_type: DagRunType, user: str | None = None, run_id: str = "run_now") -> Any:
    ti = SimpleNamespace(dag_id=f"{MODEL}__retrain", run_id=run_id, task_id="x", try_number=1)
    dag_run = SimpleNamespace(
        run_type=run_type, triggering_user_name=user, run_after=NOW, run_id=run_id
    )
    return {"ti": ti, "dag_run": dag_run, "logical_date": None}


def recorded(monkeypatch: pytest.MonkeyPatch, **record: object) -> None:
    """The Variable as a deployment's secrets backend holds it."""
    monkeypatch.setenv(VARIABLE_ENV, json.dumps(record))


def extract(ctx: Any) -> Any:
    return ExtractRetrainingDataOperator(task_id="extract", model_name=MODEL).execute(ctx)


def hours_ago(h: float) -> str:
    return (NOW - dt.timedelta(hours=h)).isoformat(timespec="seconds")


@pytest.mark.parametrize("run_type", [DagRunType.SCHEDULED, DagRunType.ASSET_TRIGGERED])
def test_an_automatic_retrain_waits_after_a_successful_one(models, monkeypatch, run_type) -> None:
    recorded(monkeypatch, retrained_at=hours_ago(1), run_id="run_before", version="7")
    with pytest.raises(AirflowSkipException, match=r"churn_rt was retrained at .*version 7"):
        extract(context(run_type))


@pytest.mark.parametrize(
    ("run_type", "user", "reason"),
    [
        (DagRunType.MANUAL, "alice", "manual (alice)"),
        (DagRunType.MANUAL, None, "manual"),
        (DagRunType.BACKFILL, "bob", "manual (bob)"),
    ],
)
def test_a_retrain_a_person_starts_ignores_the_cool_down(
    models, monkeypatch, run_type, user, reason
) -> None:
    recorded(monkeypatch, retrained_at=hours_ago(1), run_id="run_before", version="7")
    refs = extract(context(run_type, user))
    assert refs["reason"] == reason
    assert refs["rows"]["total"] == 400


def test_a_started_but_unfinished_retrain_holds_nothing_back(models, monkeypatch) -> None:
    # what the extract task recorded before this fix: a start, whatever became of the run
    recorded(monkeypatch, started_at=hours_ago(1), run_id="run_failed", reason="drift: x")
    written: list[str] = []
    monkeypatch.setattr("airflow.sdk.Variable.set", lambda key, *a, **k: written.append(key))
    refs = extract(context(DagRunType.ASSET_TRIGGERED))
    assert refs["rows"]["total"] == 400
    assert written == []  # the extract task records nothing: only a finished retrain does


def test_after_the_cool_down_and_on_a_rerun_of_the_recorded_run(models, monkeypatch) -> None:
    recorded(monkeypatch, retrained_at=hours_ago(25), run_id="run_before", version="7")
    assert extract(context(DagRunType.SCHEDULED))["reason"] == "scheduled"
    recorded(monkeypatch, retrained_at=hours_ago(1), run_id="run_now", version="7")
    assert extract(context(DagRunType.SCHEDULED, run_id="run_now"))["reason"] == "scheduled"


def test_the_last_task_records_the_successful_retrain(models, monkeypatch) -> None:
    written: dict[str, str] = {}
    monkeypatch.setattr(
        "airflow.sdk.Variable.set", lambda key, value, *a, **k: written.__setitem__(key, value)
    )
    before = dt.datetime.now(dt.UTC).replace(microsecond=0)
    record = RecordRetrainOperator(
        task_id="record_retrain",
        model_name=MODEL,
        refs={"reason": "drift: v7 drifted tenure"},
        registered={"version": "8"},
    ).execute(context(DagRunType.ASSET_TRIGGERED))
    assert json.loads(written[f"airmlops_retrain_{MODEL}"]) == record
    assert record["run_id"] == "run_now"
    assert record["version"] == "8"
    assert record["reason"] == "drift: v7 drifted tenure"
    assert dt.datetime.fromisoformat(record["retrained_at"]) >= before
    # and that record is what holds the next automatic run back
    monkeypatch.setenv(VARIABLE_ENV, written[f"airmlops_retrain_{MODEL}"])
    with pytest.raises(AirflowSkipException, match="version 8"):
        extract(context(DagRunType.ASSET_TRIGGERED, run_id="run_next"))
