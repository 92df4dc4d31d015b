"""Human approval of a promotion, asked only when the gate would promote."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowSkipException


class PromotionApprovalOperator(ApprovalOperator):
    """Airflow's ApprovalOperator, skipped when the gate already rejected the challenger.

    The reviewer sees the gate's message (decision, interval, fairness gaps, data check) as
    the task's body in the Airflow UI, and answers Approve or Reject there.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "gated")

    def __init__(self, *, gated: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.gated = gated

    def execute(self, context: Any) -> Any:
        if not self.gated["promote"]:
            raise AirflowSkipException("the gate rejected the challenger: nothing to approve")
        return super().execute(context)
