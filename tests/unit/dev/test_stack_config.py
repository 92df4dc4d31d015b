"""StackConfig: validation of the topology, derived names, ports and URLs."""

from __future__ import annotations

from pathlib import Path

import pytest

from airmlops_dev.stack_config import COMPONENTS, StackConfig, StackError, env_port

PG = "postgresql+psycopg2://u:p@127.0.0.1:5432/airflow"


def test_defaults_are_the_local_executor_under_the_home(tmp_path: Path) -> None:
    cfg = StackConfig(project_dir=tmp_path, home=tmp_path / "h")
    assert cfg.components == COMPONENTS
    assert cfg.workers == ()
    assert cfg.airflow_db_is_sqlite
    assert cfg.dags_folder == tmp_path / "dags"
    assert cfg.pid_file("mlflow") == tmp_path / "h" / "run" / "mlflow.pid"
    assert cfg.log_file("mlflow") == tmp_path / "h" / "logs" / "mlflow.log"
    assert set(cfg.ports) == set(cfg.urls) == {"receiver", "mlflow", "model-api", "api-server"}
    assert cfg.urls["mlflow"] == cfg.mlflow_url == f"http://127.0.0.1:{cfg.ports['mlflow']}"
    assert cfg.webhook_url.startswith(cfg.receiver_url + "/services/")


def test_home_defaults_to_the_environment_then_the_project(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AIRMLOPS_LOCAL_DIR", raising=False)
    assert StackConfig(project_dir=tmp_path).root == tmp_path / ".local"
    monkeypatch.setenv("AIRMLOPS_LOCAL_DIR", str(tmp_path / "elsewhere"))
    assert StackConfig(project_dir=tmp_path).root == tmp_path / "elsewhere"


def test_celery_workers_are_components(tmp_path: Path) -> None:
    cfg = StackConfig(
        home=tmp_path,
        executor="CeleryExecutor",
        sql_alchemy_conn=PG,
        celery_broker_url="redis://127.0.0.1:6379/0",
        celery_workers=2,
    )
    assert cfg.workers == ("celery-worker-1", "celery-worker-2")
    assert cfg.components == COMPONENTS + cfg.workers
    assert not cfg.airflow_db_is_sqlite
    assert cfg.worker_hostname("celery-worker-1").startswith("celery-worker-1.")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"executor": "SequentialExecutor"}, "is not one of"),
        ({"executor": "CeleryExecutor", "sql_alchemy_conn": PG}, "celery_broker_url"),
        (
            {"executor": "CeleryExecutor", "celery_broker_url": "redis://x"},
            "other than SQLite",
        ),
        (
            {
                "executor": "CeleryExecutor",
                "celery_broker_url": "redis://x",
                "sql_alchemy_conn": PG,
                "celery_workers": 0,
            },
            "at least 1",
        ),
    ],
)
def test_invalid_topologies_are_refused(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(StackError, match=message):
        StackConfig(home=tmp_path, **kwargs)


def test_env_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIRMLOPS_TEST_PORT", raising=False)
    assert env_port("AIRMLOPS_TEST_PORT", 8080) == 8080
    monkeypatch.setenv("AIRMLOPS_TEST_PORT", "9090")
    assert env_port("AIRMLOPS_TEST_PORT", 8080) == 9090
    monkeypatch.setenv("AIRMLOPS_TEST_PORT", "http")
    with pytest.raises(StackError, match="is not a port number"):
        env_port("AIRMLOPS_TEST_PORT", 8080)
