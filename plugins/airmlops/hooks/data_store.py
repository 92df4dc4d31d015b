"""The data layer (airmlops_core.io.store.Store) reached through an Airflow AWS connection.

Every Airflow-side user of S3 (the model operators, the notifier's undelivered-alert log, the
health probe) builds its Store here, so the connection is read in one place. Credentials stay
in the connection; a Store's repr never shows them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airmlops_core.io.store import Store

DEFAULT_AWS_CONN = "aws_default"


def store_for(conn_id: str | None, *, needs_s3: bool = True) -> Store:
    """A Store with the endpoint, region and credentials of AWS connection `conn_id`
    (aws_default when None), or a local-only Store when `needs_s3` is False (no connection
    is read then: a laptop needs none)."""
    from airmlops_core.io.store import S3Settings, Store

    if not needs_s3:
        return Store()
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=conn_id or DEFAULT_AWS_CONN)
    creds = hook.get_credentials()
    return Store(
        S3Settings(
            endpoint_url=hook.conn_config.endpoint_url,
            region=hook.conn_config.region_name,
            access_key=creds.access_key,
            secret_key=creds.secret_key,
            session_token=creds.token,
        )
    )


def alert_log_store() -> Store:
    """The Store of the undelivered-alert log (airmlops_core.alert_log): S3 through the
    aws_default connection when the log's place is an s3:// prefix, else local only."""
    from airmlops_core import alert_log
    from airmlops_core.io import data

    return store_for(DEFAULT_AWS_CONN, needs_s3=data.is_s3(alert_log.uri()))
