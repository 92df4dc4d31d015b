"""Extract through Airflow connections: S3 (a real SeaweedFS server) and SQL (SQLite).

The operator runs outside a scheduler, with connections from AIRFLOW_CONN_* variables, as a
worker would resolve them.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from airmlops.operators.train import ExtractTrainingDataOperator
from airmlops_core.io import data
from airmlops_dev import demo_data

SPEC = {
    "task": "binary",
    "target": "churn",
    "row_key": "customer_id",
    "features": {"numeric": ["tenure", "monthly_charges"], "categorical": ["contract"]},
    "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
    "metrics": {"primary": "roc_auc"},
}


def context(dag_id: str) -> dict:
    ti = SimpleNamespace(dag_id=dag_id, run_id="manual__op", task_id="extract", try_number=1)
    return {"ti": ti, "logical_date": None}


@pytest.fixture
def churn() -> object:
    return demo_data.churn()


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "models"
    d.mkdir()
    monkeypatch.setenv("AIRMLOPS_MODELS_DIR", str(d))
    monkeypatch.setenv("AIRMLOPS_WORK_URI", str(tmp_path / "work"))
    return d


def add_spec(models: Path, name: str, source: dict) -> None:
    (models / f"{name}.yaml").write_text(yaml.safe_dump({**SPEC, "name": name, "source": source}))


@pytest.mark.integration
def test_extract_from_s3_through_an_airflow_connection(
    models, churn, s3, s3_server, monkeypatch
) -> None:
    key = f"s3://{s3.bucket}/landing/churn.parquet"
    source_ref = data.write_frame(churn, key, s3_client=s3.client)
    monkeypatch.setenv(
        "AIRFLOW_CONN_S3_TEST",
        json.dumps(
            {
                "conn_type": "aws",
                "login": s3_server.access_key,
                "password": s3_server.secret_key,
                "extra": {"endpoint_url": s3.endpoint_url, "region_name": "us-east-1"},
            }
        ),
    )
    add_spec(
        models,
        "s3_model",
        {
            "kind": "s3",
            "uri": key,
            "conn_id": "s3_test",
            "window": {"column": "tenure", "start": 0, "end": 24},
        },
    )
    op = ExtractTrainingDataOperator(task_id="extract", model_name="s3_model")
    refs = op.execute(context("s3_model__train"))
    expected = int(((churn["tenure"] >= 0) & (churn["tenure"] <= 24)).sum())
    assert refs["extract"]["rows"] == expected == refs["train"]["rows"] + refs["holdout"]["rows"]
    assert source_ref.rows == len(churn)
    extracted = data.read_ref(data.DataRef.from_dict(refs["extract"]))
    assert extracted["tenure"].max() <= 24
    assert set(extracted.columns) == {
        "customer_id",
        "tenure",
        "monthly_charges",
        "contract",
        "churn",
    }


def test_extract_from_sql_through_an_airflow_connection(
    models, churn, tmp_path, monkeypatch
) -> None:
    db = tmp_path / "warehouse.db"
    with sqlite3.connect(db) as conn:
        churn.to_sql("customers", conn, index=False)
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", f"sqlite:///{db}")
    add_spec(
        models,
        "sql_model",
        {
            "kind": "sql",
            "conn_id": "warehouse",
            "query": "SELECT * FROM customers WHERE contract != 'x'",
        },
    )
    refs = ExtractTrainingDataOperator(task_id="extract", model_name="sql_model").execute(
        context("sql_model__train")
    )
    assert refs["extract"]["rows"] == len(churn)


def test_missing_source_fails_at_once_with_the_path(models) -> None:
    from airflow.sdk.exceptions import AirflowFailException

    add_spec(models, "nofile", {"kind": "file", "uri": "/nonexistent/data.parquet"})
    op = ExtractTrainingDataOperator(task_id="extract", model_name="nofile")
    with pytest.raises(AirflowFailException, match="/nonexistent/data.parquet"):
        op.execute(context("nofile__train"))
