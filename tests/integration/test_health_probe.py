"""The health probe on the real stack: kill the model API -> one outage alert, however many
probes; bring it back -> one recovery message."""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

import pytest

from airmlops_core.serve.auth import bearer
from airmlops_dev import localstack, process_group
from airmlops_dev.stack_secrets import model_api_token
from airmlops_dev.webhook_receiver import read_messages
from stack_models import serve_a_champion

pytestmark = pytest.mark.integration

DAG_ID = "airmlops_health"
MODEL = "customer_churn"


def probe(api: Any) -> dict:
    run_id = api.trigger(DAG_ID)
    assert api.wait(DAG_ID, run_id, timeout=300) == "success"
    return {"run_id": run_id}


def alerts(stack: Any, marker: str) -> list[str]:
    return [
        m["body"]["text"]
        for m in read_messages(stack.messages_file)
        if marker in json.dumps(m["body"])
    ]


def serve_a_champion(stack: Any) -> None:
    """customer_churn has a champion and the API serves it."""
    import requests
    from mlflow import MlflowClient
    from test_validate_dag import register_challenger

    from airmlops_core.tracking import registry
    from airmlops_dev import demo_data

    demo_data.write_all(stack.home / "data")
    client = MlflowClient(stack.mlflow_url)
    if registry.alias_version(client, MODEL, registry.CHAMPION) is None:
        version = register_challenger(stack, "manual__health_champion", {})
        client.set_registered_model_alias(MODEL, registry.CHAMPION, version)
    auth = bearer(model_api_token(stack))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        body = requests.get(f"{stack.model_api_url}/status", headers=auth, timeout=10).json()
        if body["models"][MODEL]["served_version"]:
            return
        time.sleep(2)
    raise TimeoutError(f"the model API does not serve {MODEL}: {body}")


def test_outage_alerts_once_and_recovery_once(stack: Any, airflow_api: Any) -> None:
    airflow_api.wait_for_dag(DAG_ID, timeout=180)
    serve_a_champion(stack)
    probe(airflow_api)  # baseline state (a model without a champion may already be down)
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
