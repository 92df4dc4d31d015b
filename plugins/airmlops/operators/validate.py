"""Operators of the validate gate and of rollback."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk.exceptions import AirflowSkipException

from airmlops.operators.base import ModelOperator

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from airmlops.lineage import TaskLineage
    from airmlops_core.validate.flow import (
        Checked,
        Gated,
        Promoted,
        Rejected,
        Resolved,
        RolledBack,
    )

AUTO_APPROVER = "gate (automatic)"


def human_approved(approval: dict[str, Any]) -> bool:
    """Whether an ApprovalOperator's result (its XCom) says Approve."""
    return list(approval.get("chosen_options") or []) == ["Approve"]


def reviewer(approval: dict[str, Any]) -> str:
    """Who answered an approval task."""
    user = approval.get("responded_by_user") or {}
    return str(user.get("name") or user.get("id") or "unknown")


class ResolveCandidateOperator(ModelOperator):
    """Pin the challenger, the champion it is compared against, and the frozen holdout."""

    def run(self, context: Context) -> Resolved:
        from airmlops_core.validate import flow as validate_flow

        return validate_flow.resolve_step(self.spec, tracking_uri=self.tracking_uri())


class CheckHoldoutOperator(ModelOperator):
    """Great Expectations on the holdout; the result is evidence for the gate."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "resolved")

    def __init__(self, *, resolved: Resolved | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolved = cast("Resolved", resolved)  # an XComArg is resolved before run

    def run(self, context: Context) -> Checked:
        from airmlops_core.validate import flow as validate_flow

        return validate_flow.check_holdout_step(
            self.spec,
            self.run_context(context),
            self.resolved,
            tracking_uri=self.tracking_uri(),
            s3_client=self.data_store().s3_client,  # the holdout may be on S3
        )


class GateOperator(ModelOperator):
    """Floors, champion vs challenger with a confidence interval, fairness: the decision."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "resolved", "checked")

    def __init__(
        self, *, resolved: Resolved | XComArg, checked: Checked | XComArg, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        # XComArgs are resolved before run
        self.resolved = cast("Resolved", resolved)
        self.checked = cast("Checked", checked)

    def run(self, context: Context) -> Gated:
        from airmlops_core.validate import flow as validate_flow

        store = self.data_store()
        return validate_flow.gate_step(
            self.spec,
            self.run_context(context),
            self.resolved,
            self.checked,
            tracking_uri=self.tracking_uri(),
            s3_client=store.s3_client,
            store=store,
            sql_engine=self.labels_engine(),
        )

    def lineage(self, result: Gated) -> TaskLineage:
        """Read: the challenger, the champion it was compared with, and the frozen holdout."""
        from airmlops import lineage

        uri = self.mlflow_namespace_uri()
        versions = [v for v in (result["challenger"], result["champion"]) if v]
        return lineage.TaskLineage.of(
            [lineage.model_version_dataset(uri, self.model_name, v) for v in versions]
            + [lineage.data_ref_dataset(self.resolved["holdout"])]
        )


class PromoteOperator(ModelOperator):
    """Move `champion` to the challenger when the gate said so (skipped otherwise).

    Emits the champion Asset only when it promoted. If the champion moved since the gate
    compared against it, the challenger is rejected with that reason and the task fails.
    """

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "gated", "approval")

    def __init__(
        self,
        *,
        gated: Gated | XComArg,
        approval: dict[str, Any] | XComArg | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # XComArgs are resolved before run
        self.gated = cast("Gated", gated)
        self.approval = cast("dict[str, Any] | None", approval)

    def run(self, context: Context) -> Promoted:
        from airmlops_core.errors import PromotionConflict
        from airmlops_core.validate import flow as validate_flow

        if self.gated.get("shadow_wait"):
            raise AirflowSkipException(self.gated["message"])
        if not self.gated["promote"]:
            raise AirflowSkipException("the gate rejected the challenger")
        approved_by = AUTO_APPROVER
        if isinstance(self.approval, dict):
            if not human_approved(self.approval):
                raise AirflowSkipException("a reviewer rejected the challenger")
            approved_by = f"{reviewer(self.approval)} (human approval)"
        ctx = self.run_context(context)
        try:
            return validate_flow.promote_step(
                self.spec,
                ctx,
                self.gated,
                tracking_uri=self.tracking_uri(),
                approved_by=approved_by,
            )
        except PromotionConflict as exc:
            validate_flow.reject_step(
                self.spec,
                ctx,
                self.gated,
                tracking_uri=self.tracking_uri(),
                extra_reasons=[str(exc)],
            )
            raise


class RejectOperator(ModelOperator):
    """Tag the challenger `rejected` with the gate's reasons, or with the reviewer's rejection.

    Runs after `promote` (skipped or not), so a challenger the gate passed but a reviewer
    rejected is tagged too. Skipped when the challenger was promoted, or waits for its shadow
    score runs. The approval is read by
    task id, not passed as an XComArg: an approval task skips its direct downstream tasks on
    Reject, and this one must still run.
    """

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "gated")

    def __init__(
        self, *, gated: Gated | XComArg, approval_task_id: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.gated = cast("Gated", gated)  # an XComArg is resolved before run
        self.approval_task_id = approval_task_id

    def run(self, context: Context) -> Rejected:
        from airmlops_core.validate import flow as validate_flow

        extra: list[str] = []
        if self.gated.get("shadow_wait"):
            raise AirflowSkipException(f"not rejected: {self.gated['message']}")
        if self.gated["promote"]:
            from airmlops.operators.approval import DECISION_KEY

            approval = (
                context["ti"].xcom_pull(task_ids=self.approval_task_id, key=DECISION_KEY)
                if self.approval_task_id
                else None
            )
            if not isinstance(approval, dict) or human_approved(approval):
                raise AirflowSkipException("the gate promoted the challenger")
            # why: a reviewer's Reject, no answer in time, or a self-approval refused
            extra = [
                str(approval.get("reason") or f"rejected in human review by {reviewer(approval)}")
            ]
        return validate_flow.reject_step(
            self.spec,
            self.run_context(context),
            self.gated,
            tracking_uri=self.tracking_uri(),
            extra_reasons=extra,
        )


class RollbackOperator(ModelOperator):
    """Re-point `champion` at a chosen version (or previous_champion), recording who and why."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "target", "reason")

    def __init__(self, *, target: str, reason: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.target = target
        self.reason = reason

    def run(self, context: Context) -> RolledBack:
        from airmlops_core.validate import flow as validate_flow

        dag_run = context.get("dag_run")
        user = getattr(dag_run, "triggering_user_name", None) or "unknown"
        return validate_flow.rollback_step(
            self.spec,
            self.run_context(context),
            target=str(self.target),
            reason=str(self.reason),
            user=str(user),
            tracking_uri=self.tracking_uri(),
        )
