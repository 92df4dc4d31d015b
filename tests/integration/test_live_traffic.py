"""Live traffic, end to end on real servers: a champion trained by the train path on a real
MLflow server, served by the real model API (a subprocess) with recording on, receives requests
whose two columns are shifted; the drift check of the online source then finds exactly those
two columns, and of the sources checked, only the online one alerts, naming itself."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from mlflow import MlflowClient

from airmlops_core.drift import flow as drift_flow
from airmlops_core.io import data, live
from airmlops_core.io.store import Store
from airmlops_core.spec import load_spec
from airmlops_core.tracking import registry
from airmlops_core.tracking.runs import RunContext
from airmlops_core.train import flow as train_flow
from model_api_process import Api
from paths import PROJECT_DIR as PROJECT

pytestmark = pytest.mark.integration

NAME = "churn_live"
SHIFTED = ("tenure", "monthly_charges")


def ctx(dag: str, run_id: str) -> RunContext:
    return RunContext(model=NAME, dag_id=f"{NAME}__{dag}", run_id=run_id, task_id=dag)


def write_spec(models: Path) -> Path:
    """The churn demo spec as NAME, recording every request, checking both sources."""
    body = yaml.safe_load((PROJECT / "include" / "models" / "customer_churn.yaml").read_text())
    body["name"] = NAME
    body.pop("rebalance", None)
    body["monitoring"] = {
        **body.get("monitoring", {}),
        "live": {"sample_rate": 1.0, "flush_rows": 200, "flush_seconds": 1.0},
        "sources": ["batch", "online"],
    }
    models.mkdir(parents=True, exist_ok=True)
    path = models / f"{NAME}.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_shifted_requests_through_the_api_give_one_online_alert_naming_the_columns(
    tmp_path: Path, mlflow_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airmlops_dev import demo_data

    churn = demo_data.churn()
    data.write_frame(churn, str(tmp_path / "data" / "demo" / "churn.parquet"))
    work = tmp_path / "work"
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIRMLOPS_WORK_URI", str(work))
    spec = load_spec(write_spec(tmp_path / "models"))
    c = ctx("train", "manual__live")
    refs = train_flow.extract_step(spec, c)
    run = train_flow.train_step(spec, c, refs, tracking_uri=mlflow_url)
    evaluated = train_flow.evaluate_step(spec, c, refs, run, tracking_uri=mlflow_url)
    reg = train_flow.register_step(
        spec, c, refs, run, evaluated, tracking_uri=mlflow_url, spec_sha="s"
    )
    MlflowClient(mlflow_url).set_registered_model_alias(NAME, registry.CHAMPION, reg["version"])

    api = Api(
        mlflow_url,
        NAME,
        tmp_path / "api.log",
        env={"AIRMLOPS_MODELS_DIR": str(tmp_path / "models"), "AIRMLOPS_WORK_URI": str(work)},
    )
    try:
        version = str(reg["version"])
        api.wait(  # loading and checking a version takes minutes on a loaded machine
            lambda: api.served_versions(NAME) == [version], f"{NAME} v{version}", timeout=900
        )
        rows = churn.drop(columns=["churn"]).sample(800, random_state=3).reset_index(drop=True)
        rows["tenure"] = rows["tenure"] + 40  # strongly shifted, as a broken upstream would
        rows["monthly_charges"] = rows["monthly_charges"] * 2.5
        for start in range(0, len(rows), 50):
            part = rows.iloc[start : start + 50]
            body: dict[str, Any] = {
                "dataframe_split": json.loads(part.to_json(orient="split", index=False))
            }
            r = api.http.post(f"/invocations/{NAME}", json=body)
            assert r.status_code == 200, r.text
            assert len(r.json()["predictions"]) == len(part)
        metrics = api.http.get("/metrics").text
    finally:
        api.stop()  # SIGTERM: the graceful shutdown flushes what is still queued
    api.assert_clean_exit()
    assert "airmlops_model_api_recorded_rows_total" in metrics

    store = Store()
    files = live.record_files(store, live.live_base(NAME))
    assert files, api.log_tail()
    recorded = sum(len(data.read_frame(f)) for f in files)
    assert recorded == len(rows)

    messages = []
    checks = {}
    for source in spec.monitoring.sources:
        checked = drift_flow.check_step(
            spec, ctx("drift", "manual__live_drift"), tracking_uri=mlflow_url, source=source
        )
        checks[source] = checked
        _, message = drift_flow.alert_transition({}, checked, cooldown_hours=24)
        if message:
            messages.append(message)
    assert checks["batch"]["status"] == "not_enough_data"  # no scoring run at all
    online = checks["online"]
    assert online["status"] == "drift"
    assert online["rows"] == len(rows)
    features = {c for c, e in online["drifted"].items() if e.startswith("feature")}
    assert features == set(SHIFTED)
    [alert] = messages
    assert alert.startswith(":warning: online: drift in v")
    for column in SHIFTED:
        assert f"{column} (feature" in alert
    assert "contract (feature" not in alert
