"""Drift monitoring on a real Airflow and MLflow: each scoring run triggers `<model>__drift`
(Asset); the check compares the scored window with the champion's reference profile.

No alert on a batch drawn from the reference distribution; an alert naming the shifted columns
on a shifted batch (and the drift Asset for retraining); "not enough data" on a tiny batch.
The integration spec looks at the latest scoring run only (monitoring.window_runs: 1).
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient

import drift_loop
from airmlops_core.io import data
from airmlops_dev import demo_data
from stack_models import serve_a_champion

pytestmark = pytest.mark.integration

MODEL = "customer_churn"


def score_then_drift(stack: Any, api: Any, frame: pd.DataFrame, name: str) -> dict:
    """Land `frame` as one batch in the stack's data folder, score it, wait for its drift run."""
    folder = stack.home / "data" / "drift_batches" / name
    data.write_frame(frame, str(folder / "batch.parquet"))
    return drift_loop.score_then_drift(api, stack.mlflow_url, str(folder))


def drift_messages(stack: Any) -> list[str]:
    return drift_loop.drift_messages(stack.messages_file)


@pytest.fixture(scope="module")
def features(stack: Any) -> pd.DataFrame:
    serve_a_champion(stack)
    return demo_data.churn().drop(columns=["churn"])


def test_reference_like_batch_raises_no_alert(stack, airflow_api, features) -> None:
    before = len(drift_messages(stack))
    out = score_then_drift(stack, airflow_api, features.sample(frac=1.0, random_state=1), "clean")
    assert out["state"] == "success", out["tis"]
    assert out["mlflow"].data.tags["airmlops.drift_status"] == "no_drift"
    assert out["tis"]["signal_retrain"] == "skipped"
    assert len(drift_messages(stack)) == before  # nothing worth reading
    artifacts = {
        a.path
        for a in MlflowClient(stack.mlflow_url).list_artifacts(
            out["mlflow"].info.run_id, "monitoring"
        )
    }
    assert "monitoring/drift_report.html" in artifacts


def test_shifted_batch_alerts_naming_the_columns_and_signals_retraining(
    stack, airflow_api, features
) -> None:
    shifted = drift_loop.shifted(features)  # tenure and contract move, nothing else
    labels = demo_data.churn()[["customer_id", "churn"]]  # the labels land later, joined on key
    data.write_frame(labels, str(stack.home / "data" / "labels" / MODEL / "shifted.parquet"))
    known_retrains = {r["dag_run_id"] for r in airflow_api.dag_runs(f"{MODEL}__retrain")}
    out = score_then_drift(stack, airflow_api, shifted, "shifted")
    assert out["state"] == "success", out["tis"]
    assert out["mlflow"].data.tags["airmlops.drift_status"] == "drift"
    assert out["tis"]["signal_retrain"] == "success"  # the drift Asset for retraining
    [alert] = [m for m in drift_messages(stack) if out["run_id"] in m or "drift in v" in m][-1:]
    assert "tenure" in alert
    assert "contract" in alert
    assert "monthly_charges (" not in alert  # an untouched column is not named
    assert out["mlflow"].data.metrics["drift.feature.tenure.wasserstein"] > 0.5
    # bias over time: the gate's group metrics on the labelled window, as MLflow metrics
    assert 0.0 <= out["mlflow"].data.metrics["bias.senior_citizen.selection_rate_gap"] <= 1.0
    assert out["mlflow"].data.metrics["bias.female.1.count"] > 0

    # the drift Asset started a retrain that says why, on the window with the labelled rows
    retrain = airflow_api.wait_for_new_run(f"{MODEL}__retrain", known_retrains)
    assert airflow_api.wait(f"{MODEL}__retrain", retrain, timeout=900) == "success"
    client = MlflowClient(stack.mlflow_url)
    [version] = client.search_model_versions(
        f"name = '{MODEL}' and tags.`airmlops.run_id` = '{retrain}'"
    )
    assert version.tags["airmlops.retrain_reason"].startswith("drift: ")
    assert "tenure" in version.tags["airmlops.retrain_reason"]
    run = client.get_run(version.run_id)
    rows = json.loads(run.data.tags["airmlops.retrain_rows"])
    # every scored row whose label landed (the same customers were scored in several runs),
    # one row per customer after the newest labelled row replaced the source's
    assert rows["labelled"] >= len(labels)
    assert rows["total"] == len(labels)


def test_tiny_batch_is_not_enough_data(stack, airflow_api, features) -> None:
    # passes the batch suite (at least 100 rows), below monitoring.min_rows (500)
    out = score_then_drift(stack, airflow_api, features.head(200), "tiny")
    assert out["state"] == "success", out["tis"]
    assert out["mlflow"].data.tags["airmlops.drift_status"] == "not_enough_data"
