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
