"""The stack's command lines and environments, as built (no process is started): no secret on a
command line, every component logs in to MLflow, the CLI and the summary find the credentials.

The running stack's real /proc/<pid>/cmdline is checked in tests/integration/test_stack.py.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path

import pytest

from airmlops_dev import localstack
from airmlops_dev.stack_commands import commands
from airmlops_dev.stack_config import ADMIN_USER, StackConfig
from airmlops_dev.stack_secrets import (
    MLFLOW_ENV,
    credentials,
    ensure_admin_password,
    mlflow_credentials,
    read_secrets,
)

USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://[^:/@\s]*:[^@\s/]+@", re.I)
AIRFLOW_DB_PASSWORD = "af-" + secrets.token_hex(8)
MLFLOW_DB_PASSWORD = "ml-" + secrets.token_hex(8)
REDIS_PASSWORD = "rd-" + secrets.token_hex(8)
S3_SECRET = "s3-" + secrets.token_hex(8)


def _distributed(home: Path) -> StackConfig:
    """The PostgreSQL/Redis/S3 topology of tests/integration/test_distributed.py."""
    airflow_db = f"postgresql+psycopg2://airflow:{AIRFLOW_DB_PASSWORD}@127.0.0.1:5432/airflow"
    return StackConfig(
        home=home,
        executor="CeleryExecutor",
        sql_alchemy_conn=airflow_db,
        celery_broker_url=f"redis://:{REDIS_PASSWORD}@127.0.0.1:6379/0",
        celery_result_backend=f"db+{airflow_db}",
        celery_workers=2,
        mlflow_backend_store_uri=(
            f"postgresql+psycopg2://mlflow:{MLFLOW_DB_PASSWORD}@127.0.0.1:5432/mlflow"
        ),
        mlflow_artifacts_destination="s3://mlflow-artifacts",
        mlflow_server_env={"AWS_ACCESS_KEY_ID": "AKTEST", "AWS_SECRET_ACCESS_KEY": S3_SECRET},
    )


def _stack_secrets(cfg: StackConfig) -> list[str]:
    """Every generated secret of the stack: secrets.env and the Airflow admin's password."""
    ensure_admin_password(cfg)
    return [*read_secrets(cfg).values(), credentials(cfg)[1][1]]


def _assert_no_secret_on_a_command_line(
    launches: dict[str, tuple[list[str], dict[str, str]]], secret_values: list[str]
) -> None:
    for name, (argv, _) in launches.items():
        line = " ".join(argv)
        for value in secret_values:
            assert value not in line, f"{name}: a secret on its command line: {argv}"
        assert not USERINFO.search(line), f"{name}: a URL with a password in {argv}"


def test_no_secret_on_any_command_line_of_the_distributed_stack(tmp_path: Path) -> None:
    cfg = _distributed(tmp_path)
    launches = commands(cfg)
    assert set(launches) == set(cfg.components)
    secret_values = _stack_secrets(cfg)
    # 3 Airflow, 2 MLflow, the model API's token, the Airflow admin's password
    assert len(secret_values) == 7
    _assert_no_secret_on_a_command_line(
        launches,
        [*secret_values, AIRFLOW_DB_PASSWORD, MLFLOW_DB_PASSWORD, REDIS_PASSWORD, S3_SECRET],
    )
    # they travel in the environment instead, to the processes that need them
    argv, env = launches["mlflow"]
    assert env["MLFLOW_BACKEND_STORE_URI"] == cfg.mlflow_backend_store_uri
    assert env["MLFLOW_ARTIFACTS_DESTINATION"] == "s3://mlflow-artifacts"
    assert env["AWS_SECRET_ACCESS_KEY"] == S3_SECRET
    assert ["--app-name", "basic-auth"] == argv[argv.index("--app-name") :][:2]
    assert not any(a.startswith(("--backend-store-uri", "--artifacts-destination")) for a in argv)
    worker_env = launches["celery-worker-1"][1]
    assert worker_env["AIRFLOW__CELERY__BROKER_URL"] == cfg.celery_broker_url
    assert worker_env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == cfg.sql_alchemy_conn
    assert "AWS_SECRET_ACCESS_KEY" not in worker_env


def test_the_check_finds_a_password_on_a_command_line() -> None:
    leaky = {"mlflow": (["mlflow", "server", "--backend-store-uri", "postgresql://m:pw@h/db"], {})}
    with pytest.raises(AssertionError, match="a URL with a password"):
        _assert_no_secret_on_a_command_line(leaky, [])
    with pytest.raises(AssertionError, match="a secret on its command line"):
        _assert_no_secret_on_a_command_line({"x": (["run", "--token=abc123"], {})}, ["abc123"])


def test_every_component_of_the_local_stack_logs_in_to_mlflow(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)  # the defaults of `make up`
    launches = commands(cfg)
    user, password = mlflow_credentials(cfg) or ("", "")
    _assert_no_secret_on_a_command_line(launches, _stack_secrets(cfg))
    argv, env = launches["mlflow"]
    assert "basic-auth" in argv
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == user == ADMIN_USER
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == password
    assert Path(env["MLFLOW_AUTH_CONFIG_PATH"]).stat().st_mode & 0o777 == 0o600
    assert _auth_cache_ttl(env["MLFLOW_AUTH_CONFIG_PATH"]) == 60
    assert env["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    for name in ("model-api", "api-server", "scheduler", "dag-processor", "triggerer"):
        env = launches[name][1]
        assert (env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"]) == (
            user,
            password,
        ), name
    conn = json.loads(launches["scheduler"][1]["AIRFLOW_CONN_MLFLOW_DEFAULT"])
    assert (conn["host"], conn["login"], conn["password"]) == (cfg.mlflow_url, user, password)


def test_the_summary_names_where_the_passwords_are_and_shows_none(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    secret_values = _stack_secrets(cfg)
    mlflow_credentials(cfg)
    text = localstack.summary(cfg)
    assert f"password: MLFLOW_AUTH_ADMIN_PASSWORD in {cfg.secrets_file}" in text
    assert str(cfg.passwords_file) in text
    for value in [*secret_values, *read_secrets(cfg).values()]:
        assert value not in text


def test_airmlops_onboard_defaults_to_the_stack_and_its_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airmlops_core import cli as core_cli

    monkeypatch.setenv("AIRMLOPS_LOCAL_DIR", str(tmp_path))
    monkeypatch.setenv("AIRMLOPS_MLFLOW_PORT", "5999")
    for key in ("MLFLOW_TRACKING_URI", *MLFLOW_ENV):
        monkeypatch.delenv(key, raising=False)
    creds = mlflow_credentials(StackConfig())
    assert creds is not None
    assert core_cli.default_tracking_uri() == "http://127.0.0.1:5999"
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == creds


def _auth_cache_ttl(path: str) -> int:
    """The credential cache's lifetime as MLflow's own config reader sees it in `path`."""
    from mlflow.server.auth.config import read_auth_config

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_AUTH_CONFIG_PATH", path)
        return read_auth_config().auth_cache_ttl_seconds


def test_the_compose_mlflow_remembers_credentials_as_briefly_as_the_local_stack() -> None:
    ini = Path(__file__).resolve().parents[3] / "docker" / "mlflow" / "basic_auth.ini"
    assert _auth_cache_ttl(str(ini)) == 60
