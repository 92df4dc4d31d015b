"""A durable record of alerts that could not be delivered (Slack down, rate limited, hanging).

One JSON line per undelivered alert: when, which connection, which DAG run and task, and the
error type. Never the webhook URL, token or message body. The health-probe DAG reports new
entries, so a silent alert channel is itself noticed.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
from pathlib import Path
from typing import Any

from airmlops_core import settings


def path() -> Path:
    """AIRMLOPS_ALERT_LOG, or <local dir>/alerts/undelivered.jsonl."""
    return settings.alert_log()


def record_undelivered(
    *,
    conn_id: str,
    error: str,
    dag_id: str = "",
    run_id: str = "",
    task_id: str = "",
    attempts: int = 1,
) -> dict[str, Any]:
    """Append one entry (whole line, under an exclusive lock, fsynced) and return it."""
    entry = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "conn_id": conn_id,
        "dag_id": dag_id,
        "run_id": run_id,
        "task_id": task_id,
        "error": error,
        "attempts": attempts,
    }
    target = path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("a", encoding="utf-8") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        fh.write(json.dumps(entry, sort_keys=True) + "\n")
        fh.flush()
        os.fsync(fh.fileno())
    return entry


def undelivered(since: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Recorded entries, oldest first, optionally only those at or after `since` (aware)."""
    target = path()
    if not target.exists():
        return []
    out = []
    for line in target.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a torn line from a crash: skipped, the rest still counts
        if since is None or dt.datetime.fromisoformat(entry["at"]) >= since:
            out.append(entry)
    return out
