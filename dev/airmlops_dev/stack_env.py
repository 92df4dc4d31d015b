"""The local stack's process environments: what every component and its tasks see."""

from __future__ import annotations

import json
import os
from typing import Any

from airmlops_dev.stack_config import ADMIN_USER, MARKER_ENV, StackConfig
from airmlops_dev.stack_secrets import ensure_secrets, mlflow_credentials, model_api_token

_NO_PROXY_HOSTS = ("127.0.0.1", "localhost")
_AIRFLOW_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")
# the caller's MLflow servers: the stack's processes use the stack's own MLflow
_CALLER_ONLY_ENV = (
    "AIRFLOW_HOME",
    "AIRFLOW_CONFIG",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


def inherited_env() -> dict[str, str]:
    """The caller's environment minus Airflow settings and the caller's MLflow registry and
    credentials, so the stack is the same from any shell (a registry URI left by the caller
    would send the stack's registrations to another server).

    Use ``StackConfig.extra_env`` to override anything on purpose.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_AIRFLOW_ENV_PREFIXES) and k not in _CALLER_ONLY_ENV
    }


def base_env(cfg: StackConfig) -> dict[str, str]:
    """The environment of every process of the stack.

    The caller's (see inherited_env), the stack's bin directory first on PATH, loopback exempt
    from proxies, the stack's URLs and directories, the MLflow credentials of a stack with basic
    auth, then ``cfg.extra_env``.
    """
    env = inherited_env()
    env["PATH"] = os.pathsep.join([str(cfg.bin_dir), env.get("PATH", "")])
    for key in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in env.get(key, "").split(",") if h]
        hosts += [h for h in (*_NO_PROXY_HOSTS, cfg.host) if h not in hosts]
        env[key] = ",".join(hosts)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "AIRMLOPS_PROJECT_DIR": str(cfg.project_dir),
            "AIRMLOPS_LOCAL_DIR": str(cfg.root),
            "AIRMLOPS_DATA_DIR": str(cfg.root / "data"),
            "AIRMLOPS_WORK_URI": str(cfg.root / "work"),
            "MLFLOW_TRACKING_URI": cfg.mlflow_url,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            # MLflow's own loaders refuse pickle/cloudpickle (and skops with the model's own
            # trust list); the pack loads through its model-safety check (tracking.model_load)
            "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
            "AIRMLOPS_MODEL_API_URL": cfg.model_api_url,
        }
    )
    if creds := mlflow_credentials(cfg):  # MLflow's client reads them (tasks, model API)
        env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = creds
    env.update(cfg.extra_env)
    return env


def _dag_bundles(cfg: StackConfig) -> str:
    """Airflow's DAG bundle list: the dags folder, then each extra folder, as JSON."""
    bundles: list[dict[str, Any]] = [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {},
        }
    ]
    for i, folder in enumerate(cfg.extra_dag_folders, start=1):
        bundles.append(
            {
                "name": f"extra-dags-{i}",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(folder)},
            }
        )
    return json.dumps(bundles)


def airflow_env(cfg: StackConfig) -> dict[str, str]:
    """The full environment for every Airflow process of the stack, and so for its tasks.

    Airflow variables of the caller's environment (``AIRFLOW__*``, ``AIRFLOW_CONN_*``,
    ``AIRFLOW_VAR_*``, ``AIRFLOW_HOME``, ``AIRFLOW_CONFIG``) are dropped so the stack behaves the
    same from any shell; ``cfg.extra_env`` is applied last and can override anything. Generates
    ``<home>/secrets.env`` on first use. The result contains secrets: never log it.

    Args:
        cfg: The stack configuration.

    Returns:
        ``os.environ`` overlaid with the stack's Airflow, MLflow and airmlops settings.
    """
    ah = cfg.airflow_home
    env = base_env(cfg)
    env.update(ensure_secrets(cfg))
    mlflow_conn: dict[str, Any] = {"conn_type": "http", "host": cfg.mlflow_url}
    if creds := mlflow_credentials(cfg):
        mlflow_conn["login"], mlflow_conn["password"] = creds
    env.update(
        {
            "AIRFLOW_HOME": str(ah),
            "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(cfg.plugins_folder),
            "AIRFLOW__CORE__EXECUTOR": cfg.executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                cfg.sql_alchemy_conn or f"sqlite:///{ah / 'airflow.db'}"
            ),
            "AIRFLOW__CORE__PARALLELISM": str(cfg.parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(cfg.max_active_tasks),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{cfg.airflow_url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(cfg.passwords_file),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": str(cfg.dag_reparse_seconds),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(ah / "dag_bundles"),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": _dag_bundles(cfg),
            "AIRFLOW__API__HOST": cfg.host,
            "AIRFLOW__API__PORT": str(cfg.airflow_port),
            "AIRFLOW__API__BASE_URL": cfg.airflow_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__EXPOSE_CONFIG": "False",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(mlflow_conn),
            "AIRFLOW_CONN_MODEL_API_DEFAULT": json.dumps(
                {"conn_type": "http", "host": cfg.model_api_url, "password": model_api_token(cfg)}
            ),
            "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(
                {"conn_type": "slackwebhook", "password": cfg.webhook_url}
            ),
        }
    )
    if cfg.executor == "CeleryExecutor":
        assert cfg.sql_alchemy_conn  # both checked by StackConfig
        assert cfg.celery_broker_url
        env.update(
            {
                "AIRFLOW__CELERY__BROKER_URL": cfg.celery_broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": (
                    cfg.celery_result_backend or f"db+{cfg.sql_alchemy_conn}"
                ),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(cfg.worker_concurrency),
                # Airflow's default, explicit so that it does not warn; a task a dead worker
                # held is re-queued by the scheduler's heartbeat check, not by the broker
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
            }
        )
    env.update(cfg.extra_env)
    return env


def launch_env(cfg: StackConfig, env: dict[str, str]) -> dict[str, str]:
    """Tag an environment so every process of this stack (and its descendants) is findable."""
    # SPT_NOENV: setproctitle (used by Airflow) must not overwrite the environment, which holds
    # the marker.
    return {**env, MARKER_ENV: str(cfg.root), "SPT_NOENV": "1"}
