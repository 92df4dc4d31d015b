"""The approval task of the validate DAG, as the factory builds it, outside a scheduler.

What the task asks Airflow for is the message it sends its supervisor (CreateHITLDetailPayload,
recorded here); the answers it resumes with are built by Airflow's own HITLDetail model, as the
REST API and the scheduler's timeout sweep build them.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from airflow.models.hitl import HITLDetail
from airflow.sdk.exceptions import DownstreamTasksSkipped, TaskAwaitingInput
from airflow.sdk.execution_time import task_runner
from airflow.sdk.execution_time.comms import CreateHITLDetailPayload

from airmlops import factory
from airmlops.operators.approval import DECISION_KEY
from airmlops_core.spec import load_spec
from paths import PROJECT_DIR

GATED = {"promote": True, "message": "promote: roc_auc +0.01", "challenger": "5"}


class Supervisor:
    """Stands in for the task supervisor's channel: records what the task sends."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def send(self, msg: Any = None, **kwargs: Any) -> None:
        self.sent.append(msg if msg is not None else kwargs.get("msg"))


@pytest.fixture
def supervisor(monkeypatch: pytest.MonkeyPatch) -> Supervisor:
    comms = Supervisor()
    monkeypatch.setattr(task_runner, "SUPERVISOR_COMMS", comms, raising=False)
    return comms


def approve_task(tmp_path: Path, trained_by: str | None, **promotion: Any) -> Any:
    """The `approve` task of the validate DAG of a reviewed copy of customer_churn."""
    raw = yaml.safe_load((PROJECT_DIR / "include/models/customer_churn.yaml").read_text())
    raw["promotion"] = {**raw.get("promotion", {}), "human_approval": True, **promotion}
    path = tmp_path / "customer_churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    dag = factory.validate_dag(load_spec(path))
    task = dag.get_task("approve")
    # what the XComArgs resolve to at run time
    task.gated = dict(GATED)
    task.resolved = {"challenger": "5", "champion": "4", "trained_by": trained_by}
    return task


def context(task: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    pushed: dict[str, Any] = {}
    ti = SimpleNamespace(
        id=uuid.uuid4(),
        map_index=-1,
        task_id="approve",
        xcom_push=lambda key, value: pushed.__setitem__(key, value),
    )
    return {"ti": ti, "task_instance": ti, "task": task}, pushed


def answer(chosen: list[str], by: dict[str, str] | None, *, timedout: bool = False) -> dict:
    """The event the task resumes with, built by Airflow's HITLDetail as the API/sweep do."""
    detail = HITLDetail(
        ti_id=uuid.uuid4(),
        options=["Approve", "Reject"],
        subject="Promote customer_churn?",
        defaults=["Reject"],
        chosen_options=chosen,
        responded_by=by,
        responded_at=dt.datetime.now(dt.UTC),
        params_input={},
    )
    return detail.as_resume_event_payload(timedout=timedout)


def test_the_request_times_out_to_reject_and_leaves_the_trainer_out(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    task = approve_task(tmp_path, "ann", reviewers=["ann", "bo"], approval_timeout_hours=6)
    ctx, _ = context(task)
    with pytest.raises(TaskAwaitingInput) as parked:
        task.execute(ctx)
    assert parked.value.timeout == dt.timedelta(hours=6)
    [request] = supervisor.sent
    assert isinstance(request, CreateHITLDetailPayload)
    assert request.defaults == ["Reject"]  # what the timeout sweep applies
    assert [u.id for u in request.assigned_users] == ["bo"]  # Airflow refuses anyone else


def test_the_default_timeout_is_72_hours_and_without_reviewers_nobody_is_assigned(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    task = approve_task(tmp_path, None)
    with pytest.raises(TaskAwaitingInput) as parked:
        task.execute(context(task)[0])
    assert parked.value.timeout == dt.timedelta(hours=72)
    assert supervisor.sent[0].assigned_users == []


def test_the_trainer_as_the_only_reviewer_is_a_rejection_without_asking(
    tmp_path: Path, supervisor: Supervisor
) -> None:
    task = approve_task(tmp_path, "ann", reviewers=["ann"])
    ctx, pushed = context(task)
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        task.execute(ctx)
    assert skipped.value.tasks == ["promote"]
    assert supervisor.sent == []  # no request: nobody could answer it
    assert pushed[DECISION_KEY]["chosen_options"] == ["Reject"]
    assert "no reviewer other than the trainer ann" in pushed[DECISION_KEY]["reason"]


def test_a_self_approval_is_turned_into_a_rejection(tmp_path: Path) -> None:
    task = approve_task(tmp_path, "ann")
    ctx, pushed = context(task)
    with pytest.raises(DownstreamTasksSkipped) as skipped:
        task.execute_complete(ctx, answer(["Approve"], {"id": "ann", "name": "ann"}))
    assert skipped.value.tasks == ["promote"]  # promote never runs
    decision = pushed[DECISION_KEY]
    assert decision["chosen_options"] == ["Reject"]
    assert decision["reason"].startswith("self-approval refused: ann started the training run")
    assert decision["responded_by_user"] == {"id": "ann", "name": "ann"}


def test_another_users_approve_promotes(tmp_path: Path) -> None:
    task = approve_task(tmp_path, "ann")
    ctx, pushed = context(task)
    out = task.execute_complete(ctx, answer(["Approve"], {"id": "bo", "name": "bo"}))
    assert out["chosen_options"] == ["Approve"]
    assert out["responded_by_user"] == {"id": "bo", "name": "bo"}
    assert pushed[DECISION_KEY]["approved"] is True


def test_no_answer_before_the_timeout_is_a_rejection(tmp_path: Path) -> None:
    task = approve_task(tmp_path, None, approval_timeout_hours=6)
    ctx, pushed = context(task)
    with pytest.raises(DownstreamTasksSkipped):
        task.execute_complete(ctx, answer(["Reject"], None, timedout=True))
    assert pushed[DECISION_KEY]["reason"] == (
        "no answer within 6 h (promotion.approval_timeout_hours): rejected by timeout"
    )
    assert pushed[DECISION_KEY]["reviewer"] == "nobody"


def test_a_run_a_user_started_tags_what_it_registers_with_the_user() -> None:
    """The trainer the review leaves out comes from this tag (airmlops.triggered_by)."""
    from airmlops.operators.train import RegisterModelOperator

    op = RegisterModelOperator(
        task_id="register", model_name="m", refs={}, trained={}, evaluated={}
    )
    ti = SimpleNamespace(dag_id="m__train", run_id="manual__1", task_id="register", try_number=1)

    def ctx(user: str | None) -> Any:
        run = SimpleNamespace(triggering_user_name=user, run_after=None)
        return {"ti": ti, "dag_run": run, "logical_date": None}

    assert op.run_context(ctx("ann")).tags()["airmlops.triggered_by"] == "ann"
    assert "airmlops.triggered_by" not in op.run_context(ctx(None)).tags()  # schedule, Asset
