"""The score task's load refuses a crafted registry version, whatever its tags say.

A version registered and made champion with MlflowClient directly (what anyone with registry
write access can do), carrying a forged "passed" tag: `score.model.load_model` (what the score
step calls once per task) refuses it before deserializing anything, naming the version and why,
with a PermanentError (the task fails at once); the payload never runs.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from mlflow import MlflowClient

import crafted_models as cm
from airmlops_core.errors import PermanentError, UnsafeModel
from airmlops_core.score import flow as score_flow
from airmlops_core.score.model import load_model
from airmlops_core.tracking.runs import RunContext
from score_helpers import make_spec


@pytest.mark.parametrize("case", cm.REGISTRY_CASES)
def test_score_load_refuses_a_crafted_champion(mlflow_url: str, tmp_path: Path, case: str) -> None:
    marker = tmp_path / "payload-ran"
    name = f"attacked_{secrets.token_hex(3)}"
    version = cm.register_dir(mlflow_url, name, cm.malicious_dir(tmp_path / "m", marker, case))
    with pytest.raises(UnsafeModel) as info:
        load_model(MlflowClient(mlflow_url), name, version)
    assert isinstance(info.value, PermanentError)  # fails the task at once, no retries
    text = str(info.value)
    assert text.startswith(f"model {name} version {version}")
    assert "refused" in text
    assert cm.DIR_REASONS[case] in text
    assert not marker.exists()


def test_score_step_fails_on_a_crafted_champion_and_a_genuine_one_loads(
    mlflow_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    name = f"attacked_{secrets.token_hex(3)}"
    good = cm.register_dir(mlflow_url, name, cm.mlflow_dir(tmp_path / "good"))
    assert load_model(MlflowClient(mlflow_url), name, good).classes == (0, 1)
    bad = cm.register_dir(
        mlflow_url, name, cm.malicious_dir(tmp_path / "bad", marker, "runstring_in_pipeline")
    )
    spec = make_spec(name, 1.0)
    ctx = RunContext(
        model=name,
        dag_id=f"{name}__score",
        run_id="scheduled__1",
        task_id="score",
        logical_date="2024-05-01T00:00:00+00:00",
    )
    resolved = score_flow.resolve_step(spec, ctx, tracking_uri=mlflow_url)
    assert resolved["version"] == bad
    with pytest.raises(UnsafeModel, match=r"numpy\.testing\._private\.utils\.runstring"):
        score_flow.score_step(
            spec, ctx, str(tmp_path / "batch.parquet"), resolved, tracking_uri=mlflow_url
        )
    assert not marker.exists()
