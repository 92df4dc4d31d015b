"""MLflow runs that survive retries: one run per (dag_id, run_id, purpose), found again by tags."""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow import MlflowClient
from mlflow.entities import ViewType

from airmlops_core import settings

log = logging.getLogger(__name__)

TAG_PREFIX = "airmlops."
TRIGGERED_BY = f"{TAG_PREFIX}triggered_by"


@dataclass(frozen=True)
class RunContext:
    """Where a piece of work comes from: the Airflow DAG run and task, and the model."""

    model: str
    dag_id: str
    run_id: str
    task_id: str
    try_number: int = 1
    logical_date: str | None = None
    triggered_by: str | None = None  # the user who started the DAG run; None: schedule, Asset

    def tags(self) -> dict[str, str]:
        """Tags put on every MLflow run and model version made for this context; a run a user
        started also carries `airmlops.triggered_by` (the promotion review reads it)."""
        return {
            f"{TAG_PREFIX}model": self.model,
            f"{TAG_PREFIX}dag_id": self.dag_id,
            f"{TAG_PREFIX}run_id": self.run_id,
            f"{TAG_PREFIX}task_id": self.task_id,
            f"{TAG_PREFIX}try_number": str(self.try_number),
            f"{TAG_PREFIX}code_version": code_version(),
            **({TRIGGERED_BY: self.triggered_by} if self.triggered_by else {}),
        }


@functools.cache
def code_version() -> str:
    """AIRMLOPS_CODE_VERSION, else the git commit of the project, else the package version."""
    env = settings.current().code_version
    if env:
        return env
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"],
            cwd=settings.project_dir(),  # FileNotFoundError (an OSError) when installed
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return f"airmlops-{version('airmlops')}"
        except PackageNotFoundError:
            return "unknown"


def experiment_name(model: str) -> str:
    """The MLflow experiment that holds every run of one model."""
    return f"airmlops/{model}"


def experiment_id(client: MlflowClient, name: str) -> str:
    """The id of experiment `name`, created when missing (safe under concurrent creators)."""
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            client.restore_experiment(exp.experiment_id)
        return str(exp.experiment_id)
    try:
        return str(client.create_experiment(name))
    except Exception:  # noqa: BLE001 - another process may have created it between the two calls
        exp = client.get_experiment_by_name(name)
        if exp is None:
            raise
        return str(exp.experiment_id)


def get_or_create_run(
    client: MlflowClient,
    experiment: str,
    ctx: RunContext,
    purpose: str,
    run_name: str | None = None,
) -> str:
    """The MLflow run for this DAG run and purpose: reused on retry, created once otherwise.

    The key is (dag_id, run_id, purpose). The MLflow client retries POSTs itself, so a lost
    response can create a twin: after creating, the earliest run with the key wins and any
    twin is deleted.
    """
    exp_id = experiment_id(client, experiment)
    found = _runs_with_key(client, exp_id, ctx, purpose)
    if found:
        run_id = found[0].info.run_id
        for twin in found[1:]:
            client.delete_run(twin.info.run_id)
        log.info("reusing MLflow run %s for %s/%s (%s)", run_id, ctx.dag_id, ctx.run_id, purpose)
        client.set_tag(run_id, f"{TAG_PREFIX}try_number", str(ctx.try_number))
        if found[0].info.status != "RUNNING":
            client.update_run(run_id, status="RUNNING")
        return run_id
    tags = {**ctx.tags(), f"{TAG_PREFIX}purpose": purpose}
    run = client.create_run(exp_id, run_name=run_name, tags=tags)
    twins = _runs_with_key(client, exp_id, ctx, purpose)
    winner = twins[0].info.run_id if twins else run.info.run_id
    for twin in twins[1:]:
        client.delete_run(twin.info.run_id)
    return winner


def model_run(client: MlflowClient, model: str, ctx: RunContext, purpose: str) -> str:
    """`get_or_create_run` in the model's experiment, named <model>[-<purpose>]-<run id>."""
    label = "" if purpose == "train" else f"-{purpose}"
    return get_or_create_run(
        client, experiment_name(model), ctx, purpose, run_name=f"{model}{label}-{ctx.run_id}"
    )


def _runs_with_key(client: MlflowClient, exp_id: str, ctx: RunContext, purpose: str) -> list[Any]:
    flt = (
        f"tags.`{TAG_PREFIX}dag_id` = '{_q(ctx.dag_id)}' and "
        f"tags.`{TAG_PREFIX}run_id` = '{_q(ctx.run_id)}' and "
        f"tags.`{TAG_PREFIX}purpose` = '{_q(purpose)}'"
    )
    runs = client.search_runs(
        [exp_id],
        filter_string=flt,
        run_view_type=ViewType.ACTIVE_ONLY,
        order_by=["attributes.start_time ASC"],
        max_results=50,
    )
    return list(runs)


def _q(value: str) -> str:
    """Escape a value for an MLflow filter string literal."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


def read_run_json(client: MlflowClient, run_id: str, path: str) -> Any:
    """A run's JSON artifact at `path`, downloaded and parsed (raises when it is missing)."""
    with tempfile.TemporaryDirectory() as tmp:
        local = client.download_artifacts(run_id, path, tmp)
        return json.loads(Path(local).read_text("utf-8"))


def run_url(tracking_uri: str, experiment_id: str, run_id: str) -> str:
    """Link to a run in the MLflow UI."""
    return f"{tracking_uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"


def model_version_url(tracking_uri: str, name: str, version: str | int) -> str:
    """Link to a registered model version in the MLflow UI."""
    return f"{tracking_uri.rstrip('/')}/#/models/{name}/versions/{version}"


def resume(run_id: str, tracking_uri: str) -> Any:
    """`mlflow.start_run(run_id=...)` that works whatever experiment the process made active:
    the fluent API refuses to resume a run of another experiment than the active one."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    run = mlflow.MlflowClient(tracking_uri).get_run(run_id)
    mlflow.set_experiment(experiment_id=run.info.experiment_id)
    return mlflow.start_run(run_id=run_id)
