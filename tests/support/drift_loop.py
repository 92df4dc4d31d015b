"""The score -> drift step of the lifecycle, driven through the Airflow REST API.

Shared by the single-host drift test (tests/integration/test_drift_dag.py) and the distributed
one (test_distributed.py): the caller lands the batch (a local folder or an s3:// prefix) and
passes its URI.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from mlflow import MlflowClient

from airmlops_dev.webhook_receiver import read_messages

MODEL = "customer_churn"


def score_then_drift(api: Any, mlflow_url: str, input_uri: str, model: str = MODEL) -> dict:
    """Score the batch at `input_uri` (a manual score run), wait for the drift run its scored
    Asset triggers; returns the drift run's id, state, task states and MLflow run."""
    # earlier scoring runs may still have drift runs queued: let them finish, so that the
    # next new drift run is the one this batch's scored Asset triggers
    deadline = time.monotonic() + 600
    while api.dag_runs(f"{model}__drift", states=["queued", "running"]):
        assert time.monotonic() < deadline, "drift runs of earlier batches did not finish"
        time.sleep(2)
    known = {r["dag_run_id"] for r in api.dag_runs(f"{model}__drift")}
    score_run = api.trigger(f"{model}__score", conf={"input": input_uri})
    assert api.wait(f"{model}__score", score_run, timeout=600) == "success"
    drift_run = api.wait_for_new_run(f"{model}__drift", known)  # the scored Asset's
    state = api.wait(f"{model}__drift", drift_run, timeout=600)
    tis = {t["task_id"]: t["state"] for t in api.task_instances(f"{model}__drift", drift_run)}
    client = MlflowClient(mlflow_url)
    exp = client.get_experiment_by_name(f"airmlops/{model}")
    [run] = client.search_runs(
        [exp.experiment_id],
        filter_string=(
            f"tags.`airmlops.purpose` = 'drift' and tags.`airmlops.run_id` = '{drift_run}'"
        ),
    )
    return {
        "run_id": drift_run,
        "score_run": score_run,
        "state": state,
        "tis": tis,
        "mlflow": run,
    }


def drift_messages(messages_file: Path, model: str = MODEL) -> list[str]:
    """The texts the Slack stand-in received from the model's drift DAG, oldest first."""
    return [
        m["body"]["text"]
        for m in read_messages(messages_file)
        if f"{model}__drift" in json.dumps(m["body"])
    ]


SHIFTED = ("tenure", "contract")  # the columns `shifted` moves; every other column is as given


def shifted(features: Any) -> Any:
    """The churn features with a real shift in `SHIFTED` only: two years more on every
    contract (within the suite's range), and 90% month-to-month."""
    out = features.copy()
    out["tenure"] = (out["tenure"] + 24).clip(upper=80)
    out["contract"] = "Month-to-month"
    out["contract"] = out["contract"].where(features.index % 10 != 0, features["contract"])
    return out
