"""What Airflow's provider discovery reads (entry point ``apache_airflow_provider``).

`airflow providers list` shows the pack; the connection form offers the MLflow connection
type; the notifier and the MLflow extra links are listed with the providers' ones. Imports
nothing heavy: Airflow calls this in every process that discovers providers.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

PACKAGE_NAME = "airmlops"


def _version() -> str:
    try:
        return version(PACKAGE_NAME)
    except PackageNotFoundError:  # a checkout on sys.path, not installed
        return "0+unknown"


def get_provider_info() -> dict[str, Any]:
    """Provider info in the shape of airflow/provider_info.schema.json (Airflow 3.3)."""
    return {
        "package-name": PACKAGE_NAME,
        "name": "airmlops",
        "description": "MLOps DAG pack: train, validate, score, monitor and retrain models "
        "with MLflow, one spec file per model.",
        "versions": [_version()],
        "connection-types": [
            {
                "connection-type": "mlflow",
                "hook-class-name": "airmlops.hooks.mlflow_hook.MlflowHook",
                "hook-name": "MLflow",
            },
        ],
        "notifications": ["airmlops.notify.SafeSlackWebhookNotifier"],
        "extra-links": [
            "airmlops.extra_links.MlflowRunLink",
            "airmlops.extra_links.MlflowModelVersionLink",
        ],
    }
