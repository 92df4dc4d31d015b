"""Trigger a model's deploy DAG (`<model>__deploy`) through Airflow's REST API.

The caller of the release workflow (.github/workflows/release.yml); also usable by hand::

    AIRFLOW_URL=https://airflow.example AIRFLOW_USER=release AIRFLOW_PASSWORD=... \\
        python -m airmlops_dev.deploy_trigger customer_churn --source-version champion \\
        --target-environment production

It logs in with ``POST /auth/token`` (a JWT), checks that the DAG exists, then starts a run with
``POST /api/v2/dags/<model>__deploy/dagRuns`` and the conf the deploy DAG reads:
``source_version`` ("champion" or a registry version number), ``target_environment`` and
``requested_by``. The password is read from the environment only, never from the command line.
Needs only ``requests`` (and this package on PYTHONPATH).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from typing import TypedDict

from airmlops_dev.airflow_api import AirflowAPIError, AirflowClient

# The spec's model-name rule (airmlops_core.spec.NAME_RE), repeated so that this script needs no
# core package: the release job installs only `requests`.
MODEL_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
ENVIRONMENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
CHAMPION = "champion"


class DeployConf(TypedDict):
    """The deploy DAG's run configuration (``dag_run.conf``)."""

    source_version: str
    target_environment: str
    requested_by: str


class TriggerError(ValueError):
    """An input the deploy trigger refuses, naming the input and the value."""


@dataclass(frozen=True)
class DeployRequest:
    """What to deploy, where, and on whose request."""

    model: str
    source_version: str
    target_environment: str
    requested_by: str

    @property
    def dag_id(self) -> str:
        """The model's deploy DAG."""
        return f"{self.model}__deploy"

    def conf(self) -> DeployConf:
        """The run configuration for the deploy DAG."""
        return {
            "source_version": self.source_version,
            "target_environment": self.target_environment,
            "requested_by": self.requested_by,
        }


def build_request(
    model: str, source_version: str, target_environment: str, requested_by: str
) -> DeployRequest:
    """Check the inputs and build the request.

    Args:
        model: The model name (its spec's file name).
        source_version: ``champion`` or a positive registry version number.
        target_environment: The environment to deploy to (e.g. ``production``).
        requested_by: Who asked (the GitHub actor).

    Returns:
        The request.

    Raises:
        TriggerError: An input is not well formed; the message names it.
    """
    model = model.strip()
    if not MODEL_NAME_RE.match(model):
        raise TriggerError(
            f"model: {model!r} is not a model name (lower case letters, digits, '_', "
            "starting with a letter, at most 48 characters)"
        )
    version = source_version.strip().lower()
    if version != CHAMPION and not (version.isdigit() and int(version) > 0):
        raise TriggerError(
            f"source version: {source_version!r} is neither 'champion' nor a version number"
        )
    env = target_environment.strip()
    if not ENVIRONMENT_RE.match(env):
        raise TriggerError(f"target environment: {target_environment!r} is not an environment name")
    return DeployRequest(
        model, str(int(version)) if version.isdigit() else version, env, requested_by
    )


def trigger(client: AirflowClient, request: DeployRequest, run_id: str | None = None) -> str:
    """Start a run of the model's deploy DAG.

    Args:
        client: An Airflow REST client (logs in with ``POST /auth/token``).
        request: What to deploy.
        run_id: An explicit DAG run id (e.g. from the workflow run), or None for Airflow's.

    Returns:
        The DAG run id.

    Raises:
        AirflowAPIError: The DAG does not exist (status 404, with a message saying so) or any
            other call failed.
    """
    try:
        client.dag(request.dag_id)
    except AirflowAPIError as exc:
        if exc.status == 404:
            raise AirflowAPIError(
                f"{request.dag_id} is not a DAG of {client.base_url}: is the model's spec there "
                "and its deploy DAG parsed?",
                exc.status,
                exc.body,
            ) from exc
        raise
    return client.trigger(request.dag_id, conf=dict(request.conf()), run_id=run_id)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m airmlops_dev.deploy_trigger",
        description="Trigger <model>__deploy on an Airflow 3 API server (AIRFLOW_URL, "
        "AIRFLOW_USER, AIRFLOW_PASSWORD from the environment).",
    )
    p.add_argument("model")
    p.add_argument("--source-version", default=CHAMPION, help="'champion' or a version number")
    p.add_argument("--target-environment", required=True)
    p.add_argument("--requested-by", default=os.environ.get("GITHUB_ACTOR", "unknown"))
    p.add_argument("--run-id", help="DAG run id (default: Airflow generates one)")
    p.add_argument("--wait", type=float, default=0.0, help="seconds to wait for the run to end")
    return p


def main(argv: list[str] | None = None) -> int:
    """Command line: exit 0 when triggered (and, with --wait, succeeded), 1 on failure,
    2 on bad input or missing settings."""
    args = _parser().parse_args(argv)
    missing = [
        k for k in ("AIRFLOW_URL", "AIRFLOW_USER", "AIRFLOW_PASSWORD") if not os.environ.get(k)
    ]
    if missing:
        print(f"missing environment variable(s): {', '.join(missing)}", file=sys.stderr)
        return 2
    try:
        request = build_request(
            args.model, args.source_version, args.target_environment, args.requested_by
        )
    except TriggerError as exc:
        print(exc, file=sys.stderr)
        return 2
    client = AirflowClient(
        os.environ["AIRFLOW_URL"], os.environ["AIRFLOW_USER"], os.environ["AIRFLOW_PASSWORD"]
    )
    try:
        run_id = trigger(client, request, args.run_id)
        print(f"triggered {request.dag_id} run {run_id} with {dict(request.conf())}")
        if args.wait > 0:
            state = client.wait(request.dag_id, run_id, timeout=args.wait, poll=10.0)
            print(f"{request.dag_id} run {run_id}: {state}")
            return 0 if state == "success" else 1
    except (AirflowAPIError, TimeoutError) as exc:
        print(exc, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
