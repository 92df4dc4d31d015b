"""MLflow tracking server access through an Airflow connection."""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airmlops.hooks.urls import connection_url

if TYPE_CHECKING:
    from airflow.sdk import Connection


class MlflowHook(BaseHook):
    """The tracking URI (and optional basic auth) of an MLflow server.

    The connection's host is the server URL (``http://127.0.0.1:5000``) or a bare host with
    port and schema; login/password, when set, become MLflow's basic-auth credentials
    through its environment variables, never arguments or logs.
    """

    conn_name_attr = "mlflow_conn_id"
    default_conn_name = "mlflow_default"
    # the type the provider info registers (connection form "MLflow"); the hook reads any
    # connection by id, so connections of type http keep working
    conn_type = "mlflow"
    hook_name = "MLflow"

    def __init__(self, mlflow_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def connection(self) -> Connection:
        return self.get_connection(self.mlflow_conn_id)

    @cached_property
    def tracking_uri(self) -> str:
        """The server URL, built from the connection."""
        return connection_url(self.connection)

    def configure(self) -> str:
        """Point the MLflow client library of this process at the server; return its URI."""
        conn = self.connection
        if conn.login:
            os.environ["MLFLOW_TRACKING_USERNAME"] = conn.login
            os.environ["MLFLOW_TRACKING_PASSWORD"] = conn.password or ""
        os.environ["MLFLOW_TRACKING_URI"] = self.tracking_uri
        # tqdm's bars go to stderr, which Airflow's task log shows as error lines
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        return self.tracking_uri
