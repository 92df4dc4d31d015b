"""The integration session's real stack: Airflow (4 components), MLflow and the Slack stand-in.

MLflow runs with basic auth, as in ``make up``: the session's MLflow clients log in as the
stack's admin through MLFLOW_TRACKING_USERNAME / PASSWORD, set while the stack runs.

One stack per test session, in a temporary home on free ports, started by the same code as
``make up`` (airmlops_dev.localstack). It parses the project's dags/ plus a smoke DAG bundle
written here (``SMOKE_DAG_ID``), and is always stopped at the end, with a check that none of its
processes is left. Its model specs are the demo models the tests use plus the test-only specs
in tests/integration/specs, with schedules removed so that only the tests trigger runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from airmlops_dev.airflow_api import AirflowClient
from airmlops_dev.localstack import down, up
from airmlops_dev.ports import LOOPBACK, free_ports
from airmlops_dev.stack_config import StackConfig
from airmlops_dev.stack_pids import stack_processes
from airmlops_dev.stack_secrets import MLFLOW_ENV, credentials, use_mlflow_credentials
from lineage_events import transport_config
from paths import PROJECT_DIR

SMOKE_DAG_ID = "airmlops_smoke"

SMOKE_DAG = '''
"""Smoke test of the local stack: settings loaded, pools usable, Slack stand-in reachable."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task


@dag(
    dag_id="airmlops_smoke",
    schedule=None,
    start_date=pendulum.datetime(2024, 1, 1, tz="UTC"),
    catchup=False,
    tags=["airmlops", "test"],
)
def airmlops_smoke():
    @task(pool="ml_training")
    def check_settings() -> str:
        from airflow.sdk import Variable

        value = Variable.get("airmlops_environment")
        assert value == "local", value
        return value

    @task
    def notify(run_id: str | None = None) -> None:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        SlackWebhookHook(slack_webhook_conn_id="slack_alerts").send_text(
            f"airmlops smoke test {run_id}"
        )

    check_settings() >> notify(run_id="{{ run_id }}")


airmlops_smoke()
'''


TEST_MODELS = ("customer_churn",)


def integration_models(target: Path) -> Path:
    """Demo specs the tests use plus test-only specs, all manual (no schedule)."""
    target.mkdir(parents=True, exist_ok=True)
    sources = [PROJECT_DIR / "include" / "models" / f"{m}.yaml" for m in TEST_MODELS]
    sources += sorted((Path(__file__).parent / "specs").glob("*.yaml"))
    for src in sources:
        spec = yaml.safe_load(src.read_text())
        spec.pop("schedules", None)
        if spec["name"] == "customer_churn":  # weak challengers in the tests must clear floors
            spec["metrics"]["floors"] = {"roc_auc": 0.6}
            # a heavily regularised champion predicts (almost) no churn, so its fairness gaps
            # are ~0; the comparison tests must not be decided by the fairness gate
            spec["promotion"] = {"fairness_tolerance": 0.5}
            # a run takes longer than 6 s: every train run also checks the deadline alert
            spec["alerts"] = {**spec.get("alerts", {}), "deadlines": {"train": 0.1}}
            # each drift check looks at the latest scoring run only; drift signals retraining
            spec["monitoring"] = {"window_runs": 1, "retrain_on": ["drift"]}
            # the comparison and fairness outcomes below were tuned without oversampling (the
            # demo's rebalance is covered by tests/unit/train/test_estimator.py)
            spec.pop("rebalance", None)
            # scored rows are also upserted into a SQLite table (Airflow connection scores_db)
            spec["scoring"] = {
                **spec.get("scoring", {}),
                "sink": {"conn_id": "scores_db", "table": "churn_scores"},
            }
        (target / src.name).write_text(yaml.safe_dump(spec, sort_keys=False))
        if spec["name"] == "customer_churn":
            (target / f"{REVIEWED_MODEL}.yaml").write_text(
                yaml.safe_dump(reviewed(spec), sort_keys=False)
            )
            (target / f"{DEPLOY_MODEL}.yaml").write_text(
                yaml.safe_dump(deployed(spec), sort_keys=False)
            )
    return target


REVIEWED_MODEL = "churn_reviewed"


def reviewed(churn: dict) -> dict:
    """customer_churn under another name, with human approval of every promotion."""
    return {
        **churn,
        "name": REVIEWED_MODEL,
        "tags": ["test"],
        "alerts": {},
        "monitoring": {},
        # a short approval timeout, so that a review nobody answers is tested to its end
        "promotion": {
            **churn["promotion"],
            "human_approval": True,
            "approval_timeout_hours": 0.03,
        },
        "data_checks": {
            **churn.get("data_checks", {}),
            "suite": "include/expectations/customer_churn.yaml",
        },
    }


DEPLOY_MODEL = "churn_deploy"
DEPLOY_ENVIRONMENTS = ("staging", "production")  # the stack itself is "local" (dev)


def deployed(churn: dict) -> dict:
    """customer_churn under another name, for the deploys between environments: its own
    registered model in each registry, so no other module's versions get in the way."""
    alerts = {k: v for k, v in churn.get("alerts", {}).items() if k != "deadlines"}
    return {
        **churn,
        "name": DEPLOY_MODEL,
        "tags": ["test"],
        "alerts": alerts,
        "data_checks": {
            **churn.get("data_checks", {}),
            "suite": "include/expectations/customer_churn.yaml",
        },
        # scored files only: the SQLite sink's table belongs to customer_churn
        "scoring": {k: v for k, v in churn.get("scoring", {}).items() if k != "sink"},
    }


def environments_file(target: Path) -> Path:
    """local (the stack's own registry) -> staging -> production (a human approves)."""
    target.write_text(
        yaml.safe_dump(
            {
                "environments": {
                    "local": {},
                    "staging": {"promotes_from": "local"},
                    "production": {
                        "promotes_from": "staging",
                        "approval": True,
                        "approval_timeout_hours": 1,
                    },
                }
            }
        )
    )
    return target


@pytest.fixture(scope="session")
def environment_ports() -> dict[str, int]:
    """Ports of the staging and production MLflow servers (started by test_deploy_dag; the
    stack's tasks reach them through the connections mlflow_staging and mlflow_production)."""
    return dict(zip(DEPLOY_ENVIRONMENTS, free_ports(len(DEPLOY_ENVIRONMENTS)), strict=True))


@pytest.fixture(scope="session")
def stack(
    tmp_path_factory: pytest.TempPathFactory, environment_ports: dict[str, int]
) -> Iterator[StackConfig]:
    """A running local stack for the whole session (always stopped and checked at the end)."""
    home = tmp_path_factory.mktemp("stack")
    smoke_dags = tmp_path_factory.mktemp("smoke_dags")
    (smoke_dags / "airmlops_smoke.py").write_text(SMOKE_DAG)
    models = integration_models(tmp_path_factory.mktemp("models"))
    extra_env = {
        "AIRMLOPS_MODELS_DIR": str(models),
        "AIRFLOW_CONN_SCORES_DB": json.dumps(
            {"conn_type": "sqlite", "host": str(home / "scores.db")}
        ),
        # every task's OpenLineage events, one file each (tests/support/lineage_events.py)
        "AIRFLOW__OPENLINEAGE__TRANSPORT": transport_config(home / "openlineage"),
        "AIRMLOPS_ENVIRONMENTS_FILE": str(
            environments_file(tmp_path_factory.mktemp("environments") / "environments.yaml")
        ),
        **{
            f"AIRFLOW_CONN_MLFLOW_{env.upper()}": json.dumps(
                {"conn_type": "http", "host": f"http://{LOOPBACK}:{port}"}
            )
            for env, port in environment_ports.items()
        },
    }
    airflow_port, mlflow_port, receiver_port, model_api_port = free_ports(4)
    cfg = StackConfig(
        home=home,
        airflow_port=airflow_port,
        mlflow_port=mlflow_port,
        receiver_port=receiver_port,
        model_api_port=model_api_port,
        extra_dag_folders=(smoke_dags,),
        extra_env=extra_env,
    )
    saved = {key: os.environ.get(key) for key in MLFLOW_ENV}
    try:
        up(cfg)
        # MLflow asks for credentials: the tests' own MLflow clients log in like the pack's
        # tasks, from MLFLOW_TRACKING_USERNAME / PASSWORD
        assert use_mlflow_credentials(cfg)
        yield cfg
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        down(cfg)
        left = stack_processes(cfg)
        assert not left, f"processes of the stack left after down(): {left}"


@pytest.fixture(scope="session")
def airflow_api(stack: StackConfig) -> AirflowClient:
    """A REST v2 client logged in as the stack's admin."""
    _, (user, password) = credentials(stack)
    # a loaded machine (2 shared cores) can hold a request past 30 s while tasks train
    return AirflowClient(stack.airflow_url, user, password, timeout=120)


# The session shares one stack and one registry: modules run in lifecycle order, so that the
# first validate run sees no champion, and scoring and the health probe find the champion the
# gate promoted. The outage campaign uses its own MLflow server and runs last.
MODULE_ORDER = (
    "test_distributed",  # its own stack: before the session stack starts
    "test_stack",
    "test_train_dag",
    "test_validate_dag",
    "test_score_dag",
    "test_drift_dag",
    "test_health_probe",
    "test_external_model",
    "test_deploy_dag",
    "test_mlflow_outage",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        if item.path.parent.name != "integration":
            return -1  # other suites keep their place, before the integration tests
        name = item.path.stem
        return MODULE_ORDER.index(name) if name in MODULE_ORDER else len(MODULE_ORDER)

    items.sort(key=rank)  # stable: the order inside a module is kept
