"""How shadow runs are wired: the score DAG's handoff task and its Asset, and the validate
operators that skip while a challenger waits in the shadow."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow.sdk.exceptions import AirflowSkipException

from airmlops import assets, factory
from airmlops.operators.score import ShadowHandoffOperator
from airmlops.operators.validate import PromoteOperator, RejectOperator
from airmlops_core.spec import ModelSpec, load_spec
from paths import MODELS_DIR


def _spec(shadow_runs: int | None) -> ModelSpec:
    churn = load_spec(MODELS_DIR / "customer_churn.yaml")
    promotion = {"shadow_runs": shadow_runs} if shadow_runs else {}
    return ModelSpec.model_validate(
        {**churn.model_dump(by_alias=True, exclude_unset=True), "promotion": promotion}
    )


def test_only_a_spec_with_shadow_runs_gets_the_handoff_task_emitting_the_candidate() -> None:
    plain = factory.score_dag(_spec(None))
    assert "shadow_handoff" not in plain.task_ids
    dag = factory.score_dag(_spec(2))
    handoff = dag.get_task("shadow_handoff")
    assert handoff.upstream_task_ids == {"publish"}
    assert [a.name for a in handoff.outlets] == [assets.candidate("customer_churn").name]
    # the production tasks and their outlets are the same as without shadow runs
    assert set(dag.task_ids) - set(plain.task_ids) == {"shadow_handoff"}
    assert [a.name for a in dag.get_task("publish").outlets] == ["model/customer_churn/scored"]


@pytest.fixture
def models(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = yaml.safe_load((MODELS_DIR / "customer_churn.yaml").read_text())
    spec["promotion"] = {"shadow_runs": 2}
    (tmp_path / "customer_churn.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.setenv("AIRMLOPS_MODELS_DIR", str(tmp_path))


def _shadow(ready: bool) -> dict[str, Any]:
    return {
        "version": "7",
        "status": "complete",
        "manifest_uri": "x",
        "errors": [],
        "runs": 2 if ready else 1,
        "needed": 2,
        "ready": ready,
    }


def test_the_handoff_emits_only_when_the_run_completed_the_shadow_runs(models: None) -> None:
    def op(published: dict[str, Any]) -> ShadowHandoffOperator:
        return ShadowHandoffOperator(
            task_id="shadow_handoff", model_name="customer_churn", published=published
        )

    with pytest.raises(AirflowSkipException, match="no challenger is waiting"):
        op({"summary": "s"}).run({})  # type: ignore[arg-type]
    with pytest.raises(AirflowSkipException, match="1 of 2 shadow run"):
        op({"shadow": _shadow(False)}).run({})  # type: ignore[arg-type]
    assert op({"shadow": _shadow(True)}).run({})["version"] == "7"  # type: ignore[arg-type]


def test_a_waiting_challenger_is_neither_promoted_nor_rejected(models: None) -> None:
    gated = {"promote": False, "shadow_wait": True, "message": "waiting for 2 shadow runs"}
    promote = PromoteOperator(task_id="promote", model_name="customer_churn", gated=gated)
    reject = RejectOperator(task_id="reject", model_name="customer_churn", gated=gated)
    with pytest.raises(AirflowSkipException, match="waiting for 2 shadow runs"):
        promote.run({})  # type: ignore[arg-type]
    with pytest.raises(AirflowSkipException, match="not rejected: waiting"):
        reject.run({})  # type: ignore[arg-type]
