"""The health probe: model API and MLflow, one alert per outage and one per recovery."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict

from airflow.sdk import BaseOperator, Variable

from airmlops.hooks.mlflow_hook import MlflowHook
from airmlops.hooks.model_api_hook import ModelApiHook
from airmlops.notify import SafeSlackWebhookNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context

STATE_VARIABLE = "airmlops_health_state"
DEFAULT_API_URL = "http://127.0.0.1:5001"


class Probed(TypedDict):
    """What a probe found (`HealthProbeOperator`)."""

    down: list[str]
    starting: list[str]
    idle: list[str]
    messages: list[str]
    undelivered_alerts: int
    summary: str


class HealthProbeOperator(BaseOperator):
    """Probe every model's golden request and MLflow; alert on state changes only.

    The model API's URL and token come from the connection `model_api_conn_id` (host and
    password, see ModelApiHook); `api_url` overrides the URL, and without a host in the
    connection `AIRMLOPS_MODEL_API_URL` (else 127.0.0.1:5001) is used. A model without a
    champion, or one the API has not loaded within `grace_s` seconds (default
    airmlops_core.serve.health.GRACE_S) of its start or of the champion's promotion, is no
    outage. The last state lives in the Airflow Variable `airmlops_health_state`, so repeated
    probes of a target that stays down send nothing more. Undelivered alerts recorded since the
    last probe (airmlops_core.alert_log) are reported in the task's result and log.
    """

    template_fields: Sequence[str] = ("models",)

    def __init__(
        self,
        *,
        models: list[str],
        conn_id: str = "slack_alerts",
        model_api_conn_id: str = ModelApiHook.default_conn_name,
        api_url: str | None = None,
        grace_s: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.models = models
        self.conn_id = conn_id
        self.model_api_conn_id = model_api_conn_id
        self.api_url = api_url
        self.grace_s = grace_s

    def execute(self, context: Context) -> Probed:
        from airmlops.hooks.data_store import alert_log_store
        from airmlops_core import alert_log, settings
        from airmlops_core.serve import health

        api = ModelApiHook(self.model_api_conn_id)
        api_url = self.api_url or api.url or settings.current().model_api_url or DEFAULT_API_URL
        mlflow_url = MlflowHook().configure()
        previous = json.loads(Variable.get(STATE_VARIABLE, default="{}"))
        models = list(self.models)
        seen = health.probe(api_url, mlflow_url, models, token=api.token)
        state, messages, checks = health.decide(
            previous.get("targets", {}),
            seen,
            models,
            dt.datetime.now(dt.UTC),
            health.GRACE_S if self.grace_s is None else self.grace_s,
        )
        for check in checks:
            if check.status in ("starting", "idle"):
                self.log.info("%s %s: %s", check.target, check.status, check.detail)
        for text in messages:
            self.log.warning(text)
            SafeSlackWebhookNotifier(slack_webhook_conn_id=self.conn_id, text=text).notify(context)
        since = previous.get("probed_at")
        undelivered = alert_log.undelivered(
            alert_log_store(), dt.datetime.fromisoformat(since) if since else None
        )
        if undelivered:
            self.log.warning(
                "%d alert(s) could not be delivered since %s: %s",
                len(undelivered),
                since or "the start",
                undelivered[-5:],
            )
        now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        Variable.set(STATE_VARIABLE, json.dumps({"targets": state, "probed_at": now}))
        down = [c.target for c in checks if not c.ok]
        return {
            "down": down,
            "starting": [c.target for c in checks if c.status == "starting"],
            "idle": [c.target for c in checks if c.status == "idle"],
            "messages": messages,
            "undelivered_alerts": len(undelivered),
            "summary": "all healthy" if not down else "down: " + ", ".join(down),
        }
