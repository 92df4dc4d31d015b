"""Human approval of a promotion, asked only when the gate would promote."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowSkipException

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from airmlops_core.validate.flow import Gated, Resolved
    from airmlops_core.validate.review import Review

DECISION_KEY = "review"


class PromotionApprovalOperator(ApprovalOperator):
    """Airflow's ApprovalOperator, skipped when the gate already rejected the challenger.

    The reviewer sees the gate's message (decision, interval, fairness gaps, data check) as
    the task's body in the Airflow UI, and answers Approve or Reject there. No answer within
    `timeout_hours` resolves to Reject (Airflow applies the default when the response timeout
    passes), so a forgotten review cannot hold the model's later validations forever. With
    `reviewers`, only they are assigned (Airflow refuses anyone else's answer) and the user who
    started the challenger's training run is left out; an Approve by that user is taken as a
    rejection in any case. The decision and its reason go to XCom under DECISION_KEY.
    """

    template_fields: Sequence[str] = (*ApprovalOperator.template_fields, "gated", "resolved")

    def __init__(
        self,
        *,
        gated: Gated | XComArg,
        resolved: Resolved | XComArg,
        timeout_hours: float,
        reviewers: Sequence[str] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(
            defaults=ApprovalOperator.REJECT,
            response_timeout=timedelta(hours=timeout_hours),
            **kwargs,
        )
        # XComArgs are resolved before execute
        self.gated = cast("Gated", gated)
        self.resolved = cast("Resolved", resolved)
        self.timeout_hours = timeout_hours
        self.reviewers = list(reviewers)

    @property
    def trainer(self) -> str | None:
        """Who started the challenger's training run (its version tag), if a user did."""
        return self.resolved.get("trained_by") or None

    def execute(self, context: Context) -> Any:
        from airflow.sdk.execution_time.hitl import HITLUser

        from airmlops_core.validate import review

        if self.gated.get("shadow_wait"):
            raise AirflowSkipException(f"nothing to approve yet: {self.gated['message']}")
        if not self.gated["promote"]:
            raise AirflowSkipException("the gate rejected the challenger: nothing to approve")
        refused = review.no_reviewer_left(self.reviewers, self.trainer)
        if refused is not None:  # nobody may answer: decided without asking
            self._record(context, refused)
            self.skip(ti=context["ti"], tasks=self._direct_downstream(context))
            return {"chosen_options": [review.REJECT], "responded_by_user": None}
        eligible = review.eligible_reviewers(self.reviewers, self.trainer)
        self.assigned_users = [HITLUser(id=r, name=r) for r in eligible] or None
        return super().execute(context)

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        from airmlops_core.validate import review

        if "error" not in event:
            decided = review.decide(
                list(event.get("chosen_options") or []),
                event.get("responded_by_user"),
                trainer=self.trainer,
                timed_out=bool(event.get("timedout")),
                timeout_hours=self.timeout_hours,
            )
            # On Reject the base class skips the downstream tasks, so its return value cannot
            # carry the decision to `reject`: record it first, under its own key.
            self._record(context, decided, event.get("responded_by_user"))
            if not decided["approved"]:
                self.log.info("not approved: %s", decided["reason"])
                event = {**event, "chosen_options": [review.REJECT]}
        return super().execute_complete(context, event)

    def _record(self, context: Context, decided: Review, user: Any = None) -> None:
        from airmlops_core.validate import review

        context["ti"].xcom_push(
            key=DECISION_KEY,
            value={
                "chosen_options": [review.APPROVE if decided["approved"] else review.REJECT],
                "responded_by_user": dict(user or {}),
                **decided,
            },
        )

    def _direct_downstream(self, context: Context) -> list[Any]:
        return [
            t for t in context["task"].get_direct_relatives(upstream=False) if not t.is_teardown
        ]
