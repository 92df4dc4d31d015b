"""The release workflow's caller: `python -m airmlops_dev.deploy_trigger`.

Against a stand-in of Airflow's REST API in a thread (the real API server runs only in the
integration stack): it checks the calls the script makes, in order, with the bodies Airflow 3
expects (``POST /auth/token``, then the DAG, then ``POST .../dagRuns`` with
``"logical_date": null`` and a bearer token).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from airmlops_dev import deploy_trigger
from airmlops_dev.deploy_trigger import TriggerError, build_request

PASSWORD = "s3cret-not-in-output"
TOKEN = "jwt-for-test"


class FakeAirflow(ThreadingHTTPServer):
    """Answers the three calls the trigger makes; records every request."""

    def __init__(self, dags: set[str]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.dags = dags
        self.calls: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: FakeAirflow

    def log_message(self, *args: object) -> None:
        pass

    def _answer(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _record(self) -> dict[str, Any]:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        call = {
            "method": self.command,
            "path": self.path,
            "auth": self.headers.get("Authorization"),
            "body": body,
        }
        self.server.calls.append(call)
        return call

    def do_GET(self) -> None:
        call = self._record()
        dag_id = call["path"].removeprefix("/api/v2/dags/")
        if call["auth"] != f"Bearer {TOKEN}":
            self._answer(401, {"detail": "Not authenticated"})
        elif dag_id in self.server.dags:
            self._answer(200, {"dag_id": dag_id, "is_paused": False})
        else:
            self._answer(404, {"detail": f"The Dag with ID: `{dag_id}` was not found"})

    def do_POST(self) -> None:
        call = self._record()
        if call["path"] == "/auth/token":
            self._answer(201, {"access_token": TOKEN})
        elif call["auth"] != f"Bearer {TOKEN}":
            self._answer(401, {"detail": "Not authenticated"})
        else:
            run_id = (call["body"] or {}).get("dag_run_id") or "manual__2026-01-01T00:00:00+00:00"
            self._answer(200, {"dag_run_id": run_id, "state": "queued"})


@pytest.fixture
def fake_airflow(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAirflow]:
    server = FakeAirflow({"customer_churn__deploy"})
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("AIRFLOW_URL", server.url)
    monkeypatch.setenv("AIRFLOW_USER", "release-bot")
    monkeypatch.setenv("AIRFLOW_PASSWORD", PASSWORD)
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def test_trigger_logs_in_then_starts_the_deploy_run_with_its_conf(
    fake_airflow: FakeAirflow, capsys: pytest.CaptureFixture[str]
) -> None:
    code = deploy_trigger.main(
        [
            "customer_churn",
            "--source-version",
            "Champion",
            "--target-environment",
            "production",
            "--requested-by",
            "octocat",
            "--run-id",
            "release__123_1",
        ]
    )
    out = capsys.readouterr()
    assert code == 0, out.err
    login, dag, run = fake_airflow.calls
    assert (login["method"], login["path"]) == ("POST", "/auth/token")
    assert login["body"] == {"username": "release-bot", "password": PASSWORD}
    assert (dag["method"], dag["path"]) == ("GET", "/api/v2/dags/customer_churn__deploy")
    assert (run["method"], run["path"]) == ("POST", "/api/v2/dags/customer_churn__deploy/dagRuns")
    assert run["auth"] == f"Bearer {TOKEN}"
    assert run["body"] == {
        "logical_date": None,
        "conf": {
            "source_version": "champion",
            "target_environment": "production",
            "requested_by": "octocat",
        },
        "dag_run_id": "release__123_1",
    }
    assert "release__123_1" in out.out
    assert PASSWORD not in out.out + out.err


def test_a_model_without_a_deploy_dag_fails_naming_it(
    fake_airflow: FakeAirflow, capsys: pytest.CaptureFixture[str]
) -> None:
    code = deploy_trigger.main(["flight_delay", "--target-environment", "staging"])
    err = capsys.readouterr().err
    assert code == 1
    assert "flight_delay__deploy is not a DAG" in err
    assert not [c for c in fake_airflow.calls if c["path"].endswith("/dagRuns")]


def test_missing_settings_fail_before_any_call(
    fake_airflow: FakeAirflow, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("AIRFLOW_PASSWORD")
    assert deploy_trigger.main(["customer_churn", "--target-environment", "staging"]) == 2
    assert "AIRFLOW_PASSWORD" in capsys.readouterr().err
    assert fake_airflow.calls == []


@pytest.mark.parametrize(
    ("model", "version", "env", "named"),
    [
        ("Customer-Churn", "champion", "production", "model"),
        ("customer_churn/../x", "champion", "production", "model"),
        ("customer_churn", "latest", "production", "source version"),
        ("customer_churn", "0", "production", "source version"),
        ("customer_churn", "-3", "production", "source version"),
        ("customer_churn", "champion", "prod; rm -rf /", "target environment"),
        ("customer_churn", "champion", "", "target environment"),
    ],
)
def test_bad_inputs_are_refused_naming_the_input(
    model: str, version: str, env: str, named: str
) -> None:
    with pytest.raises(TriggerError, match=f"^{named}:"):
        build_request(model, version, env, "octocat")


def test_a_version_number_is_passed_as_its_number() -> None:
    request = build_request("customer_churn", " 007 ", "staging", "octocat")
    assert request.conf()["source_version"] == "7"
    assert request.dag_id == "customer_churn__deploy"
