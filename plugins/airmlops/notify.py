"""Slack notifiers for every DAG of the pack, made in one place.

Messages are Jinja templates rendered with the task context; they link to the Airflow run,
the task log and, where the task returned one, the MLflow run. A failed delivery is retried a
few times within a bounded time, logged, recorded durably, and never changes the task's outcome.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from airflow.sdk import BaseNotifier

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.definitions.deadline import DeadlineAlert

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5  # per attempt
SEND_RETRIES = 2  # after the first attempt; worst case 3 x 5 s + 1 s + 2 s of backoff
BACKOFF_S = 1.0

# ti.log_url is <api base_url>/dags/<dag>/runs/<run>/tasks/<task>?try_number=N
RUN_LINK = "<{{ ti.log_url.split('/tasks/')[0] }}|Airflow run {{ run_id }}>"

FAILURE_TEXT = (
    ":red_circle: *{{ dag.dag_id }}* failed at task `{{ ti.task_id }}` "
    "(try {{ ti.try_number }}).\n"
    "{% set err = exception if exception is defined else None %}"
    "{% if err %}Error: {{ err | string | truncate(400) }}\n{% endif %}"
    + RUN_LINK
    + " | <{{ ti.log_url }}|task log>"
)

SUCCESS_TEXT = (
    ":large_green_circle: *{{ dag.dag_id }}* succeeded.\n"
    "{% set out = ti.xcom_pull(task_ids=ti.task_id) %}"
    "{% if out and out.get('summary') %}{{ out['summary'] }}\n{% endif %}"
    + RUN_LINK
    + "{% if out and out.get('run_url') %} | <{{ out['run_url'] }}|MLflow run>{% endif %}"
    "{% if out and out.get('url') %} | <{{ out['url'] }}|MLflow model version>{% endif %}"
)


class SafeSlackWebhookNotifier(BaseNotifier):
    """The Slack provider's SlackWebhookNotifier, bounded in time, never failing the task.

    Each attempt times out after `timeout` seconds; failed attempts are retried `retries` times
    with exponential backoff (1 s, 2 s, ...). An alert that still could not be delivered is
    logged (connection id and error type only: never the URL or token) and recorded in the
    durable alert log (airmlops_core.alert_log) that the health-probe DAG reports.
    The provider is imported when a message is sent, not when DAGs are parsed.
    """

    template_fields = ("slack_webhook_conn_id", "text")

    def __init__(
        self,
        *,
        slack_webhook_conn_id: str,
        text: str,
        timeout: int = SEND_TIMEOUT_S,
        retries: int = SEND_RETRIES,
    ) -> None:
        super().__init__()
        self.slack_webhook_conn_id = slack_webhook_conn_id
        self.text = text
        self.timeout = timeout
        self.retries = retries

    def notify(self, context: Context) -> None:
        error = ""
        for attempt in range(1, self.retries + 2):
            try:
                self._send(context)
                return
            except Exception as exc:  # noqa: BLE001 - an alert must never change a task's outcome
                error = type(exc).__name__
                log.warning(
                    "Slack notification via connection %r not delivered (attempt %d of %d): %s",
                    self.slack_webhook_conn_id,
                    attempt,
                    self.retries + 1,
                    error,
                )
            if attempt <= self.retries:
                time.sleep(BACKOFF_S * 2 ** (attempt - 1))
        self._record(context, error)

    def _send(self, context: Context) -> None:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        SlackWebhookNotifier(
            slack_webhook_conn_id=self.slack_webhook_conn_id, text=self.text, timeout=self.timeout
        ).notify(context)

    def _record(self, context: Context, error: str) -> None:
        from airmlops.hooks.data_store import alert_log_store
        from airmlops_core import alert_log
        from airmlops_core.errors import DataError

        ti = context.get("ti")
        try:
            alert_log.record_undelivered(
                alert_log_store(),
                conn_id=self.slack_webhook_conn_id,
                error=error,
                attempts=self.retries + 1,
                dag_id=str(getattr(ti, "dag_id", "")),
                run_id=str(context.get("run_id", "")),
                task_id=str(getattr(ti, "task_id", "")),
            )
        except (OSError, DataError) as exc:  # never fail the task over its alert
            log.error("undelivered alert could not be recorded: %s", exc)


def failure_notifier(conn_id: str) -> SafeSlackWebhookNotifier:
    """Notifier for a task that failed for good (after its retries)."""
    return SafeSlackWebhookNotifier(
        slack_webhook_conn_id=conn_id, text=FAILURE_TEXT, timeout=SEND_TIMEOUT_S
    )


def success_notifier(conn_id: str) -> SafeSlackWebhookNotifier:
    """Notifier for the last task of a pipeline; shows the task's returned summary and links."""
    return SafeSlackWebhookNotifier(
        slack_webhook_conn_id=conn_id, text=SUCCESS_TEXT, timeout=SEND_TIMEOUT_S
    )


DEADLINE_TEXT = (
    ":alarm_clock: *{dag_id}* has not finished within {minutes:g} minutes of being queued "
    "(deadline missed). Check the run in Airflow."
)


def deadline_alert(dag_id: str, minutes: float, conn_id: str) -> DeadlineAlert:
    """An Airflow deadline alert: one Slack message when a run of `dag_id` is still not done
    `minutes` after it was queued. It runs in the triggerer (the provider's async notifier),
    apart from any task, so it cannot change a task's outcome."""
    import datetime as dt

    from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

    # exported by airflow.sdk at run time, but missing from its __init__.pyi stub
    from airflow.sdk import (  # type: ignore[attr-defined]
        AsyncCallback,
        DeadlineAlert,
        DeadlineReference,
    )

    return DeadlineAlert(
        reference=DeadlineReference.DAGRUN_QUEUED_AT,
        interval=dt.timedelta(minutes=minutes),
        callback=AsyncCallback(
            SlackWebhookNotifier,
            kwargs={
                "slack_webhook_conn_id": conn_id,
                "text": DEADLINE_TEXT.format(dag_id=dag_id, minutes=minutes),
            },
        ),
    )
