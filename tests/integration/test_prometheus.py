"""The shipped monitoring on a real Prometheus (Debian's package) and a real model API.

Prometheus runs the shipped scrape job (its bearer-token section unchanged, the target moved to
the test's API) and the shipped rule expressions, evaluated every second with a shorter `for`;
the test asserts that the API's metrics arrive with the values the test caused, that every
dashboard query is PromQL this Prometheus accepts, and that `ModelApiDown` fires once the API
is killed. promtool checks the shipped config and rules and runs their known-answer tests.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
import secrets
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

import crafted_models as cm
from airmlops_core.serve.auth import METRICS_TOKEN_ENV, generate_token
from model_api_process import Api, records
from paths import PROJECT_DIR
from prometheus_server import PrometheusServer, missing_tools, on_ci, promtool

pytestmark = pytest.mark.integration
# Before any server starts: skip here without Prometheus; on CI the tests run and fail.
if (_missing := missing_tools()) and not on_ci():
    pytest.skip(_missing, allow_module_level=True)

SHIPPED = PROJECT_DIR / "docker" / "prometheus"
CONFIG = SHIPPED / "prometheus.yml"
RULES = SHIPPED / "alerts.yml"
RULE_TESTS = SHIPPED / "alerts_test.yml"
DASHBOARD = PROJECT_DIR / "docker" / "grafana" / "dashboards" / "airmlops.json"
FEATURES = ["tenure", "monthly", "contract"]
TEST_FOR = "3s"  # every rule's `for` in the test copy
TRAFFIC_PANELS = {
    "Requests per second by model and status",
    "Latency percentiles",
    "Rows scored per second",
}


def shipped_config() -> dict[str, Any]:
    return yaml.safe_load(CONFIG.read_text(encoding="utf-8"))


def token_file(config: dict[str, Any], job: str) -> str:
    """The credentials_file of scrape job `job` (relative to the config's directory)."""
    (scrape,) = [s for s in config["scrape_configs"] if s["job_name"] == job]
    return str(scrape["authorization"]["credentials_file"])


def fast_rules() -> str:
    """The shipped rules with every `for` shortened to TEST_FOR; nothing else changed."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        group["interval"] = "1s"
        for rule in group["rules"]:
            rule["for"] = TEST_FOR
    return yaml.safe_dump(rules, sort_keys=False)


def rule_exprs(text: str) -> dict[str, str]:
    return {r["alert"]: r["expr"] for g in yaml.safe_load(text)["groups"] for r in g["rules"]}


def dashboard_queries(model: str) -> list[tuple[str, str]]:
    """(panel title, PromQL) of every dashboard target, Grafana's variables filled in."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return [
        (p["title"], t["expr"].replace("$model", model).replace("$__rate_interval", "1m"))
        for p in board["panels"]
        for t in p.get("targets", [])
    ]


def test_promtool_accepts_the_shipped_config_and_rules_and_their_known_answers(
    tmp_path: Path,
) -> None:
    # the config as shipped, next to its rule file and a token file, as in the container
    for path in (CONFIG, RULES, RULE_TESTS):
        shutil.copy(path, tmp_path / path.name)
    token = tmp_path / token_file(shipped_config(), "model-api")
    token.parent.mkdir()
    token.write_text(generate_token())
    checked = promtool("check", "config", str(tmp_path / CONFIG.name))
    assert checked.returncode == 0, checked.stdout
    assert "SUCCESS: 1 rule files found" in checked.stdout, checked.stdout
    rules = promtool("check", "rules", str(RULES))
    assert rules.returncode == 0, rules.stdout
    assert f"SUCCESS: {len(rule_exprs(RULES.read_text()))} rules found" in rules.stdout
    known = promtool("test", "rules", str(RULE_TESTS))
    assert known.returncode == 0, known.stdout
    # each alert has a known-answer test
    tested = set(re.findall(r"alertname: (\w+)", RULE_TESTS.read_text()))
    assert tested == set(rule_exprs(RULES.read_text()))
    # and the checks can fail: a rule with a typo, a test expecting another answer
    (tmp_path / "alerts.yml").write_text(RULES.read_text().replace("== 0", "=== 0", 1))
    assert promtool("check", "rules", str(tmp_path / "alerts.yml")).returncode != 0
    (tmp_path / "alerts.yml").write_text(RULES.read_text().replace("> 0.05", "> 0.5", 1))
    assert promtool("test", "rules", str(tmp_path / RULE_TESTS.name)).returncode != 0


@pytest.fixture
def served(mlflow_url: str, tmp_path: Path) -> Iterator[tuple[Api, str, str, str]]:
    """A model API serving a fresh model's champion; (api, model, version, metrics token)."""
    model = f"prom_{secrets.token_hex(3)}"
    version = cm.register_dir(mlflow_url, model, cm.mlflow_dir(tmp_path / "model"))
    metrics_token = generate_token()
    api = Api(mlflow_url, model, tmp_path / "api.log", env={METRICS_TOKEN_ENV: metrics_token})
    try:
        # generous: loading a model takes seconds, but minutes on a crowded 2-core machine
        api.wait(lambda: api.served_versions(model) == [version], "the champion served", 300)
        yield api, model, version, metrics_token
    finally:
        api.stop()


def test_prometheus_scrapes_the_model_api_and_fires_model_api_down_when_it_dies(
    served: tuple[Api, str, str, str],
) -> None:
    api, model, version, metrics_token = served
    target = f"127.0.0.1:{api.port}"
    config = shipped_config()
    config["global"] = {"scrape_interval": "1s", "evaluation_interval": "1s"}
    jobs = {s["job_name"]: s for s in config["scrape_configs"]}
    jobs["model-api"]["static_configs"] = [{"targets": [target]}]
    # the same job with the API token's neighbour: a wrong token is refused, the target down
    wrong = copy.deepcopy(jobs["model-api"])
    wrong["job_name"] = "model-api-wrong-token"
    wrong["authorization"]["credentials_file"] = "secrets/wrong_token"
    config["scrape_configs"] = [jobs["model-api"], wrong]
    rules = fast_rules()
    assert rule_exprs(rules) == rule_exprs(RULES.read_text())  # the shipped expressions
    files = {
        "alerts.yml": rules,
        token_file(config, "model-api"): metrics_token,
        "secrets/wrong_token": generate_token(),
    }

    # traffic whose counts the test knows
    good, rows_each = 4, 3
    X = cm.training_frame(rows_each, seed=5)[FEATURES]
    for _ in range(good):
        r = api.http.post(f"/invocations/{model}", json={"dataframe_records": records(X)})
        assert r.status_code == 200, r.text
    bad = api.http.post(
        f"/invocations/{model}", json={"dataframe_records": records(X.drop(columns="tenure"))}
    )
    assert bad.status_code == 400, bad.text
    reason = bad.json()["error_code"].lower()
    assert api.anonymous.post(f"/invocations/{model}", json={}).status_code == 401

    with PrometheusServer(config, files) as prom:
        (scraped,) = prom.wait_for(
            lambda: [t for t in prom.targets("model-api") if t["health"] == "up"],
            "the model API target up",
        )
        assert scraped["scrapeUrl"] == f"http://{target}/metrics"
        (refused,) = prom.wait_for(
            lambda: [t for t in prom.targets("model-api-wrong-token") if t["lastError"]],
            "the wrong-token scrape refused",
        )
        assert refused["health"] == "down"
        assert "401" in refused["lastError"], refused

        # the API's metrics, through Prometheus, hold what the test sent
        sel = f'job="model-api", model="{model}"'
        statuses = prom.wait_for(
            lambda: prom.values(f"airmlops_model_api_requests_total{{{sel}}}", "status"),
            "request counts",
        )
        assert statuses == {"200": good, "400": 1}
        assert prom.values(f"airmlops_model_api_predicted_rows_total{{{sel}}}", "model") == {
            model: good * rows_each
        }
        assert prom.values(f"airmlops_model_api_request_errors_total{{{sel}}}", "reason") == {
            reason: 1
        }
        refused_by_reason = 'airmlops_model_api_auth_failures_total{job="model-api"}'
        refusals = prom.wait_for(  # a scrape after the wrong-token job's first one
            lambda: (v := prom.values(refused_by_reason, "reason")).get("invalid") and v,
            "the wrong token's refusals counted",
        )
        assert refusals["missing"] == 1  # the anonymous request
        assert prom.values(
            f"airmlops_model_api_request_duration_seconds_count{{{sel}}}", "model"
        ) == {model: good + 1}
        for gauge in ("served_version", "champion_version"):
            assert prom.values(f"airmlops_model_api_{gauge}{{{sel}}}", "model") == {
                model: float(version)
            }

        # every dashboard query is PromQL this Prometheus evaluates; the traffic panels have
        # data (once two scrapes are in their rate window)
        queries = dashboard_queries(model)
        assert TRAFFIC_PANELS <= {title for title, _ in queries}
        for title, expr in queries:
            prom.query(expr)  # raises on a PromQL error
            if title in TRAFFIC_PANELS:
                prom.wait_for(functools.partial(prom.query, expr), f"{title}: data for {expr}")

        # the rules run: no API alert while it answers; the heartbeat rule fires (no Airflow)
        firing = 'ALERTS{alertstate="firing"}'
        prom.wait_for(
            lambda: prom.values(firing, "alertname").get("AirflowSchedulerHeartbeatMissing"),
            "the scheduler-heartbeat alert (no Airflow here)",
        )
        assert "ModelApiDown" not in prom.values(firing, "alertname")
        health = {r["name"]: r["health"] for g in prom.api("rules")["groups"] for r in g["rules"]}
        assert health == dict.fromkeys(rule_exprs(rules), "ok")

        # kill the API: ModelApiDown goes pending, then fires for its instance
        os.killpg(api.proc.pid, signal.SIGKILL)
        api.proc.wait(timeout=30)
        down = prom.wait_for(
            lambda: prom.query('ALERTS{alertname="ModelApiDown", alertstate="firing"}'),
            "ModelApiDown firing",
        )
        assert [a["metric"]["instance"] for a in down] == [target]
        assert down[0]["metric"]["severity"] == "critical"
        (dead,) = prom.targets("model-api")
        assert dead["health"] == "down"
