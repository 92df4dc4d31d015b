"""Rollback never makes a version champion that the pack would refuse to load.

`validate.flow.rollback_step` (what the rollback DAG's RollbackOperator calls) checks the
target's files with the model-safety check before moving `champion`; a crafted version
(registered with MlflowClient directly, forged "passed" tags) is refused by name, the alias
stays where it was and the payload never runs.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest
from mlflow import MlflowClient

import crafted_models as cm
from airmlops_core.errors import UnsafeModel
from airmlops_core.tracking import registry
from airmlops_core.tracking.runs import RunContext
from airmlops_core.validate import flow as validate_flow
from score_helpers import make_spec


def test_rollback_refuses_a_crafted_target_and_moves_to_a_checked_one(
    mlflow_url: str, tmp_path: Path
) -> None:
    marker = tmp_path / "payload-ran"
    name = f"rollback_{secrets.token_hex(3)}"
    client = MlflowClient(mlflow_url)
    good = cm.register_dir(mlflow_url, name, cm.mlflow_dir(tmp_path / "good"))
    bad = cm.register_dir(
        mlflow_url,
        name,
        cm.malicious_dir(tmp_path / "bad", marker, "trusted_exec"),
        champion=False,
    )
    other = cm.register_dir(mlflow_url, name, cm.mlflow_dir(tmp_path / "other"), champion=False)
    spec = make_spec(name, 1.0)
    ctx = RunContext(model=name, dag_id=f"{name}__rollback", run_id="manual__1", task_id="rb")
    kwargs = {"reason": "test", "user": "ops", "tracking_uri": mlflow_url}
    with pytest.raises(UnsafeModel) as info:
        validate_flow.rollback_step(spec, ctx, target=bad, **kwargs)
    assert f"rollback of {name} to version {bad} refused" in str(info.value)
    assert "builtins.exec" in str(info.value)
    assert registry.alias_version(client, name, registry.CHAMPION) == good
    # previous_champion pointed at the crafted version (by anyone with registry access)
    client.set_registered_model_alias(name, registry.PREVIOUS_CHAMPION, bad)
    with pytest.raises(UnsafeModel, match=f"version {bad} refused"):
        validate_flow.rollback_step(spec, ctx, target=registry.PREVIOUS_CHAMPION, **kwargs)
    assert registry.alias_version(client, name, registry.CHAMPION) == good
    assert not marker.exists()
    moved = validate_flow.rollback_step(spec, ctx, target=other, **kwargs)
    assert moved["champion"] == other
    assert registry.alias_version(client, name, registry.CHAMPION) == other
