"""Slack notifiers for every DAG of the pack, made in one place.

Messages are Jinja templates rendered with the task context; they link to the Airflow run,
the task log and, where the task returned one, the MLflow run. A failed delivery is logged
and never changes the task's outcome.
"""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseNotifier

log = logging.getLogger(__name__)

SEND_TIMEOUT_S = 5

# ti.log_url is <api base_url>/dags/<dag>/runs/<run>/tasks/<task>?try_number=N
RUN_LINK = "<{{ ti.log_url.split('/tasks/')[0] }}|Airflow run {{ run_id }}>"

FAILURE_TEXT = (
    ":red_circle: *{{ dag.dag_id }}* failed at task `{{ ti.task_id }}` "
    "(try {{ ti.try_number }}).\n"
    "{% set err = exception if exception is defined else None %}"
    "{% if err %}Error: {{ err | string | truncate(400) }}\n{% endif %}"
    + RUN_LINK + " | <{{ ti.log_url }}|task log>"
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

    The provider is imported when a message is sent, not when DAGs are parsed.
    """

    template_fields = ("slack_webhook_conn_id", "text")

    def __init__(self, *, slack_webhook_conn_id: str, text: str,
                 timeout: int = SEND_TIMEOUT_S) -> None:
        super().__init__()
        self.slack_webhook_conn_id = slack_webhook_conn_id
        self.text = text
        self.timeout = timeout

    def notify(self, context: Any) -> None:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        try:
            SlackWebhookNotifier(slack_webhook_conn_id=self.slack_webhook_conn_id,
                                 text=self.text, timeout=self.timeout).notify(context)
        except Exception as exc:  # noqa: BLE001 - an alert must never change a task's outcome
            log.warning("Slack notification via connection %r not delivered: %s",
                        self.slack_webhook_conn_id, type(exc).__name__)


def failure_notifier(conn_id: str) -> SafeSlackWebhookNotifier:
    """Notifier for a task that failed for good (after its retries)."""
    return SafeSlackWebhookNotifier(slack_webhook_conn_id=conn_id, text=FAILURE_TEXT,
                                    timeout=SEND_TIMEOUT_S)


def success_notifier(conn_id: str) -> SafeSlackWebhookNotifier:
    """Notifier for the last task of a pipeline; shows the task's returned summary and links."""
    return SafeSlackWebhookNotifier(slack_webhook_conn_id=conn_id, text=SUCCESS_TEXT,
                                    timeout=SEND_TIMEOUT_S)
