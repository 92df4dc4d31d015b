"""Status and health of a stack whose servers are not running."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from airmlops_dev.ports import free_ports
from airmlops_dev.stack_config import ComponentStatus, StackConfig, StackError
from airmlops_dev.stack_health import format_status, status, wait_healthy
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
