"""The model API's Prometheus metrics, in their own registry."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
)

PREFIX = "airmlops_model_api_"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """The API's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
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
            f"{p}served_version", "Registry version served (0: none)", ["model"], registry=r
        )
        self.champion_version = Gauge(
            f"{p}champion_version",
            "Version the alias named at the last poll (0: none)",
            ["model"],
            registry=r,
        )
        self.loaded = Gauge(f"{p}model_loaded", "1 when a version is served", ["model"], registry=r)
        self.info = Info(f"{p}model", "The served version and its run", ["model"], registry=r)
        self.last_reload = Gauge(
            f"{p}last_reload_timestamp_seconds",
            "When the served version was swapped in (unix time)",
            ["model"],
            registry=r,
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
