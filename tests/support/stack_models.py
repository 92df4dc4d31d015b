"""Model versions for the integration stack's tests: trained in-process, or a served champion.

Shared by several integration modules (test modules import each other only by accident of
pytest's import mode, so shared helpers live here, on the tests' pythonpath).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import requests
from mlflow import MlflowClient

from airmlops_core.serve.auth import bearer
from airmlops_core.spec import load_spec
from airmlops_core.tracking import registry
from airmlops_core.tracking.runs import RunContext
from airmlops_core.train import flow as train_flow
from airmlops_dev import demo_data
from airmlops_dev.stack_secrets import model_api_token

MODEL = "customer_churn"


def register_challenger(
    stack: Any, run_id: str, estimator: dict, features: dict | None = None, model: str = MODEL
) -> str:
    """Train and register a version in-process (same code path as the train DAG)."""
    spec = load_spec(Path(stack.extra_env["AIRMLOPS_MODELS_DIR"]) / f"{model}.yaml")
    update: dict[str, Any] = {"estimator": spec.estimator.model_copy(update=estimator)}
    if features:
        update["features"] = spec.features.model_copy(update=features)
    spec = spec.model_copy(update=update)
    ctx = RunContext(model=model, dag_id=f"{model}__train", run_id=run_id, task_id="train")
    os.environ["AIRMLOPS_DATA_DIR"] = str(stack.home / "data")
    refs = train_flow.extract_step(spec, ctx, work_uri=str(stack.home / "work"))
    trained = train_flow.train_step(spec, ctx, refs, tracking_uri=stack.mlflow_url)
    evaluated = train_flow.evaluate_step(spec, ctx, refs, trained, tracking_uri=stack.mlflow_url)
    out = train_flow.register_step(
        spec, ctx, refs, trained, evaluated, tracking_uri=stack.mlflow_url, spec_sha="test"
    )
    return str(out["version"])


def serve_a_champion(stack: Any) -> None:
    """customer_churn has a champion (the promoted one, else one pinned here) and the model
    API serves it."""
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
