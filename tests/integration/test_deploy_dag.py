"""A model from dev to staging to production: three real MLflow registries, one real Airflow.

The stack's own MLflow is dev (environment "local": it trains and gates); two more servers are
staging and production, reached by the stack's tasks through the connections mlflow_staging and
mlflow_production (conftest.environments_file: staging deploys without approval, production
with). In order: train and gate in dev; deploy to staging; deploy to production with approval;
a rejected approval leaves production's champion untouched; a rollback in production that
leaves the other environments alone; a version that failed its gate in dev is refused; a file
of dev's champion changed after registration (a digest mismatch) is refused at `transfer` with
nothing registered in staging.
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.artifacts
import pytest
from mlflow import MlflowClient

from airmlops_core import spec
from airmlops_core.io import data
from airmlops_core.tracking import model_digest, model_load, registry
from airmlops_core.tracking.runs import RunContext
from airmlops_core.validate import flow as validate_flow
from airmlops_dev import demo_data, deploy_trigger
from hitl import wait_for_task_state, wait_until_parked
from mlflow_server import MlflowServer
from slack_messages import messages_about

pytestmark = pytest.mark.integration

MODEL = "churn_deploy"  # conftest.DEPLOY_MODEL
DAG_ID = f"{MODEL}__deploy"
REQUESTER = "release-bot"
WAIT = 1800  # seconds per run: a loaded 2-core machine trains for many minutes


@pytest.fixture(scope="module")
def registries(
    stack: Any, environment_ports: dict[str, int], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, MlflowClient]]:
    """dev (the stack's MLflow), staging and production (started here, on the ports the
    stack's connections name)."""
    servers = [
        MlflowServer(tmp_path_factory.mktemp(f"mlflow_{env}"), port=port)
        for env, port in environment_ports.items()
    ]
    for server in servers:
        server.start()
    try:
        yield {
            "dev": MlflowClient(stack.mlflow_url),
            **{
                env: MlflowClient(server.url)
                for env, server in zip(environment_ports, servers, strict=True)
            },
        }
    finally:
        for server in servers:
            server.stop()


def deploy(
    stack: Any, api: Any, target: str, version: str = "champion", answer: str | None = None
) -> dict:
    """Run the deploy DAG through the REST API as the release workflow does
    (airmlops_dev.deploy_trigger); answer its approval with `answer` when given. Returns the
    run id, its state and the task states."""
    request = deploy_trigger.build_request(MODEL, version, target, REQUESTER)
    run_id = deploy_trigger.trigger(api, request)
    if answer is not None:
        wait_for_task_state(api, DAG_ID, run_id, "approve", "awaiting_input", timeout=WAIT)
        wait_until_parked(stack, DAG_ID, run_id, "approve")
        api.respond(DAG_ID, run_id, "approve", [answer])
    state = api.wait(DAG_ID, run_id, timeout=WAIT)
    tis = {t["task_id"]: t["state"] for t in api.task_instances(DAG_ID, run_id)}
    verified = api.xcom(DAG_ID, run_id, "verify") if tis.get("verify") == "success" else None
    # the verification's reasons show in any failed assertion on the result
    return {"run_id": run_id, "state": state, "tis": tis, "verify": verified}


def champion(client: MlflowClient) -> str | None:
    return registry.alias_version(client, MODEL, registry.CHAMPION)


def versions(client: MlflowClient) -> list[str]:
    return sorted(
        (str(v.version) for v in client.search_model_versions(f"name = '{MODEL}'")), key=int
    )


def same_files(a: MlflowClient, va: str, b: MlflowClient, vb: str) -> bool:
    """Whether two registered versions hold byte-identical files (compared file by file)."""
    with tempfile.TemporaryDirectory() as tmp:
        da = model_load.download_version(a, MODEL, va, Path(tmp) / "a")
        db = model_load.download_version(b, MODEL, vb, Path(tmp) / "b")
        cmp = filecmp.dircmp(da, db)
        files = sorted(p.relative_to(da) for p in Path(da).rglob("*") if p.is_file())
        match, mismatch, errors = filecmp.cmpfiles(da, db, [str(f) for f in files], shallow=False)
        return bool(files) and not mismatch and not errors and not cmp.right_only


def stored_digest(client: MlflowClient, version: str) -> str:
    """The digest of a registered version's files as the server holds them now."""
    with tempfile.TemporaryDirectory() as tmp:
        return model_digest.dir_sha256(
            model_load.download_version(client, MODEL, version, Path(tmp))
        )


@contextlib.contextmanager
def one_byte_changed(client: MlflowClient, version: str, name: str) -> Iterator[None]:
    """Change one byte of the stored file `name` of a registered version, through MLflow
    itself, and put the original bytes back on exit.

    The file is found from the version's source (``models:/<model id>``) and that logged
    model's artifact location: MLflow 3.17 leaves ``ModelVersion.model_id`` None (neither its
    SQL store nor its REST answer fills it), and with served artifacts the location is
    ``mlflow-artifacts:/...``, not a local path, so the change goes through the server.
    """
    source = str(client.get_model_version(MODEL, version).source)
    assert source.startswith("models:/m-"), source
    model_id = source.removeprefix("models:/")
    location = client.get_logged_model(model_id).artifact_location
    with tempfile.TemporaryDirectory() as tmp:
        stored = Path(
            mlflow.artifacts.download_artifacts(
                artifact_uri=f"{location}/{name}", dst_path=tmp, tracking_uri=client.tracking_uri
            )
        )
        original = stored.read_bytes()
        stored.write_bytes(bytes([original[0] ^ 0x01]) + original[1:])  # same length
        client.log_model_artifact(model_id, str(stored))
        try:
            yield
        finally:
            stored.write_bytes(original)
            client.log_model_artifact(model_id, str(stored))


def train_and_gate(stack: Any, api: Any) -> tuple[str, str]:
    """Train in dev; the candidate Asset runs the gate. Returns (train run, validate state)."""
    known = {r["dag_run_id"] for r in api.dag_runs(f"{MODEL}__validate")}
    run_id = api.trigger(f"{MODEL}__train")
    assert api.wait(f"{MODEL}__train", run_id, timeout=WAIT) == "success"
    val_run = api.wait_for_new_run(f"{MODEL}__validate", known, timeout=600)
    return run_id, api.wait(f"{MODEL}__validate", val_run, timeout=WAIT)


@pytest.fixture(scope="module")
def dev_champion(stack: Any, airflow_api: Any, registries: dict) -> str:
    """Train and gate in dev: the first version has no champion to beat and is promoted."""
    demo_data.write_all(stack.home / "data")
    for dag in ("train", "validate", "deploy"):
        airflow_api.wait_for_dag(f"{MODEL}__{dag}", timeout=180)
    _, state = train_and_gate(stack, airflow_api)
    assert state == "success"
    version = champion(registries["dev"])
    assert version is not None
    return version


BATCH_ROWS = 600


@pytest.fixture(scope="module")
def scored_batch(stack: Any, airflow_api: Any, dev_champion: str) -> int:
    """One batch scored by this Airflow (its data layer is every target's here): what
    `verify` checks and shadow-scores next to the target's champion. Returns its rows."""
    frame = demo_data.churn().drop(columns=["churn"]).head(BATCH_ROWS)
    folder = stack.home / "data" / "landing" / f"{MODEL}_batch"
    data.write_frame(frame, str(folder / "part-0.parquet"))
    airflow_api.wait_for_dag(f"{MODEL}__score", timeout=180)
    run_id = airflow_api.trigger(f"{MODEL}__score", conf={"input": str(folder)})
    assert airflow_api.wait(f"{MODEL}__score", run_id, timeout=WAIT) == "success"
    return len(frame)


@pytest.fixture(scope="module")
def staged(stack: Any, airflow_api: Any, registries: dict, scored_batch: int) -> dict:
    return deploy(stack, airflow_api, "staging")


def test_deploy_to_staging_registers_with_provenance_and_moves_champion(
    stack, registries, dev_champion, staged
) -> None:
    dev, staging = registries["dev"], registries["staging"]
    assert staged["state"] == "success", staged
    assert staged["tis"]["approve"] == "success", staged  # staging needs no approval
    assert (staged["tis"]["promote"], staged["tis"]["reject"]) == ("success", "skipped")
    version = champion(staging)
    assert version is not None
    tags = staging.get_model_version(MODEL, version).tags
    source_tags = dev.get_model_version(MODEL, dev_champion).tags
    assert tags["airmlops.deploy.source_environment"] == "local"
    assert tags["airmlops.deploy.source_registry"] == stack.mlflow_url
    assert tags["airmlops.deploy.source_version"] == dev_champion
    assert tags["airmlops.deploy.requested_by"] == REQUESTER
    assert tags["airmlops.deploy.environment"] == "staging"
    assert tags["airmlops.model_sha256"] == source_tags["airmlops.model_sha256"]
    assert tags["gate.decision"] == "promote"  # the dev gate's evidence travelled
    assert tags["airmlops.holdout_sha256"] == source_tags["airmlops.holdout_sha256"]
    assert (
        tags["airmlops.deploy.source_run_id"] == dev.get_model_version(MODEL, dev_champion).run_id
    )
    assert tags["airmlops.deploy.approved_by"] == "no approval required in staging"
    verified = json.loads(tags["airmlops.deploy.evidence"])
    assert verified["golden"]["passed"] is True
    assert verified["golden"]["rows"] > 0
    assert verified["data_check"]["success"] is True  # the batch this Airflow scored
    assert verified["shadow"] is None  # staging had no champion to shadow
    assert same_files(dev, dev_champion, staging, version)
    # the signature travelled with the files
    assert staging.get_model_version_download_uri(MODEL, version)
    [msg] = messages_about(stack, staged["run_id"], "is champion in staging")
    assert REQUESTER in json.dumps(msg["body"])


def test_deploy_to_production_waits_for_approval(stack, airflow_api, registries, staged) -> None:
    staging, prod = registries["staging"], registries["production"]
    run = deploy(stack, airflow_api, "production", answer="Approve")
    assert run["state"] == "success", run
    assert (run["tis"]["promote"], run["tis"]["reject"]) == ("success", "skipped")
    version = champion(prod)
    assert version is not None
    tags = prod.get_model_version(MODEL, version).tags
    assert tags["airmlops.deploy.source_environment"] == "staging"
    assert tags["airmlops.deploy.source_registry"] == staging.tracking_uri
    assert tags["airmlops.deploy.source_version"] == champion(staging)
    assert tags["airmlops.deploy.approved_by"] == f"{airflow_api.username} (human approval)"
    assert same_files(staging, champion(staging) or "", prod, version)
    assert messages_about(stack, run["run_id"], "is champion in production")


def test_rejected_approval_leaves_production_untouched(stack, airflow_api, registries) -> None:
    prod = registries["production"]
    before, known = champion(prod), versions(prod)
    run = deploy(stack, airflow_api, "production", answer="Reject")
    assert run["state"] == "success", run
    assert (run["tis"]["promote"], run["tis"]["reject"]) == ("skipped", "success")
    assert champion(prod) == before
    [new] = sorted(set(versions(prod)) - set(known), key=int)
    reasons = json.loads(prod.get_model_version(MODEL, new).tags["rejected"])
    assert reasons == [f"rejected in human review by {airflow_api.username}"]
    assert messages_about(stack, run["run_id"], "not deployed to production")


def test_rollback_works_on_the_target(stack, airflow_api, registries, scored_batch) -> None:
    """production: deploy again (approved), then roll back to the previous champion."""
    prod = registries["production"]
    first = champion(prod)
    run = deploy(stack, airflow_api, "production", answer="Approve")
    assert run["state"] == "success", run
    second = champion(prod)
    assert second not in (None, first)
    # the same files as the champion: the shadow score of the batch agrees on every row
    verified = json.loads(prod.get_model_version(MODEL, second).tags["airmlops.deploy.evidence"])
    assert verified["shadow"]["rows"] == scored_batch
    assert verified["shadow"]["agreement"] == 1.0
    assert verified["shadow"]["mean_abs_diff"] == pytest.approx(0.0, abs=1e-12)
    assert verified["shadow"]["drift"]["status"] in ("drift", "no_drift", "not_enough_data")
    # the deploy kept production's former champion as its previous_champion
    assert registry.alias_version(prod, MODEL, registry.PREVIOUS_CHAMPION) == first
    others = {env: champion(registries[env]) for env in ("dev", "staging")}
    # a rollback DAG works on its own environment's registry (mlflow_default): in this one
    # Airflow that is dev, so production's rollback, which production's Airflow would run, is
    # its step run here against production's registry
    model_spec = spec.load_spec(Path(stack.extra_env["AIRMLOPS_MODELS_DIR"]) / f"{MODEL}.yaml")
    ctx = RunContext(model=MODEL, dag_id=f"{MODEL}__rollback", run_id="manual__test", task_id="r")
    out = validate_flow.rollback_step(
        model_spec,
        ctx,
        target="previous_champion",
        reason="test",
        user="tester",
        tracking_uri=prod.tracking_uri,
    )
    assert (out["champion"], champion(prod)) == (first, first)
    assert prod.get_model_version(MODEL, first).tags["airmlops.rollback_from"] == second
    # per environment: the other registries' champions did not move
    assert {env: champion(registries[env]) for env in ("dev", "staging")} == others


def test_version_that_failed_its_gate_is_refused(stack, airflow_api, registries) -> None:
    """Train again in dev on the same data: the same model does not beat the champion (a tie
    keeps the champion), so the gate rejects it; its deploy is refused at `resolve`."""
    dev, staging = registries["dev"], registries["staging"]
    train_run, state = train_and_gate(stack, airflow_api)
    assert state == "success"
    [mv] = dev.search_model_versions(f"name = '{MODEL}' and tags.`airmlops.run_id` = '{train_run}'")
    assert mv.tags["gate.decision"] == "reject"
    known = versions(staging)
    run = deploy(stack, airflow_api, "staging", version=str(mv.version))
    assert run["state"] == "failed"
    assert run["tis"]["resolve"] == "failed"
    assert run["tis"]["transfer"] == "upstream_failed"
    assert versions(staging) == known
    [msg] = messages_about(stack, run["run_id"], "did not pass its gate")
    assert "resolve" in json.dumps(msg["body"])


def test_file_changed_in_transit_is_refused_and_nothing_registered(
    stack, airflow_api, registries, dev_champion
) -> None:
    """One byte of a file of dev's champion changed in dev's artifact store after
    registration: the files no longer match the digest recorded then, so `transfer` refuses
    them before anything is registered in staging, and says so in one Slack message."""
    dev, staging = registries["dev"], registries["staging"]
    assert champion(dev) == dev_champion
    recorded = dev.get_model_version(MODEL, dev_champion).tags[model_digest.DIGEST_TAG]
    known = versions(staging)
    with one_byte_changed(dev, dev_champion, "requirements.txt"):
        changed = stored_digest(dev, dev_champion)
        assert changed != recorded  # the change reached the stored files
        run = deploy(stack, airflow_api, "staging")
    assert stored_digest(dev, dev_champion) == recorded  # put back for whatever runs next
    assert run["state"] == "failed", run
    assert (run["tis"]["resolve"], run["tis"]["transfer"]) == ("success", "failed"), run
    assert run["tis"]["verify"] == "upstream_failed", run
    assert versions(staging) == known
    [msg] = messages_about(stack, run["run_id"], "changed since registration")
    text = json.dumps(msg["body"])
    assert "failed at task `transfer`" in text
    assert f"digest {changed[:16]}..., recorded {recorded[:16]}..." in text
    assert "nothing was registered in staging" in text
    # the one message about this run
    assert len(messages_about(stack, run["run_id"], "")) == 1
