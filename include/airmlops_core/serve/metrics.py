"""The model API's Prometheus metrics, in their own registry.

With several worker processes (`--workers`), prometheus_client's multiprocess mode: every
worker writes its values to files in $PROMETHEUS_MULTIPROC_DIR (set by the parent before the
workers start), /metrics merges them (`MultiProcessCollector`): counters and histograms sum
over workers, dead ones included; each gauge says how it merges (`multiprocess_mode`: a
worker's served version per pid, in-flight summed, loaded the minimum over live workers). A
worker that exits cleanly marks itself dead (`mark_process_dead`); one that crashed is marked
by the next worker that starts. Process and platform collectors, and the `model` Info, are
per process and not exported then (prometheus_client does not merge them).
"""

from __future__ import annotations

import os
from pathlib import Path

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
    multiprocess,
)

PREFIX = "airmlops_model_api_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The multiprocess metrics directory, when this process is one of several workers."""
    return os.environ.get(MULTIPROC_ENV) or None


def exposition(registry: CollectorRegistry) -> tuple[bytes, str]:
    """The /metrics answer: this process's registry, or every worker's with several."""
    if multiprocess_dir():
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST


def mark_dead(pid: int) -> None:
    """Drop a worker's live gauges (multiprocess mode only)."""
    if multiprocess_dir():
        multiprocess.mark_process_dead(pid)


def mark_dead_workers() -> None:
    """Mark dead the workers that left live gauges behind without exiting cleanly."""
    path = multiprocess_dir()
    if not path:
        return
    pids = {f.stem.rsplit("_", 1)[-1] for f in Path(path).glob("gauge_live*.db")}
    for pid in pids:
        if not pid.isdigit() or int(pid) == os.getpid():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(int(pid))
        except PermissionError:  # alive, someone else's
            continue


class Metrics:
    """The API's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        if not multiprocess_dir():
            ProcessCollector(registry=self.registry)
            PlatformCollector(registry=self.registry)
        r = self.registry
        p = PREFIX
        self.requests = Counter(
            f"{p}requests",
            "Invocation requests by model and HTTP status",
            ["model", "status"],
            registry=r,
        )
        self.errors = Counter(
            f"{p}request_errors",
            "Refused or failed invocations by reason",
            ["model", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            f"{p}request_duration_seconds",
            "Invocation latency, from body received to answer built",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter(f"{p}predicted_rows", "Rows scored", ["model"], registry=r)
        self.served_version = Gauge(
            f"{p}served_version",
            "Registry version served (0: none); with workers, one per worker (pid)",
            ["model"],
            registry=r,
            multiprocess_mode="liveall",
        )
        self.champion_version = Gauge(
            f"{p}champion_version",
            "Version the alias named at the last poll (0: none)",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.loaded = Gauge(
            f"{p}model_loaded",
            "1 when a version is served (by every live worker)",
            ["model"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.info = Info(f"{p}model", "The served version and its run", ["model"], registry=r)
        self.last_reload = Gauge(
            f"{p}last_reload_timestamp_seconds",
            "When the served version was swapped in (unix time; the latest over workers)",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.reloads = Counter(
            f"{p}reloads",
            "Version loads by outcome (success, failed)",
            ["model", "outcome"],
            registry=r,
        )
        self.auth_failures = Counter(
            f"{p}auth_failures",
            "Requests refused with 401, by reason (missing, invalid token)",
            ["reason"],
            registry=r,
        )
        self.in_flight = Gauge(
            f"{p}invocations_in_flight",
            "Invocations being received, waiting or predicting (429 beyond the limit)",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.batch_requests = Histogram(
            f"{p}batch_requests",
            "Requests merged into one predict call",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.recorded_rows = Counter(
            f"{p}recorded_rows",
            "Live-traffic rows written to record files (monitoring.live)",
            ["model"],
            registry=r,
        )
        self.dropped_rows = Counter(
            f"{p}recording_dropped_rows",
            "Sampled live-traffic rows not recorded, by reason (queue_full, write_failed, "
            "unsupported, recorder_failed)",
            ["model", "reason"],
            registry=r,
        )
        self.poll_errors = Counter(
            f"{p}registry_poll_errors",
            "Alias look-ups that failed (registry unreachable or error)",
            ["model"],
            registry=r,
        )


def version_number(version: str) -> float:
    """A registry version as a gauge value; -1 when it is not a number."""
    try:
        return float(int(version))
    except ValueError:
        return -1.0
