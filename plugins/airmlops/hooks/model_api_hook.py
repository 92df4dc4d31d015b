"""The model API (airmlops_core.serve) through an Airflow connection: its URL and token."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airmlops.hooks.urls import connection_url

if TYPE_CHECKING:
    from airflow.sdk import Connection


class ModelApiHook(BaseHook):
    """The URL and bearer token of the model API.

    The connection's host is the API's URL (``http://127.0.0.1:5001``) or a bare host with
    port and schema; its password is the API token (the API's ``AIRMLOPS_MODEL_API_TOKEN``).
    The token is never an argument and never logged.
    """

    conn_name_attr = "model_api_conn_id"
    default_conn_name = "model_api_default"
    conn_type = "http"
    hook_name = "airmlops model API"

    def __init__(self, model_api_conn_id: str = default_conn_name, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_api_conn_id = model_api_conn_id

    @cached_property
    def connection(self) -> Connection:
        return self.get_connection(self.model_api_conn_id)

    @cached_property
    def url(self) -> str | None:
        """The API's base URL; None when the connection has no host."""
        return connection_url(self.connection) if self.connection.host else None

    @cached_property
    def token(self) -> str | None:
        """The bearer token (the connection's password); None when it has none."""
        return self.connection.password or None
