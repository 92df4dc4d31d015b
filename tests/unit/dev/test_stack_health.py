"""Status and health of a stack whose servers are not running."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import pytest

from airmlops_dev import localstack
from airmlops_dev.ports import free_ports
from airmlops_dev.stack_config import COMPONENTS, ComponentStatus, StackConfig, StackError
from airmlops_dev.stack_health import (
    airflow_health,
    down_lines,
    format_status,
    status,
    wait_healthy,
)
from airmlops_dev.stack_pids import start_component


def _stopped_stack(home: Path) -> StackConfig:
    ports = free_ports(4)  # nothing listens there
    return StackConfig(
        home=home,
        airflow_port=ports[0],
        mlflow_port=ports[1],
        receiver_port=ports[2],
        model_api_port=ports[3],
    )


def test_status_of_a_stack_that_never_started(tmp_path: Path) -> None:
    cfg = _stopped_stack(tmp_path)
    rows = status(cfg)
    assert [r.component for r in rows] == list(cfg.components)
    assert not any(r.alive or r.healthy or r.pid for r in rows)
    assert rows[1].url == cfg.mlflow_url


def test_format_status_is_a_table() -> None:
    rows = [
        ComponentStatus("mlflow", 12, True, "http://127.0.0.1:5000", True),
        ComponentStatus("scheduler", None, False, None, False),
    ]
    assert format_status(rows).splitlines() == [
        "component  pid  alive  healthy  url",
        "mlflow     12   yes    yes      http://127.0.0.1:5000",
        "scheduler  -    no     no       -",
    ]


def test_wait_healthy_names_a_component_that_exited_and_shows_its_log(tmp_path: Path) -> None:
    cfg = _stopped_stack(tmp_path)
    cfg.logs_dir.mkdir(parents=True)
    cfg.run_dir.mkdir(parents=True)
    argv = [sys.executable, "-c", "print('port in use, giving up')"]
    start_component(cfg, "mlflow", argv, {})
    with pytest.raises(StackError, match="mlflow exited during start-up") as excinfo:
        wait_healthy(cfg, ["mlflow"], timeout=30)
    assert "port in use, giving up" in str(excinfo.value)


def test_the_stack_model_api_takes_its_token_by_environment_and_is_up_before_a_champion(
    mlflow_url: str, tmp_path: Path
) -> None:
    """The model-api component as `up` launches it, against a real MLflow with no champion."""
    import httpx
    import psutil

    from airmlops_core.serve.auth import bearer
    from airmlops_dev import process_group
    from airmlops_dev.stack_commands import commands
    from airmlops_dev.stack_secrets import model_api_token

    (api_port,) = free_ports(1)
    cfg = StackConfig(
        home=tmp_path, mlflow_port=int(mlflow_url.rsplit(":", 1)[1]), model_api_port=api_port
    )
    cfg.logs_dir.mkdir(parents=True)
    cfg.run_dir.mkdir(parents=True)
    argv, env = commands(cfg)["model-api"]
    pid = start_component(cfg, "model-api", argv, env)
    try:
        wait_healthy(cfg, ["model-api"], timeout=120)  # /health answers (503: no champion)
        token = model_api_token(cfg)
        assert not any(token in arg for arg in psutil.Process(pid).cmdline())  # not on argv
        r = httpx.get(f"{cfg.model_api_url}/health", timeout=10)
        assert (r.status_code, r.json()) == (503, {"status": "unavailable"})
        assert httpx.get(f"{cfg.model_api_url}/status", timeout=10).status_code == 401
        r = httpx.get(f"{cfg.model_api_url}/status", headers=bearer(token), timeout=10)
        assert r.status_code == 503
        assert "customer_churn" in r.json()["models"]
    finally:
        process_group.stop_group(pid, timeout=30)
    assert token not in cfg.log_file("model-api").read_text()


NOW = dt.datetime(2026, 3, 1, 12, 0, 0, tzinfo=dt.UTC)


def airflow_says(scheduler: str = "healthy", heartbeat: str | None = "2026-03-01T11:59:55+00:00"):
    """Airflow's /api/v2/monitor/health answer (as get_airflow_health builds it)."""
    return {
        "metadatabase": {"status": "healthy"},
        "scheduler": {"status": scheduler, "latest_scheduler_heartbeat": heartbeat},
        "triggerer": {"status": "healthy", "latest_triggerer_heartbeat": "2026-03-01T11:59:58"},
        "dag_processor": {
            "status": "healthy",
            "latest_dag_processor_heartbeat": "2026-03-01T11:59:57+00:00",
        },
    }


def rows_with(**down: bool) -> list[ComponentStatus]:
    """Every component alive and healthy, except those named: name (- as _) = process alive."""
    rows = []
    for i, name in enumerate(COMPONENTS):
        key = name.replace("-", "_")
        rows.append(ComponentStatus(name, 100 + i, down.get(key, True), None, key not in down))
    return rows


def test_a_hung_scheduler_is_down_with_its_last_heartbeat() -> None:
    body = airflow_says("unhealthy", "2026-03-01T11:55:50+00:00")
    [line] = down_lines(rows_with(scheduler=True), body, NOW)
    assert line.startswith("DOWN scheduler: Airflow reports it unhealthy; ")
    assert "last heartbeat 4 min 10 s ago (2026-03-01T11:55:50+00:00)" in line
    assert "no alert can be sent (the health probe runs inside Airflow)" in line


def test_a_killed_scheduler_is_down_though_its_heartbeat_is_recent() -> None:
    [line] = down_lines(rows_with(scheduler=False), airflow_says(), NOW)
    assert "DOWN scheduler: its process is not running; last heartbeat 5 s ago" in line


def test_without_the_api_server_the_jobs_heartbeats_are_unknown() -> None:
    lines = down_lines(rows_with(api_server=False, scheduler=False, triggerer=False), {}, NOW)
    assert [line.split(":")[0] for line in lines] == [
        "DOWN api-server",
        "DOWN scheduler",
        "DOWN triggerer",
    ]
    assert "the Airflow UI and REST API do not answer" in lines[0]
    assert "heartbeat unknown: the Airflow API server does not answer" in lines[1]
    assert "deferred tasks and deadline alerts do not resume" in lines[2]
    triggerer_without_beat = airflow_says()
    triggerer_without_beat["triggerer"] = {"status": None, "latest_triggerer_heartbeat": None}
    [line] = down_lines(rows_with(triggerer=True), triggerer_without_beat, NOW)
    assert "Airflow reports it unknown; no heartbeat recorded" in line


def test_all_healthy_says_nothing_and_a_stopped_stack_says_so_once() -> None:
    assert down_lines(rows_with(), airflow_says(), NOW) == []
    stopped = [ComponentStatus(n, None, False, None, False) for n in ("mlflow", "scheduler")]
    assert down_lines(stopped, {}, NOW) == ["DOWN: the stack is not running (`make up` starts it)."]


STUB_AIRFLOW = """
import json, sys
from http.server import BaseHTTPRequestHandler, HTTPServer

BODY = json.dumps(json.loads(sys.argv[2])).encode()


class Health(BaseHTTPRequestHandler):
    def do_GET(self):
        status = 200 if self.path == "/api/v2/monitor/health" else 404
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(BODY if status == 200 else b"{}")


HTTPServer(("127.0.0.1", int(sys.argv[1])), Health).serve_forever()
"""


def test_make_status_names_a_down_scheduler_and_exits_non_zero(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make status` against a stand-in of Airflow's API server whose scheduler stopped
    heartbeating 10 minutes ago, while its process still runs."""
    cfg = _stopped_stack(tmp_path)
    for env, port in (
        ("AIRMLOPS_AIRFLOW_PORT", cfg.airflow_port),
        ("AIRMLOPS_MLFLOW_PORT", cfg.mlflow_port),
        ("AIRMLOPS_RECEIVER_PORT", cfg.receiver_port),
        ("AIRMLOPS_MODEL_API_PORT", cfg.model_api_port),
    ):
        monkeypatch.setenv(env, str(port))
    cfg.logs_dir.mkdir(parents=True)
    cfg.run_dir.mkdir(parents=True)
    stale = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)).isoformat()
    body = airflow_says("unhealthy", stale)
    (tmp_path / "stub.py").write_text(STUB_AIRFLOW)
    stub = [sys.executable, str(tmp_path / "stub.py"), str(cfg.airflow_port), json.dumps(body)]
    try:
        start_component(cfg, "api-server", stub, {})
        start_component(
            cfg, "scheduler", [sys.executable, "-c", "import time; time.sleep(600)"], {}
        )
        start_component(
            cfg, "dag-processor", [sys.executable, "-c", "import time; time.sleep(600)"], {}
        )
        start_component(
            cfg, "triggerer", [sys.executable, "-c", "import time; time.sleep(600)"], {}
        )
        wait_healthy(cfg, ["api-server", "dag-processor", "triggerer"], timeout=30)
        assert airflow_health(cfg) == body
        code = localstack.main(["status", "--home", str(tmp_path)])
        out = capsys.readouterr().out
        assert code == 3, out
        down = [line for line in out.splitlines() if line.startswith("DOWN")]
        assert [line.split(":")[0] for line in down] == [
            "DOWN receiver",
            "DOWN mlflow",
            "DOWN model-api",
            "DOWN scheduler",
        ], out
        assert "Airflow reports it unhealthy; last heartbeat 10 min" in down[3]
        assert "no alert can be sent" in down[3]
    finally:
        localstack.down(cfg)
    assert airflow_health(cfg) == {}
