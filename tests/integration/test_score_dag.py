"""Bulk scoring on a real Airflow and a real MLflow server.

A batch landing (an Asset event posted to Airflow's REST API, as an external system would)
triggers `<model>__score`: one mapped task per partition, the champion pinned for the run, a
manifest and an MLflow lineage run. A re-run of the same DAG run rewrites byte-identical files;
a bad partition is quarantined while the others are scored, and the run fails with an alert.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from airmlops_core.io import data
from airmlops_core.serve.auth import bearer
from airmlops_core.spec import load_spec
from airmlops_core.tracking import registry
from airmlops_core.train import estimator as training
from airmlops_dev import demo_data
from airmlops_dev.stack_secrets import model_api_token
from airmlops_dev.webhook_receiver import read_messages
from score_helpers import mlflow_sklearn_load
from stack_models import register_challenger

pytestmark = pytest.mark.integration

MODEL = "customer_churn"
DAG_ID = f"{MODEL}__score"


@pytest.fixture(scope="module")
def champion(stack: Any, airflow_api: Any) -> str:
    """The champion to score with: the existing one, else a version trained in-process."""
    demo_data.write_all(stack.home / "data")
    client = MlflowClient(stack.mlflow_url)
    version = registry.alias_version(client, MODEL, registry.CHAMPION)
    if version is None:
        version = register_challenger(stack, "manual__score_champion", {})
        client.set_registered_model_alias(MODEL, registry.CHAMPION, version)
    airflow_api.wait_for_dag(DAG_ID, timeout=180)
    return version


def land(stack: Any, folder: str, parts: int) -> tuple[pd.DataFrame, list[Path]]:
    """Write the churn features (no label) as `parts` partitions under <data>/<folder>."""
    df = demo_data.churn().drop(columns=["churn"])
    paths = []
    for i, chunk in enumerate(np.array_split(np.arange(len(df)), parts)):
        path = stack.home / "data" / folder / f"part-{i}.parquet"
        data.write_frame(df.iloc[chunk].reset_index(drop=True), str(path))
        paths.append(path)
    return df, paths


def outputs(stack: Any) -> list[Path]:
    return sorted((stack.home / "data" / "scored" / MODEL).glob("*/*.parquet"))


@pytest.fixture(scope="module")
def landed_run(stack: Any, airflow_api: Any, champion: str) -> dict:
    frame, paths = land(stack, f"landing/{MODEL}", parts=3)
    known = {r["dag_run_id"] for r in airflow_api.dag_runs(DAG_ID)}
    airflow_api.asset_event(f"model/{MODEL}/landing", extra={"files": len(paths)})
    run_id = airflow_api.wait_for_new_run(DAG_ID, known)
    state = airflow_api.wait(DAG_ID, run_id, timeout=600)
    return {"run_id": run_id, "state": state, "frame": frame}


def test_landing_event_scores_every_partition_with_the_champion(
    landed_run, stack, champion, airflow_api
) -> None:
    assert landed_run["state"] == "success"
    tis = airflow_api.task_instances(DAG_ID, landed_run["run_id"])
    assert sorted(t["map_index"] for t in tis if t["task_id"] == "score") == [0, 1, 2]
    files = outputs(stack)
    assert len(files) == 3
    scored = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True)
    frame = landed_run["frame"]
    assert len(scored) == len(frame)  # rows out == rows in
    assert scored["customer_id"].is_unique
    assert set(scored["model_version"]) == {champion}
    # probabilities equal the champion's own predict_proba, computed here independently
    mlflow.set_tracking_uri(stack.mlflow_url)
    model = mlflow_sklearn_load(f"models:/{MODEL}/{champion}")
    spec = load_spec(Path(stack.extra_env["AIRMLOPS_MODELS_DIR"]) / f"{MODEL}.yaml")
    expected = model.predict_proba(training.feature_frame(spec, frame))[:, 1]
    got = scored.set_index("customer_id").loc[frame["customer_id"], "proba_1"].to_numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-12)
    manifest = json.loads(
        next((stack.home / "data" / "scored" / MODEL).glob("*/_manifest.json")).read_text()
    )
    assert manifest["totals"] == {
        "partitions": 3,
        "scored": 3,
        "quarantined": 0,
        "rows_in": len(frame),
        "rows_out": len(frame),
        "quarantined_rows": 0,
    }
    client = MlflowClient(stack.mlflow_url)
    [run] = client.search_runs(
        [client.get_experiment_by_name(f"airmlops/{MODEL}").experiment_id],
        filter_string=f"tags.`airmlops.purpose` = 'score' and "
        f"tags.`airmlops.run_id` = '{landed_run['run_id']}'",
    )
    assert run.data.params["model_version"] == champion
    assert run.data.metrics["score.rows_out"] == len(frame)
    assert run.data.metrics["score.rows_per_cpu_second"] > 0
    assert run.data.metrics["score.peak_rss_mib"] > 50
    # the SQL sink (a SQLite connection here) holds the same rows, keyed on (row key, model)
    sink = sink_rows(stack)
    assert run.data.metrics["score.sink_rows"] == len(frame)
    assert len(sink) >= len(frame)
    assert not sink.duplicated(["customer_id", "model_name"]).any()
    mine = sink.set_index("customer_id").loc[frame["customer_id"]]
    np.testing.assert_allclose(mine["proba_1"].to_numpy(), expected, rtol=1e-12)
    assert set(mine["model_version"]) == {champion}


def sink_rows(stack: Any) -> pd.DataFrame:
    with sqlite3.connect(stack.home / "scores.db") as conn:
        return pd.read_sql("SELECT * FROM churn_scores", conn)


def test_openlineage_events_name_partitions_scores_version_and_table(
    landed_run, stack, champion
) -> None:
    import hashlib
    import socket
    from urllib.parse import urlsplit

    from lineage_events import completed_task, names

    folder, run_id = stack.home / "openlineage", landed_run["run_id"]
    host = f"file://{socket.gethostname()}"
    mlflow = urlsplit(stack.mlflow_url)
    version = (f"http://{mlflow.hostname}:{mlflow.port}", f"models/{MODEL}/{champion}")
    scored = completed_task(folder, DAG_ID, "score", run_id)
    assert len(scored) == 3  # one per mapped partition
    landing = stack.home / "data" / "landing" / MODEL
    want_inputs = {(host, str(landing / f"part-{i}.parquet")) for i in range(3)}
    assert set().union(*(names(e["inputs"]) for e in scored)) == want_inputs | {version}
    written = {
        (d["namespace"], d["name"]): d["facets"]["version"]["datasetVersion"]
        for e in scored
        for d in e["outputs"]
    }
    on_disk = [p for p in outputs(stack) if (host, str(p)) in written]
    assert len(on_disk) == 3
    for path in on_disk:  # the dataset version is the scored file's own hash
        assert written[(host, str(path))] == hashlib.sha256(path.read_bytes()).hexdigest()
    (publish,) = completed_task(folder, DAG_ID, "publish", run_id)
    assert (f"sqlite://{stack.home / 'scores.db'}", "churn_scores") in names(publish["outputs"])
    assert names(publish["inputs"]) == {version}


def test_rerun_of_the_same_run_is_byte_identical(landed_run, stack, airflow_api) -> None:
    before = {f.name: data.file_sha256(str(f)) for f in outputs(stack)}
    sinked = sink_rows(stack)
    airflow_api.clear_run(DAG_ID, landed_run["run_id"])
    time.sleep(2)
    assert airflow_api.wait(DAG_ID, landed_run["run_id"], timeout=600) == "success"
    after = {f.name: data.file_sha256(str(f)) for f in outputs(stack)}
    assert after == before
    assert len(sink_rows(stack)) == len(sinked)  # the re-run updated rows, added none


def test_bad_partition_is_quarantined_others_scored_run_fails(
    landed_run, stack, airflow_api
) -> None:
    _, paths = land(stack, "manual_batch", parts=2)
    bad = pd.read_parquet(paths[1])
    bad.loc[bad.index[:30], "tenure"] = -5  # out of the suite's range
    data.write_frame(bad, str(paths[1]))
    run_id = airflow_api.trigger(DAG_ID, conf={"input": str(paths[0].parent)})
    assert airflow_api.wait(DAG_ID, run_id, timeout=600) == "failed"
    tis = {
        (t["task_id"], t["map_index"]): t["state"]
        for t in airflow_api.task_instances(DAG_ID, run_id)
    }
    assert tis[("score", 0)] == tis[("score", 1)] == "success"
    assert tis[("publish", -1)] == "failed"
    day = [
        p
        for p in (stack.home / "data" / "scored" / MODEL).iterdir()
        if (p / "part-0.parquet").exists() and not (p / "part-1.parquet").exists()
    ]
    assert day, "the good partition was not published on its own"
    quarantined = list((stack.home).rglob("part-1/result.json"))
    assert quarantined
    assert json.loads(quarantined[0].read_text())["result"]["success"] is False
    alerts = [
        m
        for m in read_messages(stack.messages_file)
        if DAG_ID in json.dumps(m) and "quarantined" in json.dumps(m)
    ]
    assert alerts
    assert "part-1" in alerts[-1]["body"]["text"]


def test_model_api_serves_the_champion(champion, stack) -> None:
    import requests

    auth = bearer(model_api_token(stack))
    deadline = time.monotonic() + 60
    while True:
        status = requests.get(f"{stack.model_api_url}/status", headers=auth, timeout=10).json()
        served = status["models"][MODEL]["served_version"] if "models" in status else None
        if served == champion or time.monotonic() > deadline:
            break
        time.sleep(2)
    assert served == champion, status
    frame = demo_data.churn().drop(columns=["churn"]).head(3)
    body = {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))}
    url = f"{stack.model_api_url}/invocations/{MODEL}"
    assert requests.post(url, json=body, timeout=30).status_code == 401  # no token
    assert set(requests.get(f"{stack.model_api_url}/health", timeout=10).json()) == {"status"}
    resp = requests.post(url, json=body, headers=auth, timeout=30)
    assert resp.status_code == 200, resp.text
    assert resp.headers["X-Model-Version"] == champion
    assert len(resp.json()["predictions"]) == 3
