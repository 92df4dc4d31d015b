"""A model built elsewhere, onboarded and drift-checked on a real Airflow and MLflow.

Another team's scikit-learn churn pipeline, saved with skops, is onboarded through
`vendor_churn__onboard` (a pickle of the same model is refused first, registering nothing);
the version carries its origin and becomes champion, the model API serves it and the health
probe checks it, a scoring run scores a shifted batch with it, and the drift run the scored
Asset triggers reports drift on the shifted columns against the reference profile logged at
onboarding. The spec has no
training section: no train, validate or retrain DAG exists for it.
"""

from __future__ import annotations

import json
import pickle
import time
from typing import Any

import pandas as pd
import pytest
import requests
import skops.io
from mlflow import MlflowClient
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from airmlops_core.io import data
from airmlops_core.serve.auth import bearer
from airmlops_core.tracking import registry
from airmlops_dev import demo_data
from airmlops_dev.airflow_api import AirflowAPIError
from airmlops_dev.stack_secrets import model_api_token

pytestmark = pytest.mark.integration

MODEL = "vendor_churn"
NUMERIC = ["tenure", "monthly_charges"]
CATEGORICAL = ["contract", "internet_service"]


@pytest.fixture(scope="module")
def vendor(stack: Any) -> dict[str, Any]:
    """The other team's model (fitted on half the customers) and its reference (the rest)."""
    churn = demo_data.churn()
    train, reference = churn.iloc[::2], churn.iloc[1::2]
    pipe = Pipeline(
        [
            (
                "pre",
                ColumnTransformer(
                    [
                        ("num", StandardScaler(), NUMERIC),
                        ("cat", OneHotEncoder(handle_unknown="ignore"), CATEGORICAL),
                    ]
                ),
            ),
            ("model", LogisticRegression(max_iter=1000)),
        ]
    ).fit(train[NUMERIC + CATEGORICAL], train["churn"])
    folder = stack.home / "data" / "vendor"
    data.write_frame(reference, str(folder / f"{MODEL}_reference.parquet"))
    model_file = folder / "churn.skops"
    skops.io.dump(pipe, model_file)
    pickled = folder / "churn_model.pkl"
    pickled.write_bytes(pickle.dumps(pipe))
    return {"file": model_file, "pickle": pickled, "churn": churn}


def versions(stack: Any) -> list[Any]:
    return MlflowClient(stack.mlflow_url).search_model_versions(f"name = '{MODEL}'")


def test_only_monitoring_dags_exist(airflow_api: Any) -> None:
    for pipeline in ("onboard", "score", "drift", "rollback"):
        airflow_api.wait_for_dag(f"{MODEL}__{pipeline}", timeout=180)
    for pipeline in ("train", "validate", "retrain"):
        with pytest.raises(AirflowAPIError) as info:
            airflow_api.dag(f"{MODEL}__{pipeline}")
        assert info.value.status == 404


def test_pickle_is_refused_by_the_onboard_dag(stack, airflow_api, vendor) -> None:
    run_id = airflow_api.trigger(f"{MODEL}__onboard", conf={"model_file": str(vendor["pickle"])})
    assert airflow_api.wait(f"{MODEL}__onboard", run_id, timeout=300) == "failed"
    [ti] = airflow_api.task_instances(f"{MODEL}__onboard", run_id)
    assert ti["try_number"] == 1  # bad input: failed at once, no retries
    assert versions(stack) == []


def test_external_model_onboarded_and_drift_checked(stack, airflow_api, vendor) -> None:
    client = MlflowClient(stack.mlflow_url)
    run_id = airflow_api.trigger(f"{MODEL}__onboard", conf={"model_file": str(vendor["file"])})
    assert airflow_api.wait(f"{MODEL}__onboard", run_id, timeout=600) == "success"
    [mv] = versions(stack)
    assert mv.tags["airmlops.origin"] == "external"
    assert mv.tags["airmlops.origin_detail"] == "vendor X / churn team notebook"
    assert mv.tags["airmlops.source_uri"].startswith(f"{vendor['file']} sha256:")
    assert mv.tags["airmlops.run_id"] == run_id
    assert registry.alias_version(client, MODEL, registry.CHAMPION) == str(mv.version)

    # the model API follows the champion of the external model too
    deadline = time.monotonic() + 180
    served = None
    while served is None and time.monotonic() < deadline:
        body = requests.get(
            f"{stack.model_api_url}/status", headers=bearer(model_api_token(stack)), timeout=10
        ).json()
        served = (body["models"].get(MODEL) or {}).get("served_version")
        time.sleep(2)
    assert served == str(mv.version)
    # and the health probe sends it its golden request
    probe = airflow_api.trigger("airmlops_health")
    assert airflow_api.wait("airmlops_health", probe, timeout=300) == "success"
    state = json.loads(airflow_api.get("/api/v2/variables/airmlops_health_state")["value"])
    target = state["targets"][f"model-api/{MODEL}"]
    assert target["ok"], target
    assert f"version {mv.version} answered the golden request" in target["detail"]

    # a shifted batch: two more years of tenure, 90% month-to-month contracts
    features = vendor["churn"].drop(columns=["churn"])
    shifted = features.copy()
    shifted["tenure"] = (shifted["tenure"] + 24).clip(upper=80)
    shifted["contract"] = "Month-to-month"
    shifted["contract"] = shifted["contract"].where(features.index % 10 != 0, features["contract"])
    folder = stack.home / "data" / "vendor_batches" / "shifted"
    data.write_frame(shifted, str(folder / "batch.parquet"))
    known = {r["dag_run_id"] for r in airflow_api.dag_runs(f"{MODEL}__drift")}
    score_run = airflow_api.trigger(f"{MODEL}__score", conf={"input": str(folder)})
    assert airflow_api.wait(f"{MODEL}__score", score_run, timeout=600) == "success"
    scored = pd.concat(
        [
            data.read_frame(str(p))
            for p in (stack.home / "data" / "scored" / MODEL).glob("*/batch.parquet")
        ]
    )
    assert len(scored) == len(shifted)
    assert set(scored["model_version"]) == {str(mv.version)}

    drift_run = airflow_api.wait_for_new_run(f"{MODEL}__drift", known)  # the scored Asset's
    state = airflow_api.wait(f"{MODEL}__drift", drift_run, timeout=600)
    tis = {
        t["task_id"]: t["state"] for t in airflow_api.task_instances(f"{MODEL}__drift", drift_run)
    }
    assert state == "success", tis
    exp = client.get_experiment_by_name(f"airmlops/{MODEL}")
    [run] = client.search_runs(
        [exp.experiment_id],
        filter_string=(
            f"tags.`airmlops.purpose` = 'drift' and tags.`airmlops.run_id` = '{drift_run}'"
        ),
    )
    assert run.data.tags["airmlops.drift_status"] == "drift"
    assert run.data.tags["airmlops.model_version"] == str(mv.version)
    metrics = run.data.metrics
    assert metrics["drift.feature.tenure.wasserstein"] > 0.5
    assert metrics["window.rows"] == len(shifted)
