"""The production topology, natively: Airflow on the CeleryExecutor with two workers, PostgreSQL,
Redis, MLflow on PostgreSQL with S3 artifacts behind basic auth, all real and on 127.0.0.1.

No shared disk: every component (each Airflow component, each Celery worker, the model API)
runs in a private local directory of its own (its working directory, TMPDIR, AIRMLOPS_LOCAL_DIR
and AIRMLOPS_DATA_DIR; StackConfig.private_component_dirs), as on separate hosts. Everything
the DAGs hand each other goes through SeaweedFS S3 (training data, batches, work files, scored
outputs and manifests, quarantine, labels, the undelivered-alert log), PostgreSQL (Airflow's
Variables: drift state, cool-downs) and MLflow. The whole loop runs there: train -> gate ->
score -> drift on a shifted batch -> labels land on S3 -> retrain -> gate -> promote, and no
private directory holds a scored output or manifest afterwards.

docker-compose.yml describes this topology for one Docker host; no Docker engine runs where the
pack is built, so this module starts the same services as processes (airmlops_dev.localstack
with a Celery configuration, tests/support/pgserver.py, redisserver.py, s3server.py), runs
the whole lifecycle of the churn demo model on it, then injects faults:

- a Celery worker SIGKILLed (its whole process tree, like a lost machine) while it runs a mapped
  scoring task: the scheduler notices the missing task heartbeats, the task is retried on the
  other worker, and the run completes with every row scored exactly once;
- PostgreSQL restarted (fast shutdown) between two runs;
- Redis restarted in the middle of a scoring run.

Secrets: a probe DAG logs a connection password and a sensitive variable on purpose (the log
must show ``***``), and no task or component log may contain any secret value of the stack.

Timings are printed (run with -s) as a tally. The stack has its own ports and home; it is
always stopped at the end, with a check that none of its processes is left.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psutil
import pytest
import requests
import yaml

import drift_loop
from airmlops_core.io import data, s3_objects, scored
from airmlops_core.io.store import Store
from airmlops_core.score import reading
from airmlops_dev import demo_data, localstack
from airmlops_dev.airflow_api import AirflowClient
from airmlops_dev.ports import free_ports
from airmlops_dev.stack_config import COMPONENTS, StackConfig
from airmlops_dev.stack_health import format_status, status
from airmlops_dev.stack_pids import read_pid, stack_processes
from airmlops_dev.stack_secrets import credentials, ensure_secrets, mlflow_credentials
from airmlops_dev.webhook_receiver import read_messages
from paths import PROJECT_DIR
from pgserver import PostgresServer, PostgresUnavailable
from redisserver import RedisServer, redis_binary
from s3server import SeaweedS3
from slack_messages import messages_about

pytestmark = pytest.mark.integration

MODEL = "customer_churn"
BUCKET = "mlflow-artifacts"
DATA_BUCKET = "airmlops-data"  # everything the DAGs hand each other
PROBE_DAG_ID = "airmlops_secret_probe"
PROBE_VARIABLE = "airmlops_probe_api_key"  # "api_key": a name Airflow masks
# Short failure detection for the test (production keeps Airflow's defaults: 300 s timeout).
HEARTBEAT_ENV = {
    # a running task whose heartbeat is older than this is failed (and retried) by the scheduler
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "20",
    "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
    # the task supervisor on the worker heartbeats at least this often
    "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "3",
    # a task lost between the scheduler and a worker (broker down) is re-queued after this
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
    "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL": "10",
}

PROBE_DAG = '''
"""Uses the stack's secrets in a task and logs them on purpose: the log must show ***."""

from __future__ import annotations

import logging

import pendulum
from airflow.sdk import BaseHook, Variable, dag, task

log = logging.getLogger(__name__)


@dag(dag_id="airmlops_secret_probe", schedule=None,
     start_date=pendulum.datetime(2024, 1, 1, tz="UTC"), catchup=False, tags=["test"])
def airmlops_secret_probe():
    @task
    def use_secrets() -> str:
        conn = BaseHook.get_connection("mlflow_default")
        log.info("PROBE mlflow password=%s", conn.password)
        print("PROBE printed mlflow password=" + conn.password)
        log.info("PROBE api key=%s", Variable.get("airmlops_probe_api_key"))
        return conn.login

    use_secrets()


airmlops_secret_probe()
'''


@dataclass
class Distributed:
    """The running topology and what the tests need to reach it."""

    cfg: StackConfig
    api: AirflowClient
    pg: PostgresServer
    redis: RedisServer
    s3: SeaweedS3
    passwords: dict[str, str]
    probe_value: str
    tally: list[str] = field(default_factory=list)
    killed: set[int] = field(default_factory=set)  # pids the fault tests SIGKILLed

    def note(self, line: str) -> None:
        self.tally.append(line)
        print(f"[distributed] {line}", flush=True)


def s3_uri(*parts: str) -> str:
    """A location in the data bucket."""
    return "/".join([f"s3://{DATA_BUCKET}", *parts])


def churn_spec(target: Path) -> Path:
    """The churn demo spec, manual only, with the integration suite's relaxed floors, and all
    of its state on S3 (through the stack's aws_default connection)."""
    target.mkdir(parents=True, exist_ok=True)
    spec = yaml.safe_load((PROJECT_DIR / "include" / "models" / f"{MODEL}.yaml").read_text())
    spec.pop("schedules", None)
    spec["source"] = {"kind": "s3", "uri": s3_uri("demo", "churn.parquet")}
    spec["scoring"] = {
        **spec.get("scoring", {}),
        "input": s3_uri("landing", MODEL) + "/",
        "output": s3_uri("scored"),
    }
    spec["labels"] = {"kind": "s3", "uri": s3_uri("labels", MODEL) + "/"}
    spec["metrics"]["floors"] = {"roc_auc": 0.6}
    # each drift check looks at the latest scoring run only; drift signals retraining
    spec["monitoring"] = {"window_runs": 1, "retrain_on": ["drift"]}
    # the retrained version replaces the champion unless it is worse by 0.05 of roc_auc (its
    # window holds the shifted, labelled rows, so it is not expected to be clearly better);
    # the fairness gate is not what this module tests
    spec["promotion"] = {"margin": -0.05, "fairness_tolerance": 0.5}
    (target / f"{MODEL}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return target


def _check_celery_compatible() -> None:
    """The CeleryExecutor must import with the locked celery (celery 5.7 removed
    celery.backends.database.retry, which apache-airflow-providers-celery 3.26 imports)."""
    probe = subprocess.run(
        [sys.executable, "-c", "import airflow.providers.celery.executors.celery_executor_utils"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if probe.returncode:
        from importlib import metadata

        pytest.fail(
            f"the CeleryExecutor does not import: celery {metadata.version('celery')} with "
            f"apache-airflow-providers-celery "
            f"{metadata.version('apache-airflow-providers-celery')}: "
            f"{probe.stderr.strip().splitlines()[-1]}"
        )


def _psql(pg: PostgresServer, user: str, password: str, db: str, sql: str) -> str:
    """One query over TCP with a password login, as the services connect."""
    result = subprocess.run(
        ["psql", "-h", "127.0.0.1", "-U", user, "-d", db, "-tAc", sql],
        env={
            "PATH": pg.env["PATH"],
            "PGPORT": pg.env["PGPORT"],
            "PGPASSWORD": password,
            "PGCONNECT_TIMEOUT": "10",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Distributed]:
    """PostgreSQL, Redis, SeaweedFS S3 and the Celery stack; all stopped at the end."""
    if redis_binary() is None:
        pytest.skip("redis-server not installed (make system-deps)")
    try:
        pg = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    for key in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_PROFILE",
        "MLFLOW_TRACKING_USERNAME",
        "MLFLOW_TRACKING_PASSWORD",
    ):
        assert key not in os.environ, f"the test process must not hold {key}"
    _check_celery_compatible()
    started = time.monotonic()
    home = tmp_path_factory.mktemp("dist")
    probe_dags = tmp_path_factory.mktemp("probe_dags")
    (probe_dags / "airmlops_secret_probe.py").write_text(PROBE_DAG)
    models = churn_spec(home / "models")
    passwords = {
        name: f"{name[:2].lower()}-" + secrets.token_urlsafe(18)
        for name in ("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD")
    }
    probe_value = "probe-" + secrets.token_hex(16)
    redis = RedisServer()
    s3 = SeaweedS3()
    cfg: StackConfig | None = None
    env_before = dict(os.environ)
    try:
        pg.start()
        init = subprocess.run(
            ["bash", str(PROJECT_DIR / "docker" / "postgres" / "init-databases.sh")],
            env={**pg.env, **passwords},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert init.returncode == 0, init.stderr
        redis.start()
        s3.start()
        s3.client().create_bucket(Bucket=BUCKET)
        s3.client().create_bucket(Bucket=DATA_BUCKET)
        airflow_db = pg.url("airflow", passwords["AIRFLOW_DB_PASSWORD"], "airflow")
        airflow_port, mlflow_port, receiver_port, model_api_port = free_ports(4)
        cfg = StackConfig(
            home=home / "stack",
            airflow_port=airflow_port,
            mlflow_port=mlflow_port,
            receiver_port=receiver_port,
            model_api_port=model_api_port,
            extra_dag_folders=(probe_dags,),
            extra_env={
                "AIRMLOPS_MODELS_DIR": str(models),
                f"AIRFLOW_VAR_{PROBE_VARIABLE.upper()}": probe_value,
                # work files (and the undelivered-alert log under them) on S3, reached with
                # the aws_default connection, as every other piece of shared state
                "AIRMLOPS_WORK_URI": s3_uri("work"),
                "AIRFLOW_CONN_AWS_DEFAULT": json.dumps(
                    {
                        "conn_type": "aws",
                        "login": s3.access_key,
                        "password": s3.secret_key,
                        "extra": {"endpoint_url": s3.endpoint_url, "region_name": "us-east-1"},
                    }
                ),
                **HEARTBEAT_ENV,
            },
            private_component_dirs=True,
            executor="CeleryExecutor",
            sql_alchemy_conn=airflow_db,
            celery_broker_url=redis.url(0),
            celery_result_backend=f"db+{airflow_db}",
            celery_workers=2,
            worker_concurrency=1,
            mlflow_backend_store_uri=pg.url("mlflow", passwords["MLFLOW_DB_PASSWORD"], "mlflow"),
            mlflow_artifacts_destination=f"s3://{BUCKET}",
            mlflow_server_env={
                "AWS_ACCESS_KEY_ID": s3.access_key,
                "AWS_SECRET_ACCESS_KEY": s3.secret_key,
                "AWS_DEFAULT_REGION": "us-east-1",
                "MLFLOW_S3_ENDPOINT_URL": s3.endpoint_url,
            },
            mlflow_auth=True,
            startup_timeout=300.0,
        )
        data.write_frame(demo_data.churn(), s3_uri("demo", "churn.parquet"), s3_client=s3.client())
        localstack.up(cfg)
        _, (user, password) = credentials(cfg)
        # the test's own MLflow client authenticates like the pack's tasks: from the environment
        creds = mlflow_credentials(cfg)
        assert creds is not None
        os.environ["MLFLOW_TRACKING_USERNAME"], os.environ["MLFLOW_TRACKING_PASSWORD"] = creds
        os.environ["MLFLOW_TRACKING_URI"] = cfg.mlflow_url
        dist = Distributed(
            cfg,
            AirflowClient(cfg.airflow_url, user, password),
            pg,
            redis,
            s3,
            passwords,
            probe_value,
        )
        dist.note(
            f"stack up in {time.monotonic() - started:.0f}s: postgres, redis, seaweedfs, "
            f"mlflow (basic auth), airflow on CeleryExecutor with {', '.join(cfg.workers)}"
        )
        yield dist
        print("\n[distributed] tally:\n  " + "\n  ".join(dist.tally), flush=True)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
        try:
            if cfg is not None:
                localstack.down(cfg)
                left = stack_processes(cfg)
                assert not left, f"processes of the stack left after down(): {left}"
        finally:
            s3.close()
            redis.close()
            pg.close()


def _mlflow(cfg: StackConfig) -> Any:
    from mlflow import MlflowClient

    return MlflowClient(cfg.mlflow_url)


def _environ(pid: int) -> dict[str, str]:
    return dict(psutil.Process(pid).environ())


def _pid(cfg: StackConfig, component: str) -> int:
    pid = read_pid(cfg.pid_file(component))
    assert pid, f"no pid file for {component}"
    return pid


def _tree(pid: int) -> list[int]:
    """`pid` and all its descendants (Airflow task processes lead process groups of their own,
    so a process-group kill would miss them)."""
    try:
        return [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return [pid]


def _kill_tree(pid: int) -> list[int]:
    """Freeze the whole tree (no fork escapes), then SIGKILL every process: a lost machine."""
    tree = _tree(pid)
    for p in tree:
        os.kill(p, signal.SIGSTOP)
    tree = sorted(set(tree) | set(_tree(pid)))
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return tree


def store(dist: Distributed) -> Store:
    """The data layer on the stack's S3, as the test (another host) reaches it."""
    return Store(client=dist.s3.client())


def land(dist: Distributed, folder: str, parts: int, copies: int = 1) -> tuple[pd.DataFrame, str]:
    """The churn features (no label), `copies` times with distinct keys, as `parts` files
    under an s3:// prefix of the data bucket (returned)."""
    base = demo_data.churn().drop(columns=["churn"])
    frames = []
    for i in range(copies):
        copy = base.copy()
        copy["customer_id"] = copy["customer_id"] + i * 10**9  # int64 keys, as the suite wants
        frames.append(copy)
    df = pd.concat(frames, ignore_index=True)
    prefix = s3_uri("batches", folder)
    client = dist.s3.client()
    for i, chunk in enumerate(np.array_split(np.arange(len(df)), parts)):
        part = df.iloc[chunk].reset_index(drop=True)
        data.write_frame(part, f"{prefix}/part-{i}.parquet", s3_client=client)
    return df, prefix


def scored_prefix(api: AirflowClient, run_id: str) -> str:
    """The s3:// prefix of a scoring run's outputs."""
    run = api.dag_run(f"{MODEL}__score", run_id)
    when = run.get("logical_date") or run["run_after"]
    return scored.run_output_uri(s3_uri("scored"), MODEL, when)


def _name(uri: str) -> str:
    return uri.rsplit("/", 1)[-1]


def check_output(
    dist: Distributed, run_id: str, frame: pd.DataFrame, inputs: str
) -> dict[str, str]:
    """Rows out == rows in, each key once, every file byte-identical to the expected scoring
    of its input (recomputed here with the pinned version), no temp object left behind."""
    from airmlops_core.quality.suite import suite_for
    from airmlops_core.score.gate import score_or_quarantine
    from airmlops_core.score.model import load_model
    from airmlops_core.spec import load_spec

    cfg, api, objects = dist.cfg, dist.api, store(dist)
    out = scored_prefix(api, run_id)
    files = objects.list_files(out, suffix=".parquet")
    parts = objects.list_files(inputs, suffix=".parquet")
    assert [_name(f) for f in files] == [_name(p) for p in parts]
    bucket, key = s3_objects.split_s3(out)
    every = [
        o["Key"]
        for page in dist.s3.client()
        .get_paginator("list_objects_v2")
        .paginate(Bucket=bucket, Prefix=key + "/")
        for o in page.get("Contents", [])
    ]
    assert not [k for k in every if k.endswith(".tmp") or "/." in k], "partial object left"
    scored_rows = pd.concat(
        [data.read_frame(f, s3_client=objects.s3_client) for f in files], ignore_index=True
    )
    assert len(scored_rows) == len(frame), "rows out != rows in"
    assert scored_rows["customer_id"].is_unique, "a row was scored twice"
    assert set(scored_rows["customer_id"]) == set(frame["customer_id"])
    [version] = set(scored_rows["model_version"])
    run = api.dag_run(f"{MODEL}__score", run_id)
    when = run.get("logical_date") or run["run_after"]
    spec = load_spec(Path(cfg.extra_env["AIRMLOPS_MODELS_DIR"]) / f"{MODEL}.yaml")
    model = load_model(_mlflow(cfg), MODEL, version)
    expected_dir = cfg.root / "expected" / run_id.replace(":", "_").replace("+", "_")
    digests = {}
    for part in parts:
        local_input = expected_dir / "in" / _name(part)
        local_input.parent.mkdir(parents=True, exist_ok=True)
        local_input.write_bytes(objects.read_bytes(part))
        target = expected_dir / _name(part)
        score_or_quarantine(
            model,
            str(local_input),
            suite=suite_for(spec).model_copy(update={"extra_columns": "warn"}),
            output_uri=str(target),
            quarantine_uri=str(expected_dir / "q" / local_input.stem),
            row_key=spec.row_key,
            logical_date=when,
            chunk_rows=spec.scoring.chunk_rows,
        )
        got = objects.read_bytes(f"{out}/{_name(part)}")
        assert got == target.read_bytes(), f"{_name(part)} differs from its expected scoring"
        digests[_name(part)] = objects.sha256(f"{out}/{_name(part)}")
    return digests


def score_run(d: Distributed, inputs: str) -> str:
    return d.api.trigger(f"{MODEL}__score", conf={"input": inputs})


def _tis(api: AirflowClient, dag_id: str, run_id: str, task_id: str) -> list[dict[str, Any]]:
    return [t for t in api.task_instances(dag_id, run_id) if t["task_id"] == task_id]


def _tries(api: AirflowClient, run_id: str, map_index: int) -> list[dict[str, Any]]:
    """Every try of one mapped score task, oldest first."""
    from urllib.parse import quote

    path = (
        f"/api/v2/dags/{MODEL}__score/dagRuns/{quote(run_id, safe='')}/taskInstances/"
        f"score/{map_index}/tries"
    )
    return sorted(api.get(path)["task_instances"], key=lambda t: t["try_number"])


def _ts(value: str) -> float:
    import datetime as dt

    return dt.datetime.fromisoformat(value).timestamp()


def _celery_deliveries(cfg: StackConfig) -> list[str]:
    """Celery task ids each worker logged as received (a redelivery shows up twice)."""
    import re

    ids = []
    for worker in cfg.workers:
        text = cfg.log_file(worker).read_text(errors="replace")
        ids += re.findall(r"Task execute_workload\[([0-9a-f-]+)\] received", text)
    return ids


# The lifecycle ----------------------------------------------------------------------------------
def test_topology_is_distributed_and_locked_down(dist: Distributed) -> None:
    cfg = dist.cfg
    rows = status(cfg)
    assert [r.component for r in rows] == [
        *COMPONENTS,
        "celery-worker-1",
        "celery-worker-2",
    ]
    assert all(r.alive and r.healthy for r in rows), format_status(rows)
    # MLflow: basic auth on, the pack's credentials from the environment work
    search = f"{cfg.mlflow_url}/api/2.0/mlflow/experiments/search?max_results=1"
    assert requests.get(search, timeout=10).status_code == 401
    assert requests.get(search, timeout=10, auth=("admin", "wrong-password")).status_code == 401
    creds = mlflow_credentials(cfg)
    assert creds is not None
    assert requests.get(search, timeout=10, auth=creds).status_code == 200
    # only the MLflow server holds S3 credentials as AWS_* variables: clients go through its
    # artifact proxy (the data bucket is reached through the aws_default connection)
    assert _environ(_pid(cfg, "mlflow"))["AWS_SECRET_ACCESS_KEY"] == dist.s3.secret_key
    for component in ("scheduler", "api-server", "celery-worker-1", "celery-worker-2", "model-api"):
        env = _environ(_pid(cfg, component))
        assert "AWS_SECRET_ACCESS_KEY" not in env, component
        if component != "model-api":
            assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert env["MLFLOW_TRACKING_USERNAME"] == "admin"
    # no shared disk: each component runs in its own private directory, its temp files and
    # local defaults there too
    for component in cfg.components:
        own = cfg.component_dir(component)
        assert own.parent == cfg.root / "private", component
        proc = psutil.Process(_pid(cfg, component))
        assert Path(proc.cwd()) == own, component
        env = proc.environ()
        assert env["TMPDIR"] == str(own / "tmp"), component
        assert env["AIRMLOPS_LOCAL_DIR"] == str(own), component
        assert env["AIRMLOPS_DATA_DIR"] == str(own / "data"), component
        if component not in ("receiver", "mlflow"):
            assert env["AIRMLOPS_WORK_URI"] == s3_uri("work"), component
    # the metadata DB is the PostgreSQL server: Airflow's tables are there
    assert (
        int(
            _psql(
                dist.pg,
                "airflow",
                dist.passwords["AIRFLOW_DB_PASSWORD"],
                "airflow",
                "select count(*) from information_schema.tables "
                "where table_name in ('dag_run', 'task_instance')",
            )
        )
        == 2
    )


@pytest.fixture(scope="module")
def trained(dist: Distributed) -> dict[str, Any]:
    """Train, then the candidate Asset runs validate, which promotes the first version."""
    api = dist.api
    started = time.monotonic()
    api.wait_for_dag(f"{MODEL}__train", timeout=180)
    known = {r["dag_run_id"] for r in api.dag_runs(f"{MODEL}__validate")}
    run_id = api.trigger(f"{MODEL}__train")
    train_state = api.wait(f"{MODEL}__train", run_id, timeout=600)
    validate_run = api.wait_for_new_run(f"{MODEL}__validate", known, timeout=120)
    validate_state = api.wait(f"{MODEL}__validate", validate_run, timeout=600)
    dist.note(
        f"train + validate: {train_state} / {validate_state} in {time.monotonic() - started:.0f}s"
    )
    return {"train": (run_id, train_state), "validate": (validate_run, validate_state)}


def test_train_validate_promote_with_artifacts_in_s3(dist: Distributed, trained) -> None:
    from airmlops_core.tracking import registry

    assert trained["train"][1] == "success"
    assert trained["validate"][1] == "success"
    client = _mlflow(dist.cfg)
    champion = registry.alias_version(client, MODEL, registry.CHAMPION)
    assert champion is not None, "validate did not promote the first version"
    version = client.get_model_version(MODEL, champion)
    run = client.get_run(version.run_id)
    # artifacts are proxied: the client sees mlflow-artifacts:/, the server stores them in S3
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/"), run.info.artifact_uri
    keys = [
        o["Key"]
        for page in dist.s3.client().get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
        for o in page.get("Contents", [])
    ]
    assert any(k.endswith("/MLmodel") for k in keys), keys[:20]
    assert any(version.run_id in k or (version.source or "").split("/")[-1] in k for k in keys)
    # the registry lives in PostgreSQL
    assert (
        _psql(
            dist.pg,
            "mlflow",
            dist.passwords["MLFLOW_DB_PASSWORD"],
            "mlflow",
            f"select name from registered_models where name = '{MODEL}'",
        )
        == MODEL
    )
    # the tasks ran on the Celery workers
    hosts = {t["hostname"] for t in dist.api.task_instances(f"{MODEL}__train", trained["train"][0])}
    assert hosts <= {dist.cfg.worker_hostname(w) for w in dist.cfg.workers}, hosts


@pytest.fixture(scope="module")
def fanout(dist: Distributed, trained) -> dict[str, Any]:
    """A scoring run over 4 partitions, and the drift run its scored Asset triggers."""
    api = dist.api
    frame, folder = land(dist, "fanout", parts=4)
    known = {r["dag_run_id"] for r in api.dag_runs(f"{MODEL}__drift")}
    started = time.monotonic()
    run_id = score_run(dist, folder)
    state = api.wait(f"{MODEL}__score", run_id, timeout=600)
    scored_s = time.monotonic() - started
    drift_run = api.wait_for_new_run(f"{MODEL}__drift", known, timeout=180)
    drift_state = api.wait(f"{MODEL}__drift", drift_run, timeout=600)
    dist.note(f"score 4 partitions: {state} in {scored_s:.0f}s; drift: {drift_state}")
    return {
        "run_id": run_id,
        "state": state,
        "frame": frame,
        "folder": folder,
        "drift": (drift_run, drift_state),
    }


def test_scoring_fans_out_over_both_workers(dist: Distributed, fanout) -> None:
    assert fanout["state"] == "success"
    tis = _tis(dist.api, f"{MODEL}__score", fanout["run_id"], "score")
    assert sorted(t["map_index"] for t in tis) == [0, 1, 2, 3]
    hosts = {t["hostname"] for t in tis}
    workers = {dist.cfg.worker_hostname(w) for w in dist.cfg.workers}
    assert hosts == workers, f"mapped score tasks ran on {hosts}, expected both of {workers}"
    dist.note(
        "score fan-out: mapped tasks by worker: "
        + ", ".join(
            f"{h.split('.')[0]}={sum(t['hostname'] == h for t in tis)}" for h in sorted(hosts)
        )
    )
    check_output(dist, fanout["run_id"], fanout["frame"], fanout["folder"])


def test_drift_runs_on_the_scored_batch(dist: Distributed, fanout) -> None:
    drift_run, state = fanout["drift"]
    assert state == "success"
    client = _mlflow(dist.cfg)
    exp = client.get_experiment_by_name(f"airmlops/{MODEL}")
    [run] = client.search_runs(
        [exp.experiment_id],
        filter_string=(
            f"tags.`airmlops.purpose` = 'drift' and tags.`airmlops.run_id` = '{drift_run}'"
        ),
    )
    assert run.data.tags["airmlops.drift_status"] == "no_drift"


def test_secrets_are_masked_in_task_logs(dist: Distributed, fanout) -> None:
    api = dist.api
    api.wait_for_dag(PROBE_DAG_ID, timeout=120)
    run_id = api.trigger(PROBE_DAG_ID)
    assert api.wait(PROBE_DAG_ID, run_id, timeout=300) == "success"
    logs = dist.cfg.airflow_home / "logs"
    [probe_log] = list(
        logs.glob(f"dag_id={PROBE_DAG_ID}/run_id={run_id}/task_id=use_secrets/attempt=1.log")
    )
    text = probe_log.read_text()
    assert "PROBE mlflow password=***" in text, text[-2000:]
    assert "PROBE printed mlflow password=***" in text
    assert "PROBE api key=***" in text
    creds = mlflow_credentials(dist.cfg)
    assert creds is not None
    secrets_ = {
        "mlflow admin password": creds[1],
        "probe variable": dist.probe_value,
        "s3 secret key": dist.s3.secret_key,
        "redis password": dist.redis.password,
        **dist.passwords,
    }
    for key, value in ensure_secrets(dist.cfg).items():
        secrets_[key] = value
    task_logs = [p for p in logs.rglob("*") if p.is_file()]
    assert len(task_logs) > 10
    component_logs = [p for p in dist.cfg.logs_dir.glob("*.log")]
    for path in task_logs + component_logs:
        body = path.read_text(errors="replace")
        leaked = [name for name, value in secrets_.items() if value in body]
        assert not leaked, f"{path}: contains {leaked}"
        # MLflow's download progress bars would show as error lines in the task log
        assert "Downloading artifacts" not in body, path
    dist.note(
        f"secrets: {len(secrets_)} secret values absent from {len(task_logs)} task logs "
        f"and {len(component_logs)} component logs; the probe task's log shows ***"
    )


# Faults -----------------------------------------------------------------------------------------
def _wait_running_on(
    api: AirflowClient,
    run_id: str,
    host: str,
    timeout: float = 300.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for ti in _tis(api, f"{MODEL}__score", run_id, "score"):
            if ti["state"] == "running" and ti["hostname"] == host:
                return ti
        time.sleep(0.3)
    raise TimeoutError(f"no score task ran on {host} within {timeout:.0f}s")


def test_worker_killed_mid_scoring_run_completes_exactly_once(dist: Distributed, fanout) -> None:
    cfg, api = dist.cfg, dist.api
    frame, folder = land(dist, "killed", parts=4)
    victim = "celery-worker-1"
    host = cfg.worker_hostname(victim)
    started = time.monotonic()
    run_id = score_run(dist, folder)
    ti = _wait_running_on(api, run_id, host)
    time.sleep(1.0)  # inside the task: model loaded, scoring under way
    killed_at = time.monotonic()
    killed = _kill_tree(_pid(cfg, victim))
    dist.killed.update(killed)
    key = (ti["task_id"], ti["map_index"])
    noticed = None
    while noticed is None and time.monotonic() - killed_at < 240:
        [now] = [
            t
            for t in _tis(api, f"{MODEL}__score", run_id, "score")
            if t["map_index"] == ti["map_index"]
        ]
        if now["state"] != "running" or now["try_number"] != ti["try_number"]:
            noticed = time.monotonic() - killed_at
            noticed_state = now["state"]
        time.sleep(0.5)
    assert noticed is not None, "the scheduler never noticed the dead worker's task"
    state = api.wait(f"{MODEL}__score", run_id, timeout=600)
    done = time.monotonic() - killed_at
    assert state == "success"
    [final] = [
        t
        for t in _tis(api, f"{MODEL}__score", run_id, "score")
        if t["map_index"] == ti["map_index"]
    ]
    assert final["try_number"] > ti["try_number"]
    assert final["hostname"] == cfg.worker_hostname("celery-worker-2")
    tries = _tries(api, run_id, ti["map_index"])
    assert [t["hostname"] for t in tries][:2] == [host, final["hostname"]], tries
    assert tries[0]["state"] == "failed"
    retry_gap = _ts(tries[1]["start_date"]) - _ts(tries[0]["end_date"])
    check_output(dist, run_id, frame, folder)
    dist.note(
        f"fault 1, worker SIGKILL: {victim} killed ({len(killed)} processes) while "
        f"running score {key} try {ti['try_number']}; scheduler noticed after "
        f"{noticed:.0f}s (-> {noticed_state}), try {final['try_number']} started "
        f"{retry_gap:.0f}s later on {final['hostname'].split('.')[0]}; run succeeded "
        f"{done:.0f}s after the kill "
        f"({time.monotonic() - started:.0f}s in all); {len(frame)} rows in = out, no "
        "duplicate key, files byte-identical to the expected scoring"
    )
    # the dead worker comes back with `up` (as a supervisor would restart it)
    localstack.up(cfg)
    assert all(r.healthy for r in status(cfg))


def test_postgres_restart_between_runs_then_redis_restart_mid_run(
    dist: Distributed, fanout
) -> None:
    cfg, api = dist.cfg, dist.api
    pg_down = dist.pg.restart()  # fast shutdown: every client's connections are cut
    pg_back = time.monotonic()
    frame, folder = land(dist, "restarts", parts=4)
    run_id = None
    deadline = time.monotonic() + 120
    while run_id is None:  # the api-server's pool may hold connections the restart closed
        try:
            run_id = score_run(dist, folder)
        except Exception:
            assert time.monotonic() < deadline, "Airflow API unusable after the restart"
            time.sleep(2)
    triggered = time.monotonic() - pg_back
    deadline = time.monotonic() + 300
    while not any(t["state"] == "running" for t in _tis(api, f"{MODEL}__score", run_id, "score")):
        assert time.monotonic() < deadline, "no score task started"
        time.sleep(0.3)
    lost_before = sum(
        cfg.log_file(w).read_text(errors="replace").count("Connection to broker lost")
        for w in cfg.workers
    )
    redis_down = dist.redis.restart(down_seconds=2.0)
    redis_back = time.monotonic()
    state = api.wait(f"{MODEL}__score", run_id, timeout=600)
    tis = _tis(api, f"{MODEL}__score", run_id, "score")
    retried = sorted(t["map_index"] for t in tis if t["try_number"] > 1)
    assert state == "success", {t["map_index"]: t["state"] for t in tis}
    check_output(dist, run_id, frame, folder)
    lost = (
        sum(
            cfg.log_file(w).read_text(errors="replace").count("Connection to broker lost")
            for w in cfg.workers
        )
        - lost_before
    )
    deliveries = _celery_deliveries(cfg)
    twice = sorted({i for i in deliveries if deliveries.count(i) > 1})
    assert not twice, f"Celery delivered tasks twice: {twice}"
    # an Airflow component may exit when its database goes away (the dag-processor did in one
    # run of three); docker-compose restarts it (restart: unless-stopped), here `up` does
    dead = [r.component for r in status(cfg) if not r.alive]
    if dead:
        localstack.up(cfg)
    rows = status(cfg)
    still = [r.component for r in rows if not (r.alive and r.healthy)]
    dist.note(
        f"fault 2, PostgreSQL restart between runs: down {pg_down:.1f}s; the next run "
        f"was accepted {triggered:.0f}s after it came back"
    )
    dist.note(
        f"fault 3, Redis restart mid-run (score tasks running): down {redis_down:.1f}s; "
        f"run {state} {time.monotonic() - redis_back:.0f}s later; retried partitions: "
        f"{retried or 'none'}; {len(frame)} rows in = out, files byte-identical to the "
        f"expected scoring; {lost} worker(s) logged the lost broker and reconnected; "
        f"no Celery message delivered twice ({len(deliveries)} deliveries in the module); "
        f"components that exited: {dead or 'none'}"
        + (" (restarted by `up`, as compose's restart policy would)" if dead else "")
    )
    assert not still, format_status(rows)


# The whole loop on S3-only shared state ---------------------------------------------------------
def _private_files(cfg: StackConfig) -> list[Path]:
    """Every file in the components' private directories."""
    return [p for p in (cfg.root / "private").rglob("*") if p.is_file()]


def test_the_whole_loop_runs_with_no_shared_disk(dist: Distributed, trained) -> None:
    """Score a shifted batch -> drift alert naming the shifted columns -> labels land on S3 ->
    retrain (reason: drift) -> validate -> the retrained version is the new champion; nothing
    of it passed through a component's local disk."""
    from airmlops_core.tracking import registry

    cfg, api, objects = dist.cfg, dist.api, store(dist)
    client = _mlflow(cfg)
    started = time.monotonic()
    before = registry.alias_version(client, MODEL, registry.CHAMPION)
    assert before is not None, "no champion to replace"
    features = demo_data.churn().drop(columns=["churn"])
    batch = s3_uri("landing", MODEL, "shifted.parquet")
    data.write_frame(drift_loop.shifted(features), batch, s3_client=objects.s3_client)
    # the labels land later, on S3, joined to the scored rows on the row key
    labels = demo_data.churn()[["customer_id", "churn"]]
    data.write_frame(
        labels, s3_uri("labels", MODEL, "shifted.parquet"), s3_client=objects.s3_client
    )
    known_retrains = {r["dag_run_id"] for r in api.dag_runs(f"{MODEL}__retrain")}
    known_validates = {r["dag_run_id"] for r in api.dag_runs(f"{MODEL}__validate")}
    drifted = drift_loop.score_then_drift(api, cfg.mlflow_url, batch)
    drift_s = time.monotonic() - started
    assert drifted["state"] == "success", drifted["tis"]
    assert drifted["mlflow"].data.tags["airmlops.drift_status"] == "drift"
    assert drifted["tis"]["signal_retrain"] == "success"  # the drift Asset for retraining
    # the drift alert (the Slack stand-in) names the shifted columns, and only those
    alerts = [
        m
        for m in drift_loop.drift_messages(cfg.messages_file)
        if drifted["run_id"] in m or "drift in v" in m
    ]
    assert alerts, drift_loop.drift_messages(cfg.messages_file)
    alert = alerts[-1]
    for column in drift_loop.SHIFTED:
        assert column in alert, alert
    assert "monthly_charges (" not in alert, alert
    # the scored outputs and the manifest are on S3
    out = scored_prefix(api, drifted["score_run"])
    assert objects.exists(f"{out}/_manifest.json")
    assert objects.list_files(out, suffix=".parquet") == [f"{out}/shifted.parquet"]

    # the drift Asset started a retrain that says why, on the window with the S3 labels
    retrain = api.wait_for_new_run(f"{MODEL}__retrain", known_retrains, timeout=180)
    assert api.wait(f"{MODEL}__retrain", retrain, timeout=900) == "success"
    [version] = client.search_model_versions(
        f"name = '{MODEL}' and tags.`airmlops.run_id` = '{retrain}'"
    )
    reason = version.tags["airmlops.retrain_reason"]
    assert reason.startswith("drift: "), reason
    assert "tenure" in reason, reason
    rows = json.loads(client.get_run(version.run_id).data.tags["airmlops.retrain_rows"])
    assert rows["labelled"] >= len(labels), rows  # the labels were read from S3
    assert rows["total"] == len(labels), rows
    retrain_s = time.monotonic() - started - drift_s

    # the candidate Asset ran the gate, which promoted the retrained version
    validate = api.wait_for_new_run(f"{MODEL}__validate", known_validates, timeout=180)
    assert api.wait(f"{MODEL}__validate", validate, timeout=600) == "success"
    assert registry.alias_version(client, MODEL, registry.CHAMPION) == version.version
    assert registry.alias_version(client, MODEL, registry.PREVIOUS_CHAMPION) == before
    promoted = messages_about(cfg, validate, f"version {version.version} promoted to champion")
    assert promoted, read_messages(cfg.messages_file)[-5:]
    hosts = {t["hostname"] for t in api.task_instances(f"{MODEL}__retrain", retrain)}
    assert hosts <= {cfg.worker_hostname(w) for w in cfg.workers}, hosts

    # nothing passed through local disk: no private directory holds a scored output, a
    # manifest or any parquet file, and the shared home's data and work folders are empty
    leaked = [
        p
        for p in _private_files(cfg)
        if p.suffix == ".parquet" or p.name == "_manifest.json" or "scored" in p.parts
    ]
    # except a task's private staging copy when the fault test SIGKILLed that task: it cannot
    # clean up, and the worker's next staging sweeps it (score.reading.sweep_orphaned_stages)
    orphans = {p: owner for p in leaked if (owner := reading.stage_owner(p.parent.name))}
    owners = {pid for pid, _ in orphans.values()}
    assert owners <= dist.killed, (owners, dist.killed)
    assert not [p for p in leaked if p not in orphans], leaked
    for shared in (cfg.root / "data", cfg.root / "work"):
        assert not [p for p in shared.rglob("*") if p.is_file()], shared
    work = objects.list_files(s3_uri("work"))
    assert any("/work/" in w and w.endswith(".parquet") for w in work), work[:5]
    dist.note(
        f"whole loop, no shared disk: score + drift {drift_s:.0f}s (alert names "
        f"{', '.join(drift_loop.SHIFTED)}), retrain {retrain_s:.0f}s ({reason[:60]}), "
        f"validate promoted v{version.version} over v{before}; "
        f"{time.monotonic() - started:.0f}s in all; {len(_private_files(cfg))} files in the "
        f"private directories, none of them scored data; {len(work)} work objects on S3"
    )
