"""A durable record of alerts that could not be delivered (Slack down, rate limited, hanging).

The notifier (on whichever worker ran the task) records; the health-probe DAG (on another
worker, perhaps another host) reports new entries, so a silent alert channel is itself noticed.
The record therefore goes through the data layer (`io.store`): one small JSON file per
undelivered alert under a directory or s3:// prefix (`settings.alert_log()`, by default
`<work URI>/alerts/undelivered/`), written atomically, so concurrent writers on several hosts
never tear or interleave an entry. An entry holds when, which connection, which DAG run and
task, and the error type; never the webhook URL, token or message body.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from airmlops_core import settings
from airmlops_core.errors import DataError
from airmlops_core.io import data
from airmlops_core.io.store import Store

_STAMP = "%Y%m%dT%H%M%SZ"  # sorts as time does: entries list oldest first


def uri() -> str:
    """AIRMLOPS_ALERT_LOG, or <work URI>/alerts/undelivered (a directory or s3:// prefix)."""
    return settings.alert_log()


def record_undelivered(
    store: Store,
    *,
    conn_id: str,
    error: str,
    dag_id: str = "",
    run_id: str = "",
    task_id: str = "",
    attempts: int = 1,
) -> dict[str, Any]:
    """Write one entry as its own file (atomically) and return it.

    Raises:
        DataError: the alert log's place is not writable (the message names it).
    """
    now = dt.datetime.now(dt.UTC)
    entry = {
        "at": now.isoformat(timespec="seconds"),
        "conn_id": conn_id,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "error": error,
        "attempts": attempts,
    }
    name = f"{now.strftime(_STAMP)}-{uuid.uuid4().hex[:12]}.json"
    store.write_json(data.join_uri(uri(), name), entry)
    return entry


def undelivered(store: Store, since: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Recorded entries, oldest first, optionally only those at or after `since` (aware).

    An unreadable entry (a file some other program left) is skipped, the rest still count.
    """
    floor = since.astimezone(dt.UTC).strftime(_STAMP) if since is not None else ""
    out = []
    for file in store.list_files(uri(), suffix=".json"):
        if file.rsplit("/", 1)[-1][: len(floor)] < floor:
            continue  # older than `since` by its name: not read at all
        try:
            entry = store.read_json(file)
        except DataError:
            continue
        if since is None or dt.datetime.fromisoformat(entry["at"]) >= since:
            out.append(entry)
    return out
