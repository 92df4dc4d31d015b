"""The local stack's component command lines, each with its environment.

No secret goes on a command line (``ps`` shows it to every user): passwords, tokens and URLs
that may hold a password travel in the environment, which only the process owner can read.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from airmlops_core.serve.auth import TOKEN_ENV
from airmlops_dev.private_files import write_private
from airmlops_dev.stack_config import (
    ADMIN_USER,
    MLFLOW_SECRET_KEYS,
    WORKER_HOSTNAME_ENV,
    StackConfig,
)
from airmlops_dev.stack_env import airflow_env, base_env
from airmlops_dev.stack_secrets import ensure_secrets, model_api_token


def _allowed_hosts(cfg: StackConfig) -> str:
    """MLflow's Host-header allow-list: the bind host and localhost, with and without a port."""
    hosts = dict.fromkeys([cfg.host, "127.0.0.1", "localhost"])
    return ",".join([f"{h}:*" for h in hosts] + list(hosts))


def commands(cfg: StackConfig) -> dict[str, tuple[list[str], dict[str, str]]]:
    """The command line and environment of every component, by name (they hold secrets)."""
    py, airflow, mlflow = (str(cfg.bin_dir / n) for n in ("python", "airflow", "mlflow"))
    base = base_env(cfg)
    af_env = airflow_env(cfg)
    # the components that fork tasks start with the tasks' libraries imported (airmlops.preload)
    forking_airflow = [py, "-m", "airmlops.preload"]
    mlflow_dir = cfg.root / "mlflow"
    mlflow_env = {
        **base,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        # `mlflow server --backend-store-uri / --artifacts-destination` read these: a database
        # URL holds its password, so neither goes on the command line
        "MLFLOW_BACKEND_STORE_URI": (
            cfg.mlflow_backend_store_uri or f"sqlite:///{mlflow_dir / 'mlflow.db'}"
        ),
        "MLFLOW_ARTIFACTS_DESTINATION": (
            cfg.mlflow_artifacts_destination or str(mlflow_dir / "artifacts")
        ),
    }
    mlflow_argv = (
        [mlflow, "server", "--host", cfg.host, "--port", str(cfg.mlflow_port)]
        + ["--serve-artifacts", "--workers", "1"]
        + ["--allowed-hosts", _allowed_hosts(cfg)]
    )
    if cfg.mlflow_auth:
        mlflow_argv += ["--app-name", "basic-auth"]
        mlflow_env.update(ensure_secrets(cfg, MLFLOW_SECRET_KEYS))
        mlflow_env["MLFLOW_AUTH_ADMIN_USERNAME"] = ADMIN_USER
        mlflow_env["MLFLOW_AUTH_CONFIG_PATH"] = str(_mlflow_auth_config(cfg))
    mlflow_env.update(cfg.mlflow_server_env)
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "receiver": (
            [py, "-m", "airmlops_dev.webhook_receiver", "--host", cfg.host]
            + ["--port", str(cfg.receiver_port), "--out", str(cfg.messages_file)]
            + ["--mode", cfg.receiver_mode],
            base,
        ),
        "mlflow": (mlflow_argv, mlflow_env),
        "model-api": (
            [py, "-m", "airmlops_core.serve.model_api", "--host", cfg.host]
            + ["--port", str(cfg.model_api_port), "--tracking-uri", cfg.mlflow_url],
            {**base, TOKEN_ENV: model_api_token(cfg)},  # by environment: never on argv
        ),
        "api-server": ([airflow, "api-server"], af_env),
        "scheduler": ([*forking_airflow, "scheduler", "--skip-serve-logs"], af_env),
        "dag-processor": ([airflow, "dag-processor"], af_env),
        "triggerer": ([airflow, "triggerer", "--skip-serve-logs"], af_env),
    }
    for worker in cfg.workers:
        hostname = cfg.worker_hostname(worker)
        commands[worker] = (
            # task logs are files under AIRFLOW_HOME, read by the api-server: no log server
            [
                *forking_airflow,
                "celery",
                "worker",
                "--concurrency",
                str(cfg.worker_concurrency),
                "--celery-hostname",
                f"celery@{hostname}",
                "--skip-serve-logs",
                "--pid",
                str(cfg.run_dir / f"{worker}.celery.pid"),
            ],
            {
                **af_env,
                WORKER_HOSTNAME_ENV: hostname,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airmlops_dev.stack_commands.task_hostname",
            },
        )
    return commands


def task_hostname() -> str:
    """Airflow's ``hostname_callable`` in the stack's Celery workers.

    Several workers on one machine would all report the machine's name; each reports
    ``$AIRMLOPS_WORKER_HOSTNAME`` instead (``celery-worker-<n>.<host>``), so a task instance's
    ``hostname`` tells which worker ran it.
    """
    return os.environ.get(WORKER_HOSTNAME_ENV) or socket.getfqdn()


# seconds MLflow remembers a verified credential (docker/mlflow/basic_auth.ini says why)
AUTH_CACHE_TTL_SECONDS = 60


def _mlflow_auth_config(cfg: StackConfig) -> Path:
    """MLflow's basic-auth config: users in ``<home>/mlflow/basic_auth.db``, no credential."""
    path = cfg.root / "mlflow" / "basic_auth.ini"
    write_private(
        path,
        "# Written by airmlops_dev.localstack. The admin is created on the first start from\n"
        "# MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD (secrets.env).\n"
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{cfg.root / 'mlflow' / 'basic_auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
        f"auth_cache_ttl_seconds = {AUTH_CACHE_TTL_SECONDS}\n",
    )
    return path
