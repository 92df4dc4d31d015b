"""The train DAG on a real Airflow scheduler and a real MLflow server (started by conftest)."""

from __future__ import annotations

from typing import Any

import pytest
from mlflow import MlflowClient

from airmlops_dev import demo_data
from airmlops_dev.webhook_receiver import read_messages
from lineage_events import completed_task, names
from score_helpers import mlflow_sklearn_load
from slack_messages import messages_about

pytestmark = pytest.mark.integration

MODEL = "customer_churn"


@pytest.fixture(scope="module")
def demo_files(stack: Any) -> None:
    demo_data.write_all(stack.home / "data")


@pytest.fixture(scope="module")
def train_run(stack: Any, airflow_api: Any, demo_files: None) -> dict:
    dag_id = f"{MODEL}__train"
    airflow_api.wait_for_dag(dag_id, timeout=180)
    run_id = airflow_api.trigger(dag_id)
    state = airflow_api.wait(dag_id, run_id, timeout=600)
    return {"dag_id": dag_id, "run_id": run_id, "state": state}


def test_train_run_succeeds(train_run: dict, airflow_api: Any) -> None:
    tis = airflow_api.task_instances(train_run["dag_id"], train_run["run_id"])
    states = {t["task_id"]: t["state"] for t in tis}
    assert train_run["state"] == "success", states
    assert states == {
        t: "success" for t in ("extract", "check_data", "train", "evaluate", "register")
    }


def test_registered_version_has_alias_tags_and_metrics(train_run: dict, stack: Any) -> None:
    client = MlflowClient(stack.mlflow_url)
    mv = client.get_model_version_by_alias(MODEL, "challenger")
    tags = mv.tags
    assert tags["airmlops.dag_id"] == train_run["dag_id"]
    assert tags["airmlops.run_id"] == train_run["run_id"]
    assert tags["airmlops.idempotency_key"] == f"{train_run['dag_id']}/{train_run['run_id']}"
    for key in (
        "airmlops.data_sha256",
        "airmlops.spec_sha",
        "airmlops.code_version",
        "airmlops.holdout_sha256",
        "airmlops.mlflow_run_id",
    ):
        assert tags.get(key), key
    assert len(tags["airmlops.data_sha256"]) == 64
    assert 0.75 < float(tags["metric.roc_auc"]) <= 1.0
    run = client.get_run(tags["airmlops.mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.tags["airmlops.purpose"] == "train"
    assert run.data.metrics["holdout_roc_auc"] == pytest.approx(
        float(tags["metric.roc_auc"]), rel=1e-5
    )
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "plots")}
    assert {"plots/roc_curve.png", "plots/confusion_matrix.png"} <= artifacts
    assert [i.dataset.digest for i in run.inputs.dataset_inputs]
    # exactly one version for this DAG run, and its model loads and predicts
    same_run = client.search_model_versions(
        f"name = '{MODEL}' and tags.`airmlops.run_id` = '{train_run['run_id']}'"
    )
    assert len(same_run) == 1
    import mlflow

    mlflow.set_tracking_uri(stack.mlflow_url)
    model = mlflow_sklearn_load(f"models:/{MODEL}@challenger")
    frame = demo_data.churn().head(20)
    assert model.predict_proba(frame).shape == (20, 2)


def test_openlineage_events_name_the_training_data_and_the_version(
    train_run: dict, stack: Any, airflow_api: Any
) -> None:
    import socket
    from urllib.parse import urlsplit

    folder, dag_id, run_id = stack.home / "openlineage", train_run["dag_id"], train_run["run_id"]
    refs = airflow_api.xcom(dag_id, run_id, "extract")
    registered = airflow_api.xcom(dag_id, run_id, "register")
    host = f"file://{socket.gethostname()}"
    (extract,) = completed_task(folder, dag_id, "extract", run_id)
    outputs = {(d["namespace"], d["name"]): d for d in extract["outputs"]}
    for split in ("extract", "train", "holdout"):
        found = outputs[(host, refs[split]["uri"])]
        assert found["facets"]["version"]["datasetVersion"] == refs[split]["sha256"]
        assert found["outputFacets"]["outputStatistics"]["rowCount"] == refs[split]["rows"]
    assert refs["train"]["sha256"] != refs["holdout"]["sha256"]
    assert any(n.endswith("churn.parquet") for _, n in names(extract["inputs"]))

    (register,) = completed_task(folder, dag_id, "register", run_id)
    mlflow = urlsplit(stack.mlflow_url)
    namespace = f"http://{mlflow.hostname}:{mlflow.port}"
    assert names(register["outputs"]) == {(namespace, f"models/{MODEL}/{registered['version']}")}
    assert names(register["inputs"]) == {
        (host, refs["train"]["uri"]),
        (host, refs["holdout"]["uri"]),
    }


def test_success_message_reached_the_receiver(train_run: dict, stack: Any) -> None:
    found = messages_about(stack, train_run["dag_id"], "succeeded")
    assert found, read_messages(stack.messages_file)
    text = found[-1]["body"]["text"]
    assert "challenger" in text
    assert "roc_auc=" in text
    assert stack.mlflow_url in text  # link to the MLflow run / model version
    assert f"/dags/{train_run['dag_id']}/runs/" in text  # link to the Airflow run


def test_late_run_sends_one_deadline_alert(train_run: dict, stack: Any) -> None:
    # the integration specs give customer_churn__train a 6 s deadline; a run takes longer
    found = messages_about(stack, train_run["dag_id"], "deadline missed", timeout=120)
    assert found, read_messages(stack.messages_file)
    assert "6 minutes" not in found[0]["body"]["text"]
    assert "0.1 minutes" in found[0]["body"]["text"]


def test_failed_task_sends_failure_message(stack: Any, airflow_api: Any, demo_files: None) -> None:
    dag_id = "broken_source__train"
    airflow_api.wait_for_dag(dag_id, timeout=180)
    run_id = airflow_api.trigger(dag_id)
    assert airflow_api.wait(dag_id, run_id, timeout=300) == "failed"
    tis = {t["task_id"]: t for t in airflow_api.task_instances(dag_id, run_id)}
    assert tis["extract"]["state"] == "failed"
    assert tis["extract"]["try_number"] == 1  # bad input: failed at once, not retried
    found = messages_about(stack, dag_id, "failed")
    assert found, read_messages(stack.messages_file)
    text = found[-1]["body"]["text"]
    assert "extract" in text
    assert "does_not_exist.parquet" in text
    assert "/services/T000" not in text  # never the webhook URL
