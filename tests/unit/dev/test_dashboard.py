"""The Grafana dashboard and the alert rules name only metrics that exist.

Model API metrics are checked against the API's own registry (`serve.metrics.Metrics`, the
sample names prometheus_client exports for each family); Airflow's against Airflow's catalogue
of metrics (`metrics_template.yaml` in the installed Airflow), with the names Prometheus's
OTLP receiver gives them. The provisioning files are checked against docker-compose.yml's
mounts. tests/integration/test_prometheus.py runs every query on a real Prometheus.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airmlops_core.serve.metrics import Metrics
from paths import PROJECT_DIR

DASHBOARDS = PROJECT_DIR / "docker" / "grafana" / "dashboards"
PROVISIONING = PROJECT_DIR / "docker" / "grafana" / "provisioning"
RULES = PROJECT_DIR / "docker" / "prometheus" / "alerts.yml"
COMPOSE = PROJECT_DIR / "docker-compose.yml"
# Prometheus's own series (scrape health, alert state)
BUILTIN = {"up", "ALERTS"}
KEYWORDS = {
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "bool",
    "offset",
    "inf",
    "nan",
}
# sample names of each family type, as prometheus_client writes them
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gauge": ("",),
    "info": ("_info",),
}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (Grafana's $variables allowed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\{[^}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", " ", text)  # ranges
    text = re.sub(
        r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text
    )  # grouping labels
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.:$])[A-Za-z_:][\w:]*", text):
        word = match.group()
        if text[match.end() :].lstrip().startswith("("):
            continue  # a function
        if word.lower() not in KEYWORDS:
            names.add(word)
    return names


def api_metric_names() -> set[str]:
    """Every sample name the model API's registry can export."""
    names: set[str] = set()
    for family in Metrics().registry.collect():
        names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
    return names


def airflow_metric_names() -> set[str]:
    """Airflow's counters and gauges as Prometheus's OTLP receiver names them."""
    spec = importlib.util.find_spec("airflow")  # the installed Airflow, not imported
    assert spec is not None
    assert spec.submodule_search_locations
    folder = Path(next(iter(spec.submodule_search_locations)))
    template = folder / "_shared" / "observability" / "metrics" / "metrics_template.yaml"
    catalogue = yaml.safe_load(template.read_text(encoding="utf-8"))
    names: set[str] = set()
    for metric in catalogue["metrics"]:
        if "{" in metric["name"]:
            continue  # names with variables
        base = "airflow_" + re.sub(r"[^\w]", "_", metric["name"])
        if metric["type"] == "counter":
            names.add(base + "_total")
        elif metric["type"] == "gauge":
            names.add(base)
    return names


def dashboards() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in sorted(DASHBOARDS.glob("*.json")):
        yield path.name, json.loads(path.read_text(encoding="utf-8"))


def queries(board: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(panel title, PromQL) of every panel target."""
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def rule_queries() -> Iterator[tuple[str, str]]:
    for group in yaml.safe_load(RULES.read_text(encoding="utf-8"))["groups"]:
        for rule in group["rules"]:
            yield rule["alert"], rule["expr"]


def unknown_metrics(exprs: Iterator[tuple[str, str]]) -> list[str]:
    known = api_metric_names() | airflow_metric_names() | BUILTIN
    return [
        f"{where}: {name}"
        for where, expr in exprs
        for name in sorted(metric_names(expr))
        if name not in known
    ]


def test_the_name_parser_finds_metrics_and_only_metrics():
    expr = (
        'histogram_quantile(0.95, sum by (model, le) (rate(x_bucket{model=~"$model", '
        'le!="sum"}[$__rate_interval]))) / on(model) group_left(team) y offset 5m > bool 1e3'
        " or absent_over_time(z_total[3m]) unless up"
    )
    assert metric_names(expr) == {"x_bucket", "y", "z_total", "up"}


def test_the_check_catches_a_misspelled_or_unexported_metric():
    bad = [
        ("typo", "rate(airmlops_model_api_request_total[5m])"),
        ("not a counter", "airmlops_model_api_served_version_total"),
        ("not airflow", "rate(airflow_scheduler_heartbeats_total[5m])"),
    ]
    assert len(unknown_metrics(iter(bad))) == 3
    good = [("ok", "rate(airmlops_model_api_requests_total[5m]) + airflow_ti_failures_total")]
    assert unknown_metrics(iter(good)) == []


@pytest.mark.parametrize(("name", "board"), list(dashboards()))
def test_every_dashboard_panel_queries_metrics_that_are_exported(name, board):
    exprs = list(queries(board))
    assert len(exprs) >= 10, f"{name}: only {len(exprs)} queries"
    assert unknown_metrics(iter(exprs)) == [], name
    for variable in board["templating"]["list"]:
        (metric,) = re.findall(r"label_values\((\w+),", variable["query"]["query"])
        assert metric in api_metric_names(), f"{name}: variable {variable['name']}: {metric}"
    # the panels the issue asks for
    titles = " | ".join(p["title"].lower() for p in board["panels"])
    for wanted in ("requests per second", "latency", "error", "rows scored", "heartbeat"):
        assert wanted in titles, f"{name}: no {wanted!r} panel"


def test_every_alert_rule_queries_metrics_that_are_exported():
    assert unknown_metrics(rule_queries()) == []


def test_panels_use_the_provisioned_data_source():
    (source,) = yaml.safe_load(
        (PROVISIONING / "datasources" / "prometheus.yml").read_text(encoding="utf-8")
    )["datasources"]
    compose = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    assert source["url"] == "http://prometheus:9090"
    assert "prometheus" in compose
    for name, board in dashboards():
        for panel in board["panels"]:
            if panel.get("targets"):
                assert panel["datasource"]["uid"] == source["uid"], (name, panel["title"])
    # the dashboard provider reads the folder compose mounts the dashboards at
    (provider,) = yaml.safe_load(
        (PROVISIONING / "dashboards" / "airmlops.yml").read_text(encoding="utf-8")
    )["providers"]
    mounts = [str(v).split(":") for v in compose["grafana"]["volumes"]]
    assert ["./docker/grafana/dashboards", provider["options"]["path"], "ro"] in mounts
    assert ["./docker/grafana/provisioning", "/etc/grafana/provisioning", "ro"] in mounts
