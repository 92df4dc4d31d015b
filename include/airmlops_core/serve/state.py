"""The served model state: the version that answers requests and what the poller knows."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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
