"""Operators of the drift path: check -> alert (at most one message) -> signal retraining."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict, cast

from airflow.sdk import Variable
from airflow.sdk.exceptions import AirflowSkipException

from airmlops.notify import SafeSlackWebhookNotifier
from airmlops.operators.base import ModelOperator

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from airmlops.lineage import TaskLineage
    from airmlops_core.drift.flow import DriftChecked


class DriftAlerted(TypedDict):
    """Whether the alert task sent a message, and which (`DriftAlertOperator`)."""

    sent: bool
    message: str
    summary: str


class RetrainSignalled(TypedDict):
    """Why the drift Asset was emitted (`SignalRetrainOperator`)."""

    reason: str
    drifted: dict[str, str]


class DriftCheckOperator(ModelOperator):
    """Feature, prediction, label and performance drift of the champion, logged to MLflow."""

    def run(self, context: Context) -> DriftChecked:
        from airmlops_core.drift import flow as drift_flow

        return drift_flow.check_step(
            self.spec, self.run_context(context), tracking_uri=self.tracking_uri()
        )

    def lineage(self, result: DriftChecked) -> TaskLineage:
        """Read: the champion version whose scored window was checked."""
        from airmlops import lineage

        version = lineage.model_version_dataset(
            self.mlflow_namespace_uri(), self.model_name, result["version"]
        )
        return lineage.TaskLineage.of([version])


class DriftAlertOperator(ModelOperator):
    """One Slack message per model per run at most: new drift, or recovery. Repeats of the same
    drift are suppressed for the spec's cool-down (state: Variable airmlops_drift_<model>)."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "checked")

    def __init__(self, *, checked: DriftChecked | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checked = cast("DriftChecked", checked)  # an XComArg is resolved before run

    def run(self, context: Context) -> DriftAlerted:
        from airmlops_core.drift import flow as drift_flow

        key = f"airmlops_drift_{self.model_name}"
        previous = json.loads(Variable.get(key, default="{}"))
        state, message = drift_flow.alert_transition(
            previous, self.checked, cooldown_hours=self.spec.monitoring.cooldown_hours
        )
        if message:
            text = f"*{self.model_name}__drift*: {message}"
            self.log.warning(text)
            SafeSlackWebhookNotifier(
                slack_webhook_conn_id=self.spec.alerts.conn_id, text=text
            ).notify(context)
        Variable.set(key, json.dumps(state))
        return {
            "sent": message is not None,
            "message": message or "",
            "summary": self.checked["summary"],
        }


class SignalRetrainOperator(ModelOperator):
    """Emits the model's drift Asset (its outlet) when the retrain rule holds; else skipped."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "checked")

    def __init__(self, *, checked: DriftChecked | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checked = cast("DriftChecked", checked)  # an XComArg is resolved before run

    def run(self, context: Context) -> RetrainSignalled:
        from airmlops import assets
        from airmlops_core.drift import flow as drift_flow

        reason = drift_flow.retrain_reason(self.spec, self.checked)
        if reason is None:
            raise AirflowSkipException(f"retrain rule {self.spec.monitoring.retrain_on} not met")
        context["outlet_events"][assets.drifted(self.model_name)].extra = {"reason": reason}
        return {"reason": reason, "drifted": self.checked["drifted"]}
