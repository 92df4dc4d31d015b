"""Notifier templates render with a task context and never leak the webhook URL."""

from __future__ import annotations

import logging
import time
from types import SimpleNamespace

import jinja2
import pytest

from airmlops import notify
from airmlops_core.io.store import Store


class FakeTI(SimpleNamespace):
    def xcom_pull(self, task_ids: str) -> dict:
        return self.xcom


def render(template: str, **context: object) -> str:
    env = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined)
    return env.from_string(template).render(**context)


@pytest.fixture
def context() -> dict:
    ti = FakeTI(
        task_id="register",
        try_number=1,
        log_url="http://127.0.0.1:8080/dags/m__train/runs/manual__1/tasks/register?try_number=1",
        xcom={
            "summary": "m version 3 registered",
            "run_url": "http://mlf/#/runs/1",
            "url": "http://mlf/#/models/m/versions/3",
        },
    )
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


SECRET_PATH = "/services/T0SECRET/B0SECRET/xoxsecretpart"


@pytest.fixture
def slack_conn(receiver, monkeypatch: pytest.MonkeyPatch, tmp_path) -> str:
    """A slack webhook connection (from the environment) pointing at the local receiver."""
    import json

    url = receiver.url + SECRET_PATH
    monkeypatch.setenv(
        "AIRFLOW_CONN_SLACK_TEST", json.dumps({"conn_type": "slackwebhook", "password": url})
    )
    monkeypatch.setenv("AIRMLOPS_ALERT_LOG", str(tmp_path / "alerts" / "undelivered"))
    monkeypatch.setattr(notify, "BACKOFF_S", 0.05)
    return "slack_test"


def send(conn_id: str, timeout: int = 1) -> float:
    n = notify.SafeSlackWebhookNotifier(
        slack_webhook_conn_id=conn_id, text="model x failed", timeout=timeout
    )
    ti = FakeTI(dag_id="m__train", task_id="train")
    start = time.monotonic()
    n.notify({"ti": ti, "run_id": "manual__1"})  # never raises
    return time.monotonic() - start


def test_delivered_once_when_slack_answers(slack_conn, receiver) -> None:
    from airmlops_core import alert_log
    from airmlops_dev.webhook_receiver import read_messages

    send(slack_conn)
    [message] = read_messages(receiver.out)
    assert message["body"]["text"] == "model x failed"
    assert alert_log.undelivered(Store()) == []


@pytest.mark.parametrize("mode", ["error500", "ratelimit429", "hang"])
def test_broken_slack_never_fails_or_hangs_and_is_recorded(
    slack_conn, receiver, caplog, mode: str
) -> None:
    from airmlops_core import alert_log
    from airmlops_dev.webhook_receiver import read_messages

    receiver.mode = mode
    caplog.set_level(logging.DEBUG)
    elapsed = send(slack_conn, timeout=1)
    attempts = notify.SEND_RETRIES + 1
    # bounded: each attempt times out after 1 s, plus 0.05 s + 0.1 s of backoff
    assert elapsed < attempts * 1 + 0.15 + 2.0, elapsed
    assert len(read_messages(receiver.out)) == attempts  # every attempt reached "Slack"
    [entry] = alert_log.undelivered(Store())
    assert entry["conn_id"] == slack_conn
    assert (entry["dag_id"], entry["run_id"], entry["task_id"]) == (
        "m__train",
        "manual__1",
        "train",
    )
    assert entry["attempts"] == attempts
    assert entry["error"]
    assert f"attempt {attempts} of {attempts}" in caplog.text
    # everything the sending side logged (the in-process receiver's access log is Slack's side)
    sender = [r.getMessage() for r in caplog.records if "webhook_receiver" not in r.name]
    [recorded] = Store().list_files(alert_log.uri())
    logged = "\n".join(sender) + Store().read_bytes(recorded).decode()
    assert "SECRET" not in logged
    assert "xoxsecretpart" not in logged


@pytest.mark.integration  # a real S3 server (SeaweedFS)
def test_undelivered_alerts_on_s3_are_seen_from_another_host(
    monkeypatch: pytest.MonkeyPatch, s3
) -> None:
    """Two workers write their own entries under one s3:// prefix; the reader (the health
    probe, elsewhere) lists them all, oldest first, and `since` filters by time."""
    import datetime as dt

    from airmlops_core import alert_log

    monkeypatch.setenv("AIRMLOPS_ALERT_LOG", f"s3://{s3.bucket}/state/alerts")
    store = Store(client=s3.client)
    first = alert_log.record_undelivered(store, conn_id="slack_a", error="Timeout", dag_id="a")
    second = alert_log.record_undelivered(store, conn_id="slack_b", error="HTTP 500", dag_id="b")
    got = alert_log.undelivered(store)
    assert sorted(got, key=lambda e: e["dag_id"]) == [first, second]
    assert [e["at"] for e in got] == sorted(e["at"] for e in got)
    assert len(store.list_files(f"s3://{s3.bucket}/state/alerts")) == 2
    later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2)
    assert alert_log.undelivered(store, later) == []
