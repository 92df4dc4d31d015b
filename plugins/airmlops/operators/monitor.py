"""Operators of the drift path: check -> alert (at most one message per source) -> signal
retraining. Each source of `monitoring.sources` (batch: the last scoring runs; online: the
model API's recorded traffic) is checked on its own and alerts on its own, naming itself."""

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

DriftChecks = dict[str, "DriftChecked"]  # by source: batch, online


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
    """Feature, prediction, label and performance drift of the champion on each source of
    `monitoring.sources`, logged to MLflow; scored runs, labels and live records are read
    through the data layer (local or S3)."""

    def run(self, context: Context) -> DriftChecks:
        from airmlops_core.drift import flow as drift_flow

        store = self.data_store()
        out: DriftChecks = {}
        for source in self.spec.monitoring.sources:
            checked = drift_flow.check_step(
                self.spec,
                self.run_context(context),
                tracking_uri=self.tracking_uri(),
                store=store,
                sql_engine=self.labels_engine() if source == "batch" else None,
                source=source,
            )
            for note in checked.get("notes", []):
                self.log.warning("%s: %s", source, note)
            out[source] = checked
        return out

    def lineage(self, result: DriftChecked) -> TaskLineage:
        """Read: the champion version whose scored window was checked."""
        from airmlops import lineage

        version = lineage.model_version_dataset(
            self.mlflow_namespace_uri(), self.model_name, result["version"]
        )
        return lineage.TaskLineage.of([version])


class DriftAlertOperator(ModelOperator):
    """One Slack message per model, source and run at most: new drift, or recovery, naming the
    source. Repeats of the same drift are suppressed for the spec's cool-down (state: Variable
    airmlops_drift_<model>, airmlops_drift_<model>__online)."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "checked")

    def __init__(self, *, checked: DriftChecks | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checked = cast("DriftChecks", checked)  # an XComArg is resolved before run

    def run(self, context: Context) -> DriftAlerted:
        from airmlops_core.drift import flow as drift_flow

        sent = []
        for source, checked in self.checked.items():
            key = drift_flow.state_key(self.model_name, source)
            previous = json.loads(Variable.get(key, default="{}"))
            state, message = drift_flow.alert_transition(
                previous, checked, cooldown_hours=self.spec.monitoring.cooldown_hours
            )
            if message:
                text = f"*{self.model_name}__drift*: {message}"
                self.log.warning(text)
                SafeSlackWebhookNotifier(
                    slack_webhook_conn_id=self.spec.alerts.conn_id, text=text
                ).notify(context)
                sent.append(message)
            Variable.set(key, json.dumps(state))
        return {
            "sent": bool(sent),
            "message": "\n\n".join(sent),
            "summary": "; ".join(f"{s}: {c['summary']}" for s, c in self.checked.items()),
        }


class SignalRetrainOperator(ModelOperator):
    """Emits the model's drift Asset (its outlet) when the retrain rule holds; else skipped."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "checked")

    def __init__(self, *, checked: DriftChecks | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.checked = cast("DriftChecks", checked)  # an XComArg is resolved before run

    def run(self, context: Context) -> RetrainSignalled:
        from airmlops import assets
        from airmlops_core.drift import flow as drift_flow

        reasons, drifted = [], {}
        for source, checked in self.checked.items():
            why = drift_flow.retrain_reason(self.spec, checked)
            if why is not None:  # the batch reason as before; another source names itself
                reasons.append(why if source == "batch" else f"{source}: {why}")
                drifted.update({f"{source}: {c}": e for c, e in checked["drifted"].items()})
        if not reasons:
            raise AirflowSkipException(f"retrain rule {self.spec.monitoring.retrain_on} not met")
        reason = " | ".join(reasons)
        context["outlet_events"][assets.drifted(self.model_name)].extra = {"reason": reason}
        return {"reason": reason, "drifted": drifted}
