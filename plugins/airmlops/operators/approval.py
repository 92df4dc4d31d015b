"""Human approval of a promotion, asked only when the gate would promote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from airmlops_core.validate.flow import Gated

DECISION_KEY = "review"


class PromotionApprovalOperator(ApprovalOperator):
    """Airflow's ApprovalOperator, skipped when the gate already rejected the challenger.

    The reviewer sees the gate's message (decision, interval, fairness gaps, data check) as
    the task's body in the Airflow UI, and answers Approve or Reject there.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "gated")

    def __init__(self, *, gated: Gated | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gated = cast("Gated", gated)  # an XComArg is resolved before execute

    def execute(self, context: Context) -> Any:
        if not self.gated["promote"]:
            raise AirflowSkipException("the gate rejected the challenger: nothing to approve")
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        # On Reject the base class skips the downstream tasks by raising, so its return value
        # never becomes an XCom: record the answer first, under its own key.
        if "error" not in event:
            context["ti"].xcom_push(
                key=DECISION_KEY,
                value={
                    "chosen_options": list(event.get("chosen_options") or []),
                    "responded_by_user": dict(event.get("responded_by_user") or {}),
                },
            )
        return super().execute_complete(context, event)
