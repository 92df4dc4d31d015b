"""The validate DAG's writers of `champion` (promote, rollback) go through the champion lease.

Against a real MLflow server: a writer that died holding the lease is waited out and its lease
broken (logged) before the promotion or the rollback moves `champion`.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest
from mlflow import MlflowClient

import crafted_models as cm
from airmlops_core.errors import PromotionConflict
from airmlops_core.spec import load_spec
from airmlops_core.tracking import locks, registry
from airmlops_core.tracking.runs import RunContext
from airmlops_core.validate import flow
from paths import MODELS_DIR


@pytest.fixture
def model(mlflow_url: str, tmp_path: Path) -> dict[str, Any]:
    """A fresh registered model with two genuine versions (rollback checks its target's files)
    and a spec naming it."""
    client = MlflowClient(mlflow_url)
    name = f"writers_{uuid.uuid4().hex[:8]}"
    v1, v2 = (
        cm.register_dir(mlflow_url, name, cm.mlflow_dir(tmp_path / part), champion=False)
        for part in "ab"
    )
    spec = load_spec(MODELS_DIR / "customer_churn.yaml").model_copy(update={"name": name})
    ctx = RunContext(model=name, dag_id=f"{name}__validate", run_id="manual__1", task_id="t")
    return {
        "client": client,
        "name": name,
        "v": (v1, v2),
        "spec": spec,
        "ctx": ctx,
        "url": mlflow_url,
    }


def dead_writer(client: MlflowClient, name: str) -> None:
    """A writer that took the champion lease and died without releasing it."""
    key = registry.champion_lease_key(name)
    locks.Lease(client, key, owner="dead writer", ttl=1.5).acquire()


def gated(challenger: str, champion: str | None) -> flow.Gated:
    return {
        "promote": True,
        "reasons": ["floors met"],
        "tags": {"gate.decision": "promote"},
        "message": "promote",
        "challenger": challenger,
        "champion": champion,
        "data_sha256": "0" * 64,
        "metrics": {},
    }


def test_promotion_and_rollback_wait_out_a_dead_writers_lease(
    model: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    client, name, (v1, v2) = model["client"], model["name"], model["v"]
    client.set_registered_model_alias(name, registry.CHAMPION, v1)
    dead_writer(client, name)
    with caplog.at_level("WARNING", logger=locks.__name__):
        promoted = flow.promote_step(
            model["spec"],
            model["ctx"],
            gated(v2, v1),
            tracking_uri=model["url"],
            approved_by="gate",
        )
    assert (promoted["champion"], promoted["previous_champion"]) == (v2, v1)
    assert caplog.text.count("breaking the lease") == 1
    assert "dead writer on " in caplog.text

    dead_writer(client, name)
    with caplog.at_level("WARNING", logger=locks.__name__):
        rolled = flow.rollback_step(
            model["spec"],
            model["ctx"],
            target=registry.PREVIOUS_CHAMPION,
            reason="bad",
            user="ops",
            tracking_uri=model["url"],
        )
    assert (rolled["champion"], rolled["previous_champion"]) == (v1, v2)
    assert caplog.text.count("breaking the lease") == 2
    key = registry.champion_lease_key(name)
    assert locks.read_lease(client, key) is None


def test_a_promotion_against_a_moved_champion_is_refused(model: dict[str, Any]) -> None:
    client, name, (v1, v2) = model["client"], model["name"], model["v"]
    client.set_registered_model_alias(name, registry.CHAMPION, v1)
    with pytest.raises(
        PromotionConflict,
        match=f"champion is version {v1}, but the gate compared against None; re-evaluate",
    ):
        flow.promote_step(
            model["spec"],
            model["ctx"],
            gated(v2, None),
            tracking_uri=model["url"],
            approved_by="gate",
        )
    assert registry.alias_version(client, name, registry.CHAMPION) == v1
    assert locks.read_lease(client, registry.champion_lease_key(name)) is None
