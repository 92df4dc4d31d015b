"""Environments: which one this deployment is, each one's registry, where it promotes from.

One reviewed YAML file (`AIRMLOPS_ENVIRONMENTS_FILE`, else include/environments.yaml) lists
the environments a deployment knows::

    environments:
      dev: {}
      staging:
        promotes_from: dev                # the source of its deploy DAG
      production:
        promotes_from: staging
        approval: true                    # a human approves each deploy
        reviewers: [alice, bob]           # who may (the requester never may)
        approval_timeout_hours: 24

The same file serves every deployment. The deployment's own name comes from
`AIRMLOPS_ENVIRONMENT` (or the Airflow Variable `airmlops_environment`, read by the operator);
its own registry is `mlflow_default`, every other environment's is the connection
`mlflow_<name>` (or the environment's `mlflow_conn_id`). So the production Airflow reads
staging's registry through `mlflow_staging`, and staging's reads dev's through `mlflow_dev`.
A deploy goes to the deployment's own environment unless the run names another one the file
defines (one Airflow may serve several targets: a release Airflow, or the integration test).
Read when a deploy task runs, never while DAGs are parsed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated

from pydantic import Field, StringConstraints

from airmlops_core import settings
from airmlops_core.errors import BadInput, FileSchemaError
from airmlops_core.yaml_schema import StrictModel, parse_model, read_yaml

ENVIRONMENT_VAR = "AIRMLOPS_ENVIRONMENT"
OWN_CONN_ID = "mlflow_default"
FILE_VAR = "AIRMLOPS_ENVIRONMENTS_FILE"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")  # deploy_trigger.ENVIRONMENT_RE
DEFAULT_TIMEOUT_HOURS = 24.0

EnvName = Annotated[str, StringConstraints(pattern=NAME_RE.pattern)]


class EnvironmentsFileError(FileSchemaError):
    """The environments file is invalid."""

    what = "environments file"


class UnknownEnvironment(BadInput, LookupError):
    """A deploy names an environment the environments file does not define, or none at all."""


class EnvironmentSection(StrictModel):
    """One environment of the file."""

    mlflow_conn_id: str | None = None
    promotes_from: EnvName | None = None
    approval: bool = False
    reviewers: tuple[str, ...] = ()
    approval_timeout_hours: float = Field(DEFAULT_TIMEOUT_HOURS, gt=0)


class EnvironmentsFile(StrictModel):
    """The whole file."""

    environments: dict[EnvName, EnvironmentSection]


@dataclass(frozen=True)
class Environment:
    """One environment: its registry connection and its deploy rules."""

    name: str
    mlflow_conn_id: str
    promotes_from: str | None
    approval: bool
    reviewers: tuple[str, ...]
    approval_timeout_hours: float


@dataclass(frozen=True)
class Route:
    """A deploy: from `source`'s registry to `target`'s."""

    source: Environment
    target: Environment


def default_conn_id(name: str) -> str:
    """The MLflow connection of another environment's registry: mlflow_<name>."""
    return "mlflow_" + re.sub(r"[^A-Za-z0-9_]", "_", name).lower()


def environments_file() -> Path:
    """Where the environments are defined (AIRMLOPS_ENVIRONMENTS_FILE, else
    include/environments.yaml of the checkout).

    Raises:
        FileNotFoundError: installed as a package with neither variable naming a place.
    """
    if (file := settings.current().environments_file) is not None:
        return file
    try:
        return settings.project_dir() / "include" / "environments.yaml"
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"no environments file: set {FILE_VAR} (the pack is installed as a package, "
            "so there is no checkout holding include/environments.yaml)"
        ) from exc


def load(path: str | Path | None = None) -> dict[str, Environment]:
    """Every environment of the file, by name.

    Raises:
        EnvironmentsFileError: the file is missing or invalid (naming the field), or an
            environment promotes from one the file does not define, or from itself.
    """
    file = Path(path) if path is not None else environments_file()
    raw = read_yaml(file, EnvironmentsFileError)
    parsed = parse_model(EnvironmentsFile, raw, file, EnvironmentsFileError)
    envs = {
        name: Environment(
            name=name,
            mlflow_conn_id=s.mlflow_conn_id or default_conn_id(name),
            promotes_from=s.promotes_from,
            approval=s.approval or bool(s.reviewers),
            reviewers=s.reviewers,
            approval_timeout_hours=s.approval_timeout_hours,
        )
        for name, s in parsed.environments.items()
    }
    problems = []
    for env in envs.values():
        if env.promotes_from == env.name:
            problems.append((f"environments.{env.name}.promotes_from", "promotes from itself"))
        elif env.promotes_from is not None and env.promotes_from not in envs:
            problems.append(
                (
                    f"environments.{env.name}.promotes_from",
                    f"'{env.promotes_from}' is not an environment of this file "
                    f"(known: {', '.join(sorted(envs))})",
                )
            )
    if problems:
        raise EnvironmentsFileError(file, problems)
    return envs


def route(envs: dict[str, Environment], own: str | None, requested: str | None) -> Route:
    """The deploy's source and target: the requested environment, else this deployment's own.

    Raises:
        UnknownEnvironment: no target at all, a target the file does not define, or one that
            promotes from nowhere (the first environment trains its own models).
    """
    target_name = (requested or "").strip() or (own or "").strip()
    if not target_name:
        raise UnknownEnvironment(
            f"no target environment: set {ENVIRONMENT_VAR} (or the Variable "
            "airmlops_environment) for this deployment, or give target_environment"
        )
    target = envs.get(target_name)
    if target is None:
        raise UnknownEnvironment(
            f"target environment '{target_name}' is not defined in {environments_file()} "
            f"(known: {', '.join(sorted(envs)) or 'none'})"
        )
    if target.promotes_from is None:
        raise UnknownEnvironment(
            f"environment '{target_name}' promotes from no other environment "
            f"(promotes_from is not set in {environments_file()}): nothing to deploy into it"
        )
    source = envs[target.promotes_from]
    return Route(source=_as_seen_from(source, own), target=_as_seen_from(target, own))


def _as_seen_from(env: Environment, own: str | None) -> Environment:
    """The deployment's own environment reads its registry through mlflow_default."""
    return replace(env, mlflow_conn_id=OWN_CONN_ID) if env.name == own else env
