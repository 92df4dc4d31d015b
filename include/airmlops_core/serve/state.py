"""The served model state: the version that answers requests and what the poller knows.

With several worker processes, each writes a summary of its state to a small JSON file in a
shared directory (`write_status`, after every poll and every /status), named by its pid;
`read_statuses` reads those of the live workers, so one /status shows them all.
"""

from __future__ import annotations

import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict


@dataclass(frozen=True)
class Served:
    """One loaded model version that answered its golden request. Never mutated."""

    name: str
    version: str
    run_id: str
    model: Any  # mlflow.pyfunc.PyFuncModel
    input_schema: Any  # mlflow.types.Schema | None
    golden: str  # the JSON request body it was verified with
    loaded_at: float
    local_dir: Path
    batchable: bool = False  # answers row-stable when merged (batching.row_stable)


@dataclass
class ModelState:
    """What the API knows about one model; `served` is swapped whole, the rest under `lock`."""

    name: str
    served: Served | None = None
    champion: str | None = None  # the alias target at the last successful poll
    problem: str | None = None
    failed_version: str | None = None
    failures: int = 0
    retry_at: float = 0.0
    last_poll: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class WorkerModel(TypedDict):
    """One model in a worker's status file."""

    served_version: str | None
    champion_version: str | None
    problem: str | None


class WorkerStatus(TypedDict):
    """One worker's last written status (`updated_at`: unix time)."""

    status: str
    updated_at: float
    models: dict[str, WorkerModel]


def write_status(state_dir: Path, status: str, models: dict[str, WorkerModel]) -> None:
    """Write this worker's status file (atomically: a reader never sees half of it)."""
    body: WorkerStatus = {"status": status, "updated_at": time.time(), "models": models}
    path = state_dir / f"{os.getpid()}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(body))
    tmp.replace(path)


def read_statuses(state_dir: Path) -> dict[str, WorkerStatus]:
    """The status files of live workers, by pid; those of dead workers are removed."""
    found: dict[str, WorkerStatus] = {}
    for path in sorted(state_dir.glob("*.json")):
        pid = path.stem
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            path.unlink(missing_ok=True)
            continue
        except PermissionError:
            pass
        try:
            found[pid] = json.loads(path.read_text())
        except (OSError, ValueError):  # replaced while read: next time
            continue
    return found
