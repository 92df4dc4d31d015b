"""The lifecycle and command line of a stack that is not running (no server is started)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airmlops_dev import localstack
from airmlops_dev.ports import free_ports
from airmlops_dev.stack_config import StackConfig, StackError


def test_status_command_of_a_stopped_stack_exits_3(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, port in zip(
        ("AIRFLOW", "MLFLOW", "RECEIVER", "MODEL_API"), free_ports(4), strict=True
    ):
        monkeypatch.setenv(f"AIRMLOPS_{name}_PORT", str(port))
    assert localstack.main(["status", "--home", str(tmp_path)]) == 3
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == ["component", "pid", "alive", "healthy", "url"]
    assert f"Logs:            {tmp_path / 'logs'}" in out


def test_down_of_a_stack_that_never_started_is_a_no_op(tmp_path: Path) -> None:
    ports = free_ports(4)
    cfg = StackConfig(
        home=tmp_path,
        airflow_port=ports[0],
        mlflow_port=ports[1],
        receiver_port=ports[2],
        model_api_port=ports[3],
    )
    localstack.down(cfg, timeout=1.0)
    assert not any(cfg.run_dir.glob("*.pid"))
    assert cfg.root.stat().st_mode & 0o777 == 0o700  # even the lock's directory is private


def test_up_without_the_binaries_says_where_it_looked(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path / "home", bin_dir=tmp_path / "bin")
    with pytest.raises(StackError, match="not found in .*bin_dir=<venv>/bin"):
        localstack.up(cfg)
