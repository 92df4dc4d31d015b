"""The model server: the served models, their alias poller and their metrics, without HTTP.

A model without a served version (no champion yet, or none that loaded) answers 503.
One process: the poller, the served models and the metrics live in it. With `--workers N`
each worker process has its own ModelServer (poller, served models), and writes its status to
`state_dir` (state.write_status) so that any worker's /status lists every worker's.
"""

from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal, NotRequired, TypedDict

from airmlops_core.serve.batching import DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH_ROWS
from airmlops_core.serve.metrics import Metrics
from airmlops_core.serve.poller import DEFAULT_ALIAS, DEFAULT_POLL_SECONDS, AliasPoller
from airmlops_core.serve.recording import RecordingSettings, recorder_for
from airmlops_core.serve.scoring import DEFAULT_MAX_ROWS, RequestError
from airmlops_core.serve.state import (
    ModelState,
    Served,
    WorkerModel,
    WorkerStatus,
    read_statuses,
    write_status,
)

DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_THREADS = 4
DEFAULT_MAX_QUEUE = 32
DEFAULT_READ_TIMEOUT = 30.0


class ModelHealth(TypedDict):
    """One model in the /health answer."""

    status: Literal["serving", "unavailable"]
    served_version: str | None
    champion_version: str | None
    run_id: str | None
    loaded_at: str | None
    last_poll: str | None
    problem: str | None
    batched: bool  # requests merged into one predict call (the version is row-stable)


class HealthReport(TypedDict):
    """The /status answer (/health shows `status` only): `ok`, `degraded` (all served, some
    problem) or `unavailable`; `started_at` and `uptime_s` say how long the API has had to load
    its champions. All of it is the answering worker's (`worker`: its pid); with several
    workers, `workers` has each live worker's last written status (state.WorkerStatus)."""

    status: Literal["ok", "degraded", "unavailable"]
    alias: str
    started_at: str | None
    uptime_s: float
    models: dict[str, ModelHealth]
    worker: int
    workers: NotRequired[dict[str, WorkerStatus]]


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


class ModelServer:
    """The served models, their alias poller and their metrics; the HTTP app wraps this.

    Request limits: `max_bytes` per body, `max_rows` per request, `threads` predictions at
    once with at most `max_queue` more requests waiting (bodies held in memory are bounded by
    (threads + max_queue) * max_bytes), `read_timeout` seconds to receive a body. Batching:
    requests merged for up to `batch_wait_ms` while others are in flight, at most
    `max_batch_rows` rows per predict call (batching.Batcher). Recording: a sample of the
    requests of the models in `recording` is kept as live-traffic records (recording.Recorder).
    """

    def __init__(
        self,
        tracking_uri: str,
        models: list[str],
        *,
        alias: str = DEFAULT_ALIAS,
        poll_interval: float = DEFAULT_POLL_SECONDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_rows: int = DEFAULT_MAX_ROWS,
        threads: int = DEFAULT_THREADS,
        max_queue: int = DEFAULT_MAX_QUEUE,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
        max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS,
        cache_dir: Path | None = None,
        state_dir: Path | None = None,
        recording: dict[str, RecordingSettings] | None = None,
    ):
        if not models:
            raise ValueError("no models to serve: pass --models a,b or --models-dir")
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        self.threads = threads
        self.max_queue = max_queue
        self.read_timeout = read_timeout
        self.batch_wait_s = batch_wait_ms / 1000
        self.max_batch_rows = max_batch_rows
        self.state_dir = state_dir
        self.states = {name: ModelState(name) for name in dict.fromkeys(models)}
        self.started_at, self._started = time.time(), time.monotonic()
        self.metrics = Metrics()
        self.recorder = recorder_for(recording or {}, self.metrics)
        self.poller = AliasPoller(
            tracking_uri,
            self.states,
            self.metrics,
            alias=alias,
            poll_interval=poll_interval,
            cache_dir=cache_dir,
            after_poll=self.publish_status,
        )
        for name in self.states:
            self.metrics.loaded.labels(model=name).set(0)
            self.metrics.served_version.labels(model=name).set(0)
            self.metrics.champion_version.labels(model=name).set(0)

    def start(self) -> None:
        """Start the alias poller (its first poll loads every champion)."""
        self.started_at, self._started = time.time(), time.monotonic()
        self.poller.start()
        if self.recorder is not None:
            self.recorder.start()

    def stop(self) -> None:
        """Stop the alias poller (removing its download cache when it made it) and flush the
        live-traffic records."""
        self.poller.stop()
        if self.recorder is not None:
            self.recorder.stop()

    def served_for(self, name: str | None) -> Served:
        """The version that answers a request for `name` (None: the only model).

        Raises:
            RequestError: 400 no model named on a multi-model server, 404 unknown, 503 none yet.
        """
        if name is None:
            if len(self.states) != 1:
                raise RequestError(
                    400,
                    "MODEL_NOT_SPECIFIED",
                    f"this API serves {sorted(self.states)}: POST /invocations/<model>",
                )
            name = next(iter(self.states))
        state = self.states.get(name)
        if state is None:
            raise RequestError(
                404,
                "UNKNOWN_MODEL",
                f"model '{name}' is not served here; served: {sorted(self.states)}",
            )
        served = state.served
        if served is None:
            raise RequestError(
                503,
                "NO_MODEL_LOADED",
                f"model '{name}' has no version loaded: {state.problem or 'loading'}",
            )
        return served

    def health(self, *, all_workers: bool = True) -> tuple[int, HealthReport]:
        """(HTTP status, body): 200 when every model has a served version (in this worker)."""
        models: dict[str, ModelHealth] = {}
        for name, state in self.states.items():
            served = state.served
            with state.lock:
                problem, champion, last_poll = state.problem, state.champion, state.last_poll
            if served is None and problem is None:
                problem = "loading: first registry poll not finished"
            models[name] = {
                "status": "serving" if served else "unavailable",
                "served_version": served.version if served else None,
                "champion_version": champion,
                "run_id": served.run_id if served else None,
                "loaded_at": _iso(served.loaded_at) if served else None,
                "last_poll": _iso(last_poll),
                "problem": problem,
                "batched": bool(served and served.batchable),
            }
        all_served = all(m["served_version"] for m in models.values())
        clean = all_served and all(m["problem"] is None for m in models.values())
        status: Literal["ok", "degraded", "unavailable"] = (
            "ok" if clean else "degraded" if all_served else "unavailable"
        )
        report: HealthReport = {
            "status": status,
            "alias": self.poller.alias,
            "started_at": _iso(self.started_at),
            "uptime_s": round(time.monotonic() - self._started, 1),
            "models": models,
            "worker": os.getpid(),
        }
        if self.state_dir is not None and all_workers:
            self._write_status(report)
            report["workers"] = read_statuses(self.state_dir)
        return (200 if all_served else 503), report

    def publish_status(self) -> None:
        """Write this worker's status file (after every poll), when there are several."""
        if self.state_dir is not None:
            self._write_status(self.health(all_workers=False)[1])

    def _write_status(self, report: HealthReport) -> None:
        assert self.state_dir is not None
        models: dict[str, WorkerModel] = {
            name: {
                "served_version": m["served_version"],
                "champion_version": m["champion_version"],
                "problem": m["problem"],
            }
            for name, m in report["models"].items()
        }
        write_status(self.state_dir, report["status"], models)
