"""The health probe on the real stack: a stack restart and a model without a champion send no
alert; kill the model API -> one outage alert, however many probes; bring it back -> one
recovery message."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml

from airmlops_core.serve.auth import bearer
from airmlops_dev import localstack, process_group
from airmlops_dev.stack_secrets import model_api_token
from airmlops_dev.webhook_receiver import read_messages
from stack_models import serve_a_champion

pytestmark = pytest.mark.integration

DAG_ID = "airmlops_health"
MODEL = "customer_churn"
NEWCOMER = "newcomer_churn"  # a spec added to the running stack, never trained


def probe(api: Any) -> dict:
    """One probe run; its result (down, starting, idle, messages)."""
    run_id = api.trigger(DAG_ID)
    assert api.wait(DAG_ID, run_id, timeout=300) == "success"
    return {"run_id": run_id, **api.xcom(DAG_ID, run_id, "probe")}


def outage_messages(stack: Any) -> list[str]:
    """Every message of the probe so far (down or recovered, any target)."""
    return [t for t in alerts(stack, "") if " is down: " in t or " recovered (down since" in t]


def alerts(stack: Any, marker: str) -> list[str]:
    """Slack-shaped messages containing `marker` (other tests also post bodies that are not)."""
    return [
        m["body"]["text"]
        for m in read_messages(stack.messages_file)
        if isinstance(m["body"], dict) and "text" in m["body"] and marker in json.dumps(m["body"])
    ]


def add_newcomer_spec(stack: Any) -> Path:
    """A new model's spec (customer_churn's data under another name) in the stack's models."""
    models = Path(stack.extra_env["AIRMLOPS_MODELS_DIR"])
    churn = yaml.safe_load((models / f"{MODEL}.yaml").read_text())
    spec = {
        **{k: v for k, v in churn.items() if k not in ("scoring", "monitoring", "alerts")},
        "name": NEWCOMER,
        "tags": ["test"],
        "data_checks": {"suite": "include/expectations/customer_churn.yaml"},
    }
    path = models / f"{NEWCOMER}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_a_stack_restart_and_a_model_without_champion_send_no_alert(
    stack: Any, airflow_api: Any
) -> None:
    airflow_api.wait_for_dag(DAG_ID, timeout=180)
    serve_a_champion(stack)
    spec = add_newcomer_spec(stack)
    try:
        airflow_api.wait_for_dag(f"{NEWCOMER}__train", timeout=180)  # the probe knows it too
        before = len(outage_messages(stack))
        result = probe(airflow_api)
        assert f"model-api/{NEWCOMER}" in result["idle"], result
        assert f"model-api/{MODEL}" not in result["down"] + result["idle"], result
        # make down / make up: the API loads its champions again while the probe runs
        localstack.down(stack)
        localstack.up(stack)
        results = [probe(airflow_api) for _ in range(2)]
        auth = bearer(model_api_token(stack))
        body = requests.get(f"{stack.model_api_url}/status", headers=auth, timeout=10).json()
        assert body["uptime_s"] < 600, body
        sent = outage_messages(stack)[before:]
        assert sent == [], sent
        assert all(f"model-api/{NEWCOMER}" in r["idle"] for r in results), results
        assert not any(r["down"] for r in results), results
        print("probes after the restart:", [(r["starting"], r["summary"]) for r in results])
    finally:
        spec.unlink(missing_ok=True)


def test_outage_alerts_once_and_recovery_once(stack: Any, airflow_api: Any) -> None:
    airflow_api.wait_for_dag(DAG_ID, timeout=180)
    serve_a_champion(stack)
    probe(airflow_api)  # baseline state
    down_before = len(alerts(stack, "is down"))
    pid = int(stack.pid_file("model-api").read_text())
    os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while process_group.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
    for _ in range(3):
        probe(airflow_api)
    down = alerts(stack, "is down")[down_before:]
    # one alert per probed target that went down (every model behind the dead API), once
    assert down, read_messages(stack.messages_file)[-5:]
    assert all("unreachable" in text for text in down), down
    assert len(down) == len(set(down))
    localstack.up(stack)  # restarts the missing component only
    deadline = time.monotonic() + 120
    recovered: list[str] = []
    while not recovered and time.monotonic() < deadline:
        probe(airflow_api)
        recovered = [t for t in alerts(stack, "recovered") if f"*model-api/{MODEL}*" in t]
    assert len(recovered) == 1, recovered
