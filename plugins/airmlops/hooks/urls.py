"""The base URL of an HTTP service from an Airflow connection (shared by the pack's hooks)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import Connection


def connection_url(conn: Connection) -> str:
    """The connection's host as a URL: a full URL as is, else schema (http) + host + port."""
    host = (conn.host or "").rstrip("/")
    if "://" in host:
        base = host
    else:
        scheme = conn.schema or "http"
        base = f"{scheme}://{host}"
    if conn.port and f":{conn.port}" not in base.split("://", 1)[1]:
        base = f"{base}:{conn.port}"
    return base
