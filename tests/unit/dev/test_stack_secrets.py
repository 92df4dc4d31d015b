"""The local stack's secrets: generated once, private, stable; the admin credentials; the home
created owner-only."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from airmlops_dev.private_files import UnsafePathError
from airmlops_dev.stack_config import (
    ADMIN_USER,
    MLFLOW_SECRET_KEYS,
    SECRET_KEYS,
    StackConfig,
    StackError,
)
from airmlops_dev.stack_secrets import (
    MLFLOW_ENV,
    credentials,
    ensure_admin_password,
    ensure_secrets,
    mlflow_credentials,
    model_api_token,
    read_secrets,
    use_mlflow_credentials,
)
from airmlops_dev.stack_setup import initialize


def test_secrets_are_generated_once_into_a_private_file(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    first = ensure_secrets(cfg)
    assert set(first) == set(SECRET_KEYS)
    assert all(first.values())
    assert stat.S_IMODE(cfg.secrets_file.stat().st_mode) == 0o600
    assert ensure_secrets(cfg) == first


def test_mlflow_asks_for_credentials_by_default(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    assert cfg.mlflow_auth
    user, password = mlflow_credentials(cfg) or ("", "")
    assert user == ADMIN_USER
    assert len(password) >= 12  # MLflow's password policy
    assert mlflow_credentials(cfg) == (user, password)
    assert read_secrets(cfg)["MLFLOW_AUTH_ADMIN_PASSWORD"] == password  # beside the others
    assert ensure_secrets(cfg) == ensure_secrets(StackConfig(home=tmp_path))  # kept alongside
    assert mlflow_credentials(StackConfig(home=tmp_path, mlflow_auth=False)) is None


@pytest.fixture
def clean_mlflow_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in MLFLOW_ENV:
        monkeypatch.delenv(key, raising=False)


def test_use_mlflow_credentials_sets_the_client_environment_without_generating(
    tmp_path: Path, clean_mlflow_env: None
) -> None:
    cfg = StackConfig(home=tmp_path / "never-started")
    assert not use_mlflow_credentials(cfg)  # no stack, no password: nothing made up
    assert not cfg.root.exists()
    assert not any(k in os.environ for k in MLFLOW_ENV)

    cfg = StackConfig(home=tmp_path / "home")
    _, password = mlflow_credentials(cfg) or ("", "")
    os.environ["MLFLOW_TRACKING_USERNAME"] = "someone-else"
    assert not use_mlflow_credentials(cfg, override=False)  # the caller's choice is kept
    assert os.environ["MLFLOW_TRACKING_USERNAME"] == "someone-else"
    assert use_mlflow_credentials(cfg)
    assert (os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"]) == (
        ADMIN_USER,
        password,
    )


def test_the_home_is_created_owner_only_not_narrowed_afterwards(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"chmod{args}: created open, then narrowed")

    monkeypatch.setattr(os, "chmod", refuse)
    old = os.umask(0o022)
    try:
        cfg = StackConfig(home=tmp_path / "project" / ".local")
        initialize(cfg)
    finally:
        os.umask(old)
    dirs = [cfg.root, *(p for p in cfg.root.rglob("*") if p.is_dir())]
    assert {p.relative_to(cfg.root).as_posix() for p in dirs} >= {
        ".",
        "airflow",
        "logs",
        "run",
        "mlflow/artifacts",
        "data",
        "work",
        "receiver",
    }
    for d in dirs:
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in (cfg.secrets_file, cfg.passwords_file, cfg.airflow_home / "airflow.cfg"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_a_symlinked_secrets_file_is_refused(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path / "home")
    cfg.root.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.env"
    elsewhere.write_text("# someone else's file\n")
    cfg.secrets_file.symlink_to(elsewhere)
    with pytest.raises(UnsafePathError, match="is a symlink"):
        ensure_secrets(cfg)
    assert elsewhere.read_text() == "# someone else's file\n"


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


def test_the_first_caller_generates_every_secret_in_one_write(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """`make up` asks for the MLflow, model API and Airflow secrets in turn: one log line."""
    cfg = StackConfig(home=tmp_path)
    caplog.set_level("INFO", logger="airmlops_dev.stack_secrets")
    mlflow_part = ensure_secrets(cfg, MLFLOW_SECRET_KEYS)
    token = model_api_token(cfg)
    rest = ensure_secrets(cfg)
    generated = [r for r in caplog.records if r.getMessage().startswith("generated secrets")]
    assert len(generated) == 1
    stored = read_secrets(cfg)
    assert {k: stored[k] for k in MLFLOW_SECRET_KEYS} == mlflow_part
    assert stored["AIRMLOPS_MODEL_API_TOKEN"] == token
    assert {k: stored[k] for k in SECRET_KEYS} == rest
