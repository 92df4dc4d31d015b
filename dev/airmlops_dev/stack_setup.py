"""The local stack's setup: directories, secrets, the Airflow metadata DB and its settings."""

from __future__ import annotations

import hashlib
import json
import logging
from importlib import metadata
from pathlib import Path

from airmlops_dev.private_files import make_private_dir, write_private
from airmlops_dev.stack_config import StackConfig, StackError
from airmlops_dev.stack_env import airflow_env
from airmlops_dev.stack_pids import run_once
from airmlops_dev.stack_secrets import ensure_admin_password, ensure_secrets

log = logging.getLogger(__name__)


def _file_sha256(path: Path) -> str | None:
    """The SHA-256 of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _airflow_version() -> str:
    """The installed Airflow core's version."""
    try:
        return metadata.version("apache-airflow-core")
    except metadata.PackageNotFoundError:
        return "unknown"


def initialize(cfg: StackConfig) -> None:
    """Create the home and its directories (mode 0700) and the secrets (mode 0600)."""
    for d in (
        cfg.root,
        cfg.logs_dir,
        cfg.run_dir,
        cfg.airflow_home,
        cfg.root / "mlflow",
        cfg.root / "mlflow" / "artifacts",
        cfg.root / "receiver",
        cfg.root / "data",
        cfg.root / "work",
    ):
        make_private_dir(d)
    if cfg.private_component_dirs:
        for name in cfg.components:
            for d in (
                cfg.root / "private",
                cfg.component_dir(name),
                cfg.component_dir(name) / "tmp",
            ):
                make_private_dir(d)
    ensure_secrets(cfg)
    ensure_admin_password(cfg)
    cfg_file = cfg.airflow_home / "airflow.cfg"
    if not cfg_file.exists():
        # Airflow writes a full default airflow.cfg (with unused random secrets and defaults that
        # the environment overrides) when none exists; a stub avoids that confusion.
        write_private(
            cfg_file,
            "# The local stack configures Airflow through environment variables:\n"
            "# see airflow_env() in airmlops_dev/stack_env.py. Settings here are overridden.\n",
        )


def prepare_airflow_db(cfg: StackConfig, migrate: bool) -> None:
    """Prepare the metadata DB.

    Migrates it (first run, or a new Airflow version) when ``migrate`` is set, and loads the
    settings file when it changed since the last load (always after a migration). Both in one
    process when both are due: an Airflow start costs seconds of CPU.
    """
    state_file = cfg.airflow_home / ".airmlops_state.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    env = airflow_env(cfg)
    version = _airflow_version()
    db = cfg.airflow_home / "airflow.db"
    # which database the state describes (a digest: the URL may hold a password)
    db_id = hashlib.sha256(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].encode()).hexdigest()[:16]
    exists = db.exists() if cfg.airflow_db_is_sqlite else state.get("db") == db_id
    settings_file = cfg.settings_file
    digest = _file_sha256(settings_file) if settings_file else None
    loader = [str(cfg.bin_dir / "python"), "-m", "airmlops_dev.settings_loader"]
    if migrate and (not exists or state.get("airflow_version") != version):
        where = db if cfg.airflow_db_is_sqlite else "sql_alchemy_conn"
        if digest:
            log.info("migrating the Airflow metadata DB (%s) and loading %s", where, settings_file)
            run_once(cfg, "airflow-db-migrate", [*loader, "--migrate", str(settings_file)], env)
        else:
            log.info("migrating the Airflow metadata DB (%s)", where)
            run_once(
                cfg, "airflow-db-migrate", [str(cfg.bin_dir / "airflow"), "db", "migrate"], env
            )
        state = {"airflow_version": version, "db": db_id}
        if digest:
            state["settings_sha256"] = digest
        write_private(state_file, json.dumps(state))
        exists = True
    if exists and digest and state.get("settings_sha256") != digest:
        log.info("loading %s into the metadata DB", settings_file)
        run_once(cfg, "settings-loader", [*loader, str(settings_file)], env)
        state["settings_sha256"] = digest
        write_private(state_file, json.dumps(state))


def check_binaries(cfg: StackConfig) -> None:
    """Raise StackError unless python, airflow and mlflow are in ``cfg.bin_dir``."""
    for name in ("python", "airflow", "mlflow"):
        if not (cfg.bin_dir / name).exists():
            raise StackError(
                f"{name} not found in {cfg.bin_dir}; pass StackConfig(bin_dir=<venv>/bin)"
            )
