"""Buttons on a task in the Airflow UI to the MLflow run it logged to and the version it used.

Airflow 3 computes a link on the worker when the task ends (and stores it under the link's own
XCom key); both links read the task's XCom value, so a task that failed before returning one
shows no link. The values come from the operators' step results: `run_url` (train, evaluate,
register, publish, drift, onboard), `url` (a registered, promoted, rejected or rolled-back
version) or a version number (`version`, `challenger`, `model_version`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

VERSION_KEYS = ("version", "challenger", "model_version")


def run_link(value: object) -> str:
    """The MLflow run URL a step result carries, or "" when it has none."""
    if isinstance(value, Mapping) and isinstance(value.get("run_url"), str):
        return str(value["run_url"])
    return ""


def version_link(value: object, tracking_uri: str, model: str) -> str:
    """The MLflow model version URL of a step result: its `url`, else built from the version
    number it names; "" when it names none."""
    from airmlops_core.tracking.runs import model_version_url

    if not isinstance(value, Mapping):
        return ""
    if isinstance(value.get("url"), str) and "/models/" in str(value["url"]):
        return str(value["url"])
    version = next((value[k] for k in VERSION_KEYS if value.get(k)), None)
    return model_version_url(tracking_uri, model, str(version)) if version else ""


def _return_value(ti_key: TaskInstanceKey) -> Any:
    from airflow.sdk.execution_time.xcom import XCom

    return XCom.get_value(ti_key=ti_key, key="return_value")


class MlflowRunLink(BaseOperatorLink):
    """The MLflow run the task logged to."""

    name = "MLflow run"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        return run_link(_return_value(ti_key))


class MlflowModelVersionLink(BaseOperatorLink):
    """The registered model version the task made, judged, scored with or watched."""

    name = "MLflow model version"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airmlops.hooks.mlflow_hook import MlflowHook

        value = _return_value(ti_key)
        if not isinstance(value, Mapping):
            return ""
        conn_id = getattr(operator, "mlflow_conn_id", MlflowHook.default_conn_name)
        tracking_uri = MlflowHook(mlflow_conn_id=conn_id).tracking_uri
        return version_link(value, tracking_uri, str(getattr(operator, "model_name", "")))
