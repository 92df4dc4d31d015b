"""The local stack itself: health, idempotent start, the Slack stand-in, settings, auth."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests

from airmlops import preload
from airmlops_core.serve.auth import bearer
from airmlops_dev import localstack
from airmlops_dev.airflow_api import AirflowAPIError, AirflowClient
from airmlops_dev.stack_config import ADMIN_USER, COMPONENTS, WEBHOOK_PATH, StackConfig
from airmlops_dev.stack_env import airflow_env
from airmlops_dev.stack_health import format_status, status
from airmlops_dev.stack_pids import read_pid, stack_processes
from airmlops_dev.stack_secrets import (
    credentials,
    mlflow_credentials,
    model_api_token,
    read_secrets,
)
from airmlops_dev.webhook_receiver import read_messages

pytestmark = pytest.mark.integration

SMOKE_DAG_ID = "airmlops_smoke"  # written by conftest.py into an extra DAG bundle
USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:[^@\s/]+@", re.I)


def _messages_containing(cfg: StackConfig, text: str, timeout: float = 30) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in read_messages(cfg.messages_file) if text in json.dumps(m["body"])]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def test_all_components_healthy(stack: StackConfig) -> None:
    rows = status(stack)
    assert [r.component for r in rows] == list(COMPONENTS)
    assert all(r.alive and r.healthy for r in rows), format_status(rows)

    health = requests.get(f"{stack.airflow_url}/api/v2/monitor/health", timeout=10).json()
    for component in ("metadatabase", "scheduler", "dag_processor", "triggerer"):
        assert health[component]["status"] == "healthy", health
    assert requests.get(f"{stack.mlflow_url}/health", timeout=10).status_code == 200
    assert requests.get(f"{stack.receiver_url}/health", timeout=10).status_code == 200


def test_the_scheduler_forks_tasks_with_every_preloaded_module(stack: StackConfig) -> None:
    log = stack.log_file("scheduler").read_text()
    count = len(preload.MODULES)
    assert f"airmlops.preload: {count} of {count} modules imported" in log, log[:2000]


def test_up_again_is_a_fast_noop(stack: StackConfig) -> None:
    before = {r.component: r.pid for r in status(stack)}
    started = time.monotonic()
    rows = localstack.up(stack)
    elapsed = time.monotonic() - started
    assert {r.component: r.pid for r in rows} == before
    assert all(r.healthy for r in rows)
    assert elapsed < 5, f"up() on a running stack took {elapsed:.1f}s"


def test_status_table_lists_every_component(stack: StackConfig) -> None:
    table = format_status(status(stack))
    for name in COMPONENTS:
        assert name in table
    assert stack.airflow_url in table
    assert stack.mlflow_url in table


def test_every_process_carries_the_stack_marker(stack: StackConfig) -> None:
    pids = stack_processes(stack)
    component_pids = {r.pid for r in status(stack)}
    assert component_pids <= set(pids)
    # LocalExecutor workers, uvicorn children and the triggerer's runner are found too.
    assert len(pids) > len(component_pids)


def test_receiver_records_posts_and_survives_bad_input(stack: StackConfig) -> None:
    marker = f"stack-test-{time.time_ns()}"
    resp = requests.post(stack.webhook_url, json={"text": marker}, timeout=10)
    assert (resp.status_code, resp.text) == (200, "ok")
    raw = requests.post(f"{stack.receiver_url}/other", data=b"\xff not json", timeout=10)
    assert raw.status_code == 200

    found = _messages_containing(stack, marker, timeout=5)
    assert len(found) == 1
    assert found[0]["path"] == WEBHOOK_PATH
    assert found[0]["body"] == {"text": marker}
    listed = requests.get(f"{stack.receiver_url}/messages", timeout=10).json()
    assert any(m["body"] == {"text": marker} for m in listed)
    assert requests.get(f"{stack.receiver_url}/health", timeout=10).status_code == 200


def test_settings_file_was_loaded(stack: StackConfig, airflow_api: AirflowClient) -> None:
    pools = {p["name"]: p for p in airflow_api.get("/api/v2/pools")["pools"]}
    assert pools["ml_training"]["slots"] == 2
    assert pools["ml_scoring"]["slots"] == 2
    variable = airflow_api.get("/api/v2/variables/airmlops_environment")
    assert variable["value"] == "local"
    conn = airflow_api.get("/api/v2/connections/slack_alerts")
    assert conn["conn_type"] == "slackwebhook"
    conn = airflow_api.get("/api/v2/connections/mlflow_default")
    assert (conn["conn_type"], conn["host"]) == ("http", "http://127.0.0.1:5000")


def test_settings_loader_upserts(
    stack: StackConfig, airflow_api: AirflowClient, tmp_path: Path
) -> None:
    settings = tmp_path / "settings.yaml"
    python = str(stack.bin_dir / "python")

    def load(slots: int, value: str) -> None:
        settings.write_text(
            "airflow:\n"
            "  pools:\n"
            f"    - {{pool_name: airmlops_test_pool, pool_slot: {slots}, pool_description: t}}\n"
            "  variables:\n"
            f"    - {{variable_name: airmlops_test_var, variable_value: {value}}}\n"
            "  connections:\n"
            "    - {conn_id: airmlops_test_conn, conn_type: http, conn_host: example.org,\n"
            f"       conn_password: s3cret-{value}, conn_extra: {{timeout: {slots}}}}}\n"
        )
        result = subprocess.run(
            [python, "-m", "airmlops_dev.settings_loader", str(settings)],
            env=airflow_env(stack),
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "s3cret" not in result.stdout + result.stderr  # secrets are never logged

    load(1, "first")
    load(3, "second")
    pools = airflow_api.get("/api/v2/pools")["pools"]
    mine = [p for p in pools if p["name"] == "airmlops_test_pool"]
    assert [p["slots"] for p in mine] == [3]
    assert airflow_api.get("/api/v2/variables/airmlops_test_var")["value"] == "second"
    conn = airflow_api.get("/api/v2/connections/airmlops_test_conn")
    assert conn["host"] == "example.org"
    assert json.loads(conn["extra"]) == {"timeout": 3}
    conns = airflow_api.get("/api/v2/connections", params={"limit": 100})["connections"]
    assert [c["connection_id"] for c in conns].count("airmlops_test_conn") == 1


def test_settings_loader_writes_through_the_rest_api(
    stack: StackConfig, airflow_api: AirflowClient, tmp_path: Path
) -> None:
    """The managed-Airflow path: bulk REST endpoints, credentials from the environment."""
    settings = tmp_path / "settings.yaml"
    _, (user, password) = credentials(stack)
    # No Airflow configuration at all: the metadata database is out of reach, as on managed Airflow.
    base = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    base["AIRFLOW_HOME"] = str(tmp_path / "no_airflow_home")

    def load(slots: int, value: str, api_password: str = password) -> subprocess.CompletedProcess:
        settings.write_text(
            "airflow:\n"
            "  pools:\n"
            f"    - {{pool_name: airmlops_rest_pool, pool_slot: {slots}, pool_description: r}}\n"
            "  variables:\n"
            f"    - {{variable_name: airmlops_rest_var, variable_value: {value}}}\n"
            "  connections:\n"
            "    - {conn_id: airmlops_rest_conn, conn_type: http, conn_host: example.net,\n"
            f"       conn_password: s3cret-{value}, conn_extra: {{timeout: {slots}}}}}\n"
        )
        env = {**base, "AIRFLOW_API_USER": user, "AIRFLOW_API_PASSWORD": api_password}
        command = [str(stack.bin_dir / "python"), "-m", "airmlops_dev.settings_loader"]
        return subprocess.run(
            [*command, str(settings), "--api-url", stack.airflow_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    for slots, value in ((1, "first"), (4, "second")):
        result = load(slots, value)
        assert result.returncode == 0, result.stderr[-3000:]
        assert "s3cret" not in result.stdout + result.stderr
    pools = airflow_api.get("/api/v2/pools")["pools"]
    assert [p["slots"] for p in pools if p["name"] == "airmlops_rest_pool"] == [4]
    assert airflow_api.get("/api/v2/variables/airmlops_rest_var")["value"] == "second"
    conn = airflow_api.get("/api/v2/connections/airmlops_rest_conn")
    assert (conn["host"], json.loads(conn["extra"])) == ("example.net", {"timeout": 4})

    refused = load(9, "third", api_password="wrong-password")
    assert refused.returncode == 1
    assert "cannot log in" in refused.stderr
    assert "s3cret" not in refused.stderr
    assert airflow_api.get("/api/v2/variables/airmlops_rest_var")["value"] == "second"


def test_api_requires_authentication(stack: StackConfig) -> None:
    assert requests.get(f"{stack.airflow_url}/api/v2/dags", timeout=10).status_code == 401
    bad = AirflowClient(stack.airflow_url, "admin", "wrong-password")
    with pytest.raises(AirflowAPIError) as excinfo:
        bad.get("/api/v2/dags")
    assert excinfo.value.status == 401
    assert "/auth/token" in str(excinfo.value)


def test_secrets_are_private_and_never_logged(stack: StackConfig) -> None:
    path, (_, password) = credentials(stack)
    assert path == stack.passwords_file
    for private in (stack.secrets_file, stack.passwords_file):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600
    secret_values = [
        line.split("=", 1)[1]
        for line in stack.secrets_file.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    ]
    assert len(secret_values) == 6  # Airflow's three, the MLflow admin's password and CSRF key,
    # the model API's token
    for log_file in stack.logs_dir.glob("*.log"):
        text = log_file.read_text(errors="replace")
        for secret in [password, *secret_values]:
            assert secret not in text, f"a secret appears in {log_file}"


def test_smoke_dag_runs_and_reaches_the_receiver(
    stack: StackConfig, airflow_api: AirflowClient
) -> None:
    dag = airflow_api.wait_for_dag(SMOKE_DAG_ID, timeout=120)
    assert dag["is_paused"] is False  # DAGS_ARE_PAUSED_AT_CREATION=False
    run_id = airflow_api.trigger(SMOKE_DAG_ID, conf={"source": "test_stack"})
    state = airflow_api.wait(SMOKE_DAG_ID, run_id, timeout=300)
    tis = {t["task_id"]: t for t in airflow_api.task_instances(SMOKE_DAG_ID, run_id)}
    assert state == "success", {k: t["state"] for k, t in tis.items()}
    assert {k: t["state"] for k, t in tis.items()} == {
        "check_settings": "success",
        "notify": "success",
    }
    assert tis["check_settings"]["pool"] == "ml_training"
    found = _messages_containing(stack, f"airmlops smoke test {run_id}")
    assert found, read_messages(stack.messages_file)[-5:]
    assert found[0]["path"] == WEBHOOK_PATH


def _generated_secrets(stack: StackConfig) -> list[str]:
    """Every secret the stack generated: secrets.env and the Airflow admin's password."""
    values = [*read_secrets(stack).values(), credentials(stack)[1][1]]
    assert len(values) == 7  # secrets.env (the model API token among them), the admin password
    return values


def test_no_secret_on_any_process_command_line(
    stack: StackConfig, airflow_api: AirflowClient
) -> None:
    """/proc/<pid>/cmdline is world-readable: read it for every process of the stack, the
    components and everything they spawn, sampled while a DAG run's task processes live."""
    secret_values = _generated_secrets(stack)
    seen: dict[int, list[str]] = {}

    def sample() -> None:
        for pid in stack_processes(stack):
            try:
                seen.setdefault(pid, psutil.Process(pid).cmdline())
            except psutil.NoSuchProcess:
                continue

    airflow_api.wait_for_dag(SMOKE_DAG_ID, timeout=120)
    run_id = airflow_api.trigger(SMOKE_DAG_ID, conf={"source": "cmdline"})
    deadline = time.monotonic() + 300
    while airflow_api.dag_run(SMOKE_DAG_ID, run_id)["state"] in ("queued", "running"):
        sample()
        assert time.monotonic() < deadline, "the smoke run did not finish"
        time.sleep(0.2)
    sample()
    assert len(seen) > len(COMPONENTS) + 3, seen  # workers and task processes were sampled
    for pid, argv in seen.items():
        line = " ".join(argv)
        leaked = [i for i, value in enumerate(secret_values) if value in line]
        assert not leaked, f"pid {pid} ({argv[:2]}) shows secret #{leaked} on its command line"
        assert not USERINFO.search(line), f"pid {pid} ({argv[:2]}): a URL with a password"


def test_mlflow_asks_for_credentials_and_every_component_has_them(stack: StackConfig) -> None:
    search = f"{stack.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, timeout=10).status_code == 401
    assert requests.get(search, timeout=10, auth=(ADMIN_USER, "wrong-pw-1")).status_code == 401
    creds = mlflow_credentials(stack)
    assert creds is not None
    assert requests.get(search, timeout=10, auth=creds).status_code == 200
    for component in ("model-api", "api-server", "scheduler", "dag-processor", "triggerer"):
        pid = read_pid(stack.pid_file(component))
        assert pid
        env = psutil.Process(pid).environ()
        assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == creds
        if component != "model-api":
            conn = json.loads(env["AIRFLOW_CONN_MLFLOW_DEFAULT"])
            assert (conn["login"], conn["password"]) == creds
    # the model API logged in: its registry polls succeed (no champion yet is not a failure)
    auth = bearer(model_api_token(stack))
    deadline = time.monotonic() + 60
    while True:
        body = requests.get(f"{stack.model_api_url}/status", headers=auth, timeout=10).json()
        polled = [m for m in body["models"].values() if m["last_poll"]]
        if len(polled) == len(body["models"]) > 0 or time.monotonic() > deadline:
            break
        time.sleep(1)
    assert len(polled) == len(body["models"]) > 0, body
    assert not [m for m in polled if "registry poll failed" in (m["problem"] or "")], body
    text = localstack.summary(stack)
    assert f"MLFLOW_AUTH_ADMIN_PASSWORD in {stack.secrets_file}" in text
    assert creds[1] not in text
    # MLflow took its store from MLFLOW_BACKEND_STORE_URI (not the command line)
    assert (stack.root / "mlflow" / "mlflow.db").is_file()
    assert not (stack.root / "mlflow.db").exists()


def test_the_home_and_everything_the_stack_wrote_is_owner_only(stack: StackConfig) -> None:
    assert stat.S_IMODE(stack.root.stat().st_mode) == 0o700
    paths = [stack.root, *stack.root.rglob("*")]
    for must in (
        stack.secrets_file,
        stack.passwords_file,
        stack.airflow_home / "airflow.db",
        stack.root / "mlflow" / "mlflow.db",
        stack.root / "mlflow" / "basic_auth.db",
        stack.log_file("scheduler"),
    ):
        assert must in paths, must
    loose = [
        f"{p.relative_to(stack.root)} {oct(stat.S_IMODE(p.lstat().st_mode))}"
        for p in paths
        if not p.is_symlink() and stat.S_IMODE(p.lstat().st_mode) & 0o077
    ]
    assert not loose, f"readable or writable by others: {loose}"
