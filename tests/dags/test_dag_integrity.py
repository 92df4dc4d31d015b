"""DAG integrity: the dags/ folder parses cleanly, cheaply and without touching secrets."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from paths import PROJECT_DIR

HEAVY = [
    "pandas",
    "numpy",
    "sklearn",
    "scipy",
    "mlflow",
    "great_expectations",
    "pyarrow",
    "matplotlib",
    "boto3",
]

# A DAG with only Airflow imports and an Asset outlet: the baseline.
PLAIN_DAG = """
from datetime import datetime
from airflow.sdk import DAG, Asset
from airflow.providers.standard.operators.empty import EmptyOperator
with DAG("plain", start_date=datetime(2024, 1, 1), schedule=None):
    EmptyOperator(task_id="t", outlets=[Asset(name="a", uri="airmlops://a/b")])
"""

# Runs in a fresh interpreter: parses a plain DAG first (what Airflow itself imports),
# then dags/, counting connection and variable look-ups, and reports what parsing added.
PARSE_SCRIPT = textwrap.dedent("""
    import json, sys, tempfile, time
    PLAIN_DAG = {plain!r}
    from unittest import mock
    from airflow.dag_processing.dagbag import DagBag

    baseline = tempfile.mkdtemp()
    with open(baseline + "/plain_dag.py", "w") as f:
        f.write(PLAIN_DAG)
    DagBag(dag_folder=baseline)
    before = set(sys.modules)
    lookups = []
    def record(kind):
        def _f(*a, **k):
            lookups.append(kind)
            raise AssertionError(f"{kind} look-up at parse time")
        return _f
    patches = [
        mock.patch("airflow.sdk.BaseHook.get_connection", side_effect=record("connection")),
        mock.patch("airflow.sdk.Variable.get", side_effect=record("variable")),
        mock.patch("airflow.models.variable.Variable.get", side_effect=record("variable")),
        mock.patch("airflow.models.connection.Connection.get_connection_from_secrets",
                   side_effect=record("connection")),
    ]
    for p in patches:
        p.start()
    t0 = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    elapsed = time.perf_counter() - t0
    dags = {}
    for dag_id, dag in bag.dags.items():
        dags[dag_id] = {
            "tags": sorted(dag.tags),
            "tasks": {t.task_id: {"retries": t.retries, "owner": t.owner,
                                  "on_failure": len(t.on_failure_callback or []),
                                  "upstream": sorted(t.upstream_task_ids),
                                  "trigger_rule": str(getattr(t.trigger_rule, "value",
                                                              t.trigger_rule))}
                      for t in dag.tasks},
            "fileloc": dag.fileloc, "doc_md": bool(dag.doc_md),
        }
    added = sorted({m.split(".")[0] for m in set(sys.modules) - before})
    # the timetable the scheduler runs: the DAG as serialized and read back
    from airflow.serialization.serialized_objects import DagSerialization
    for dag_id, dag in bag.dags.items():
        tt = DagSerialization.from_dict(DagSerialization.to_dict(dag)).timetable
        cron = getattr(tt, "timetable", tt)
        dags[dag_id]["schedule"] = {
            "kind": type(tt).__name__, "cron": getattr(cron, "_expression", None),
            "timezone": str(getattr(cron, "_timezone", "")) or None,
            "assets": sorted(a.name for a in getattr(tt.asset_condition, "objects", [])),
        }
    print(json.dumps({"dags": dags, "errors": {k: v for k, v in bag.import_errors.items()},
                      "added": added, "lookups": lookups, "seconds": elapsed}))
""").replace("{plain!r}", repr(PLAIN_DAG))


def parse(dag_folder: Path, models_dir: Path) -> dict:
    env = {
        **os.environ,
        "AIRMLOPS_MODELS_DIR": str(models_dir),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "True",
    }
    out = subprocess.run(
        [sys.executable, "-c", PARSE_SCRIPT, str(dag_folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def parsed() -> dict:
    return parse(PROJECT_DIR / "dags", PROJECT_DIR / "include" / "models")


def test_no_import_errors(parsed: dict) -> None:
    assert parsed["errors"] == {}


def test_every_demo_model_has_its_dags(parsed: dict) -> None:
    for model in ("flight_delay", "diamond_price", "customer_churn"):
        for pipeline in ("train", "validate", "rollback"):
            assert f"{model}__{pipeline}" in parsed["dags"]


def test_parsing_imports_nothing_heavy(parsed: dict) -> None:
    heavy = sorted(set(parsed["added"]) & set(HEAVY))
    assert heavy == [], f"parsing dags/ imported {heavy}"


def test_no_connection_or_variable_lookups_at_parse_time(parsed: dict) -> None:
    assert parsed["lookups"] == []


def test_tags_retries_docs_and_alerts(parsed: dict) -> None:
    for dag_id, dag in parsed["dags"].items():
        if dag_id == "airmlops_health":  # one DAG for every model
            assert {"airmlops", "health"} <= set(dag["tags"])
        else:
            model, pipeline = dag_id.split("__")
            assert {"airmlops", f"model:{model}", pipeline} <= set(dag["tags"]), dag_id
        assert dag["doc_md"], dag_id
        for task_id, task in dag["tasks"].items():
            assert task["retries"] >= 1, f"{dag_id}.{task_id} has no retries"
            assert task["on_failure"] >= 1, f"{dag_id}.{task_id} has no failure alert"


def test_deploy_dag_shape(parsed: dict) -> None:
    """Every trained model gets a manual deploy DAG: resolve -> transfer -> verify -> approve
    -> promote, and reject after promote whatever promote did (a reviewer's Reject)."""
    deploy = parsed["dags"]["customer_churn__deploy"]
    assert list(deploy["tasks"]) == [
        "resolve",
        "transfer",
        "verify",
        "approve",
        "promote",
        "reject",
    ]
    assert deploy["tasks"]["promote"]["upstream"] == ["approve", "verify"]
    assert deploy["tasks"]["reject"]["upstream"] == ["promote", "verify"]
    assert deploy["tasks"]["reject"]["trigger_rule"] == "none_failed"
    assert deploy["schedule"]["kind"] == "NullTimetable"


def test_train_dag_shape(parsed: dict) -> None:
    assert list(parsed["dags"]["customer_churn__train"]["tasks"]) == [
        "extract",
        "check_data",
        "train",
        "evaluate",
        "register",
    ]
    retrain = parsed["dags"]["customer_churn__retrain"]["tasks"]
    assert list(retrain)[-2:] == ["register", "record_retrain"]
    # the cool-down starts only once the retrain registered its version
    assert retrain["record_retrain"]["upstream"] == ["extract", "register"]
    assert retrain["record_retrain"]["trigger_rule"] == "all_success"
    assert list(parsed["dags"]["customer_churn__validate"]["tasks"]) == [
        "resolve",
        "check_holdout",
        "gate",
        "promote",
        "reject",
    ]
    assert list(parsed["dags"]["customer_churn__rollback"]["tasks"]) == ["rollback"]


def test_bad_spec_breaks_only_its_own_dags(tmp_path: Path) -> None:
    models = tmp_path / "models"
    shutil.copytree(PROJECT_DIR / "include" / "models", models)
    bad = yaml.safe_load((models / "diamond_price.yaml").read_text())
    bad["task"] = "forecasting"
    (models / "diamond_price.yaml").write_text(yaml.safe_dump(bad))
    result = parse(PROJECT_DIR / "dags", models)
    assert not [d for d in result["dags"] if d.startswith("diamond_price__")]
    assert "flight_delay__train" in result["dags"]
    assert "customer_churn__train" in result["dags"]
    [(path, message)] = result["errors"].items()
    assert path.endswith("model_spec_errors.py")
    assert "diamond_price.yaml" in message
    assert "task" in message
    assert "forecasting" in message


SCHEDULES = {"train": "0 3 * * 1", "score": "15 * * * *", "drift": "@daily", "retrain": "0 4 1 * *"}


def test_spec_schedules_become_the_dags_timetables(tmp_path: Path) -> None:
    """Each `schedules` cron is the timetable the scheduler runs (the serialized DAG's), in
    UTC; score, drift and retrain also keep their Asset trigger; no cron: Asset or manual."""
    models = tmp_path / "models"
    models.mkdir()
    churn = yaml.safe_load((PROJECT_DIR / "include" / "models" / "customer_churn.yaml").read_text())
    suite = str(PROJECT_DIR / "include" / "expectations" / "customer_churn.yaml")
    scheduled = {**churn, "schedules": SCHEDULES}
    manual = {**churn, "name": "manual_churn", "data_checks": {"suite": suite}}
    manual.pop("schedules", None)
    for spec in (scheduled, manual):
        (models / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec))
    result = parse(PROJECT_DIR / "dags", models)
    assert result["errors"] == {}
    got = {dag_id: dag["schedule"] for dag_id, dag in result["dags"].items()}
    train = got["customer_churn__train"]
    assert train["kind"] in ("CronTriggerTimetable", "CronDataIntervalTimetable"), train
    assert (train["cron"], train["timezone"]) == ("0 3 * * 1", "UTC")
    for pipeline, cron, asset in (
        ("score", "15 * * * *", "landing"),
        ("drift", "0 0 * * *", "scored"),  # the preset, as croniter expands it
        ("retrain", "0 4 1 * *", "drift"),
    ):
        assert got[f"customer_churn__{pipeline}"] == {
            "kind": "AssetOrTimeSchedule",
            "cron": cron,
            "timezone": "UTC",
            "assets": [f"model/customer_churn/{asset}"],
        }, pipeline
    assert got["manual_churn__train"]["kind"] == "NullTimetable"
    for pipeline, asset in (("score", "landing"), ("drift", "scored"), ("retrain", "drift")):
        assert got[f"manual_churn__{pipeline}"] == {
            "kind": "AssetTriggeredTimetable",
            "cron": None,
            "timezone": None,
            "assets": [f"model/manual_churn/{asset}"],
        }, pipeline
