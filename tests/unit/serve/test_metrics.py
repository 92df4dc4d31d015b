"""The model API's Prometheus metrics: their own registry, their names, version gauges."""

from __future__ import annotations

from prometheus_client import generate_latest

from airmlops_core.serve.metrics import PREFIX, Metrics, version_number


def test_each_metrics_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # no clash: nothing is registered globally
    first.requests.labels(model="m", status="200").inc()
    assert (
        first.registry.get_sample_value(f"{PREFIX}requests_total", {"model": "m", "status": "200"})
        == 1.0
    )
    assert (
        second.registry.get_sample_value(f"{PREFIX}requests_total", {"model": "m", "status": "200"})
        is None
    )
    first.latency.labels(model="m").observe(0.003)
    text = generate_latest(first.registry).decode()
    assert f'{PREFIX}request_duration_seconds_bucket{{le="0.005",model="m"}} 1.0' in text
    assert "process_cpu_seconds_total" in text
    assert "python_info" in text


def test_version_number_is_the_gauge_value() -> None:
    assert version_number("12") == 12.0
    assert version_number("not-a-number") == -1.0
