"""The local stack's secrets: generated once, private, stable; the admin credentials."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from airmlops_dev.stack_config import ADMIN_USER, SECRET_KEYS, StackConfig, StackError
from airmlops_dev.stack_secrets import (
    credentials,
    ensure_admin_password,
    ensure_secrets,
    mlflow_credentials,
    model_api_token,
)


def test_secrets_are_generated_once_into_a_private_file(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    first = ensure_secrets(cfg)
    assert set(first) == set(SECRET_KEYS)
    assert all(first.values())
    assert stat.S_IMODE(cfg.secrets_file.stat().st_mode) == 0o600
    assert ensure_secrets(cfg) == first


def test_mlflow_credentials_only_with_basic_auth(tmp_path: Path) -> None:
    assert mlflow_credentials(StackConfig(home=tmp_path)) is None
    cfg = StackConfig(home=tmp_path, mlflow_auth=True)
    user, password = mlflow_credentials(cfg) or ("", "")
    assert user == ADMIN_USER
    assert len(password) >= 12  # MLflow's password policy
    assert mlflow_credentials(cfg) == (user, password)
    assert ensure_secrets(cfg) == ensure_secrets(StackConfig(home=tmp_path))  # kept alongside


def test_admin_credentials_exist_only_after_setup(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    with pytest.raises(StackError, match="run `up` first"):
        credentials(cfg)
    ensure_admin_password(cfg)
    path, (user, password) = credentials(cfg)
    assert path == cfg.passwords_file
    assert user == ADMIN_USER
    assert password
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    ensure_admin_password(cfg)
    assert credentials(cfg)[1] == (user, password)


def test_model_api_token_reaches_the_api_and_airflow_by_environment_only(tmp_path: Path) -> None:
    import json

    from airmlops_core.serve.auth import TOKEN_ENV, Tokens
    from airmlops_dev.stack_commands import commands
    from airmlops_dev.stack_env import airflow_env

    cfg = StackConfig(home=tmp_path)
    token = model_api_token(cfg)
    assert model_api_token(cfg) == token  # generated once
    assert f"{TOKEN_ENV}={token}\n" in cfg.secrets_file.read_text()
    assert stat.S_IMODE(cfg.secrets_file.stat().st_mode) == 0o600
    assert Tokens.from_env({TOKEN_ENV: token}).api == token  # strong enough for the API
    argv, env = commands(cfg)["model-api"]
    assert env[TOKEN_ENV] == token
    assert not any(token in arg for arg in argv)
    conn = json.loads(airflow_env(cfg)["AIRFLOW_CONN_MODEL_API_DEFAULT"])
    assert conn == {"conn_type": "http", "host": cfg.model_api_url, "password": token}
    for name, (argv, env) in commands(cfg).items():
        assert not any(token in arg for arg in argv), name
        if name != "model-api":
            assert env.get(TOKEN_ENV) != token, name  # only the API holds it as its own
