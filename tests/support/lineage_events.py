"""OpenLineage events the stack's tasks emitted through the provider's file transport."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from airmlops_dev.private_files import make_private_dir

EVENTS_PREFIX = "event"  # the transport writes <dir>/event-<timestamp>.json, one event per file


def transport_config(folder: Path) -> str:
    """AIRFLOW__OPENLINEAGE__TRANSPORT for a file transport writing one file per event (the
    folder owner-only, like everything in the stack's home; the stack's umask 077 keeps the
    event files so)."""
    make_private_dir(folder)
    return json.dumps({"type": "file", "log_file_path": str(folder / EVENTS_PREFIX)})


def read_events(folder: Path) -> list[dict[str, Any]]:
    """Every event written so far (a file still being written is read on the next call)."""
    events = []
    for path in sorted(folder.glob(f"{EVENTS_PREFIX}-*.json")):
        try:
            events.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    return events


def completed_task(
    folder: Path, dag_id: str, task_id: str, run_id: str, timeout: float = 60
) -> list[dict[str, Any]]:
    """The COMPLETE events of one task of one DAG run (job name <dag_id>.<task_id>; mapped
    tasks give one each), waiting up to `timeout` s for them to be written."""
    deadline = time.monotonic() + timeout
    while True:
        found = [
            e
            for e in read_events(folder)
            if e.get("eventType") == "COMPLETE"
            and e["job"]["name"] == f"{dag_id}.{task_id}"
            and _dag_run_id(e) == run_id
        ]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _dag_run_id(event: dict[str, Any]) -> str | None:
    facets = event.get("run", {}).get("facets", {})
    dag_run = facets.get("airflow", {}).get("dagRun") or {}
    return dag_run.get("run_id")


def names(datasets: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """(namespace, name) of each dataset of an event's inputs or outputs."""
    return {(d["namespace"], d["name"]) for d in datasets}
