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
