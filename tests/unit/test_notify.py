"""Notifier templates render with a task context and never leak the webhook URL."""

from __future__ import annotations

from types import SimpleNamespace

import jinja2
import pytest

from airmlops import notify


class FakeTI(SimpleNamespace):
    def xcom_pull(self, task_ids: str) -> dict:
        return self.xcom


def render(template: str, **context: object) -> str:
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(**context)


@pytest.fixture
def context() -> dict:
    ti = FakeTI(task_id="register", try_number=1,
                log_url="http://127.0.0.1:8080/dags/m__train/runs/manual__1/tasks/register"
                        "?try_number=1",
                xcom={"summary": "m version 3 registered", "run_url": "http://mlf/#/runs/1",
                      "url": "http://mlf/#/models/m/versions/3"})
    return {"ti": ti, "dag": SimpleNamespace(dag_id="m__train"), "run_id": "manual__1"}


def test_success_text_links_airflow_and_mlflow(context: dict) -> None:
    text = render(notify.SUCCESS_TEXT, **context)
    assert "m version 3 registered" in text
    assert "<http://127.0.0.1:8080/dags/m__train/runs/manual__1|Airflow run manual__1>" in text
    assert "<http://mlf/#/runs/1|MLflow run>" in text
    assert "<http://mlf/#/models/m/versions/3|MLflow model version>" in text


def test_failure_text_names_task_and_error(context: dict) -> None:
    text = render(notify.FAILURE_TEXT, exception=ValueError("no such file x.parquet"), **context)
    assert "`register`" in text
    assert "no such file x.parquet" in text
    assert "|task log>" in text


def test_failure_text_without_exception(context: dict) -> None:
    assert "Error:" not in render(notify.FAILURE_TEXT, **context)


def test_delivery_failure_never_raises(monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    from airflow.providers.slack.notifications import slack_webhook

    def boom(self, context):
        raise ConnectionError("http://secret-webhook/services/T/B/X refused")

    monkeypatch.setattr(slack_webhook.SlackWebhookNotifier, "notify", boom)
    n = notify.failure_notifier("slack_alerts")
    n.notify({})
    assert "not delivered: ConnectionError" in caplog.text
    assert "secret-webhook" not in caplog.text
