"""Airflow's scheduler heartbeat leaves as the OTLP metric the heartbeat alert expects.

The compose stack has every Airflow component push OpenTelemetry metrics to Prometheus's OTLP
receiver, and the alert `AirflowSchedulerHeartbeatMissing` watches
`airflow_scheduler_heartbeat_total`. Debian's Prometheus (2.42) has no OTLP receiver, so this
test checks the Airflow half for real: a subprocess with the scheduler's metrics environment
from docker-compose.yml (only the receiver's host changed) initialises Airflow's stats backend
as SchedulerJobRunner does and sends what its heartbeat callback sends; Airflow's own OTLP
exporter posts it to a receiver here, which decodes the protobuf request. Prometheus then
names a monotonic cumulative sum `<name with _ for .>_total` (its default OTLP translation,
UnderscoreEscapingWithSuffixes), with `job` from service.name and `instance` from
service.instance.id.
"""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from paths import PROJECT_DIR

pytestmark = pytest.mark.integration

COMPOSE = PROJECT_DIR / "docker-compose.yml"
RULES = PROJECT_DIR / "docker" / "prometheus" / "alerts.yml"
# What SchedulerJobRunner does: initialise the stats backend from the config, then each
# heartbeat_callback sends stats.incr("scheduler_heartbeat", 1, 1). Shutting the meter
# provider down exports at once instead of after OTEL_METRIC_EXPORT_INTERVAL.
HEARTBEATS = 3
SCHEDULER = f"""
from opentelemetry import metrics

from airflow._shared.observability.metrics import stats
from airflow.configuration import conf
from airflow.observability.metrics import stats_utils

stats.initialize(
    factory=stats_utils.get_stats_factory(),
    export_legacy_names=conf.getboolean("metrics", "legacy_names_on"),
)
for _ in range({HEARTBEATS}):
    stats.incr("scheduler_heartbeat", 1, 1)
metrics.get_meter_provider().shutdown()
"""


class Receiver(ThreadingHTTPServer):
    """An OTLP/HTTP metrics receiver on a free loopback port; keeps (path, request) pairs."""

    def __init__(self) -> None:
        self.received: list[tuple[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: Receiver

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
            ExportMetricsServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        if self.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.received.append((self.path, ExportMetricsServiceRequest.FromString(body)))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


def scheduler_metrics_env() -> dict[str, str]:
    """The metrics settings of docker-compose.yml's airflow-scheduler service."""
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    env = compose["services"]["airflow-scheduler"]["environment"]
    return {k: str(v) for k, v in env.items() if k.startswith(("OTEL_", "AIRFLOW__METRICS__"))}


def prometheus_name(otel_name: str) -> str:
    """Prometheus's OTLP name of a monotonic sum (UnderscoreEscapingWithSuffixes)."""
    return re.sub(r"[^A-Za-z0-9_:]", "_", otel_name) + "_total"


def test_the_scheduler_heartbeat_reaches_prometheus_as_the_alert_expects(
    receiver: Receiver, tmp_path: Path
) -> None:
    settings = scheduler_metrics_env()
    endpoint = urlsplit(settings["OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"])
    assert (endpoint.netloc, endpoint.path) == ("prometheus:9090", "/api/v1/otlp/v1/metrics")
    local = endpoint._replace(netloc=f"127.0.0.1:{receiver.server_port}").geturl()
    env = {
        "PATH": "/usr/bin:/bin",
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        **settings,
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT": local,
    }
    done = subprocess.run(
        [sys.executable, "-c", SCHEDULER],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]

    sums = {}
    for path, request in receiver.received:
        assert path == endpoint.path  # Prometheus's OTLP route
        for resource_metrics in request.resource_metrics:
            resource = {a.key: a.value.string_value for a in resource_metrics.resource.attributes}
            for scope in resource_metrics.scope_metrics:
                for metric in scope.metrics:
                    if metric.WhichOneof("data") == "sum":
                        sums[metric.name] = (resource, metric.sum)
    assert "airflow.scheduler_heartbeat" in sums, (sorted(sums), done.stderr[-3000:])
    resource, heartbeat = sums["airflow.scheduler_heartbeat"]
    # job="airflow", instance="scheduler" in Prometheus
    assert resource["service.name"] == "airflow"
    assert resource["service.instance.id"] == "scheduler"
    assert heartbeat.is_monotonic
    from opentelemetry.proto.metrics.v1.metrics_pb2 import AggregationTemporality

    # cumulative: Prometheus stores the values as they come (a delta would need conversion)
    assert heartbeat.aggregation_temporality == AggregationTemporality.Value(
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    )
    assert [p.as_int for p in heartbeat.data_points] == [HEARTBEATS]

    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    (alert,) = [
        r
        for g in rules["groups"]
        for r in g["rules"]
        if r["alert"] == "AirflowSchedulerHeartbeatMissing"
    ]
    assert prometheus_name("airflow.scheduler_heartbeat") == "airflow_scheduler_heartbeat_total"
    assert "airflow_scheduler_heartbeat_total" in alert["expr"]
