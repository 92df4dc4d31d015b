"""The environments file: parsing, its errors, and the route of a deploy."""

from __future__ import annotations

from pathlib import Path

import pytest

from airmlops_core.deploy import environments
from airmlops_core.deploy.environments import EnvironmentsFileError, UnknownEnvironment

FILE = """
environments:
  dev: {}
  staging:
    promotes_from: dev
  production:
    promotes_from: staging
    reviewers: [alice, bob]
    approval_timeout_hours: 4
    mlflow_conn_id: mlflow_prod_eu
"""


@pytest.fixture
def envs(tmp_path: Path) -> dict[str, environments.Environment]:
    path = tmp_path / "environments.yaml"
    path.write_text(FILE)
    return environments.load(path)


def test_each_environment_reads_another_registry_through_mlflow_name(envs) -> None:
    assert envs["dev"].mlflow_conn_id == "mlflow_dev"
    assert envs["staging"].mlflow_conn_id == "mlflow_staging"
    assert envs["production"].mlflow_conn_id == "mlflow_prod_eu"  # given explicitly


def test_reviewers_imply_approval_and_timeout_defaults(envs) -> None:
    prod, staging = envs["production"], envs["staging"]
    assert (prod.approval, prod.reviewers, prod.approval_timeout_hours) == (
        True,
        ("alice", "bob"),
        4.0,
    )
    assert (staging.approval, staging.approval_timeout_hours) == (False, 24.0)


def test_the_deployments_own_registry_is_mlflow_default(envs) -> None:
    """In production's Airflow, production is mlflow_default and staging is mlflow_staging."""
    route = environments.route(envs, own="production", requested=None)
    assert (route.source.name, route.source.mlflow_conn_id) == ("staging", "mlflow_staging")
    assert (route.target.name, route.target.mlflow_conn_id) == ("production", "mlflow_default")
    # staging's Airflow: its own registry is the default one, dev's is mlflow_dev
    route = environments.route(envs, own="staging", requested="")
    assert (route.source.mlflow_conn_id, route.target.mlflow_conn_id) == (
        "mlflow_dev",
        "mlflow_default",
    )


def test_a_requested_target_overrides_the_own_environment(envs) -> None:
    route = environments.route(envs, own="dev", requested="production")
    assert (route.source.name, route.target.name) == ("staging", "production")
    assert route.target.mlflow_conn_id == "mlflow_prod_eu"
    assert route.source.mlflow_conn_id == "mlflow_staging"


def test_unknown_or_missing_targets_are_refused_by_name(envs) -> None:
    with pytest.raises(UnknownEnvironment, match="'qa' is not defined.*known: dev, production"):
        environments.route(envs, own="dev", requested="qa")
    with pytest.raises(UnknownEnvironment, match="AIRMLOPS_ENVIRONMENT"):
        environments.route(envs, own=None, requested=None)
    with pytest.raises(UnknownEnvironment, match="'dev' promotes from no other environment"):
        environments.route(envs, own="dev", requested=None)


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        (
            "environments:\n  prod: {promotes_from: staging}\n",
            "environments.prod.promotes_from",
            "'staging' is not an environment of this file",
        ),
        ("environments:\n  prod: {promotes_from: prod}\n", "promotes_from", "from itself"),
        ("environments:\n  prod: {reviewer: [a]}\n", "environments.prod.reviewer", "unknown"),
        ("environments:\n  'bad name': {}\n", "environments", "should match pattern"),
        (
            "environments:\n  p: {approval_timeout_hours: 0}\n",
            "approval_timeout_hours",
            "greater than 0",
        ),
    ],
)
def test_invalid_files_name_the_field(tmp_path: Path, text: str, field: str, problem: str) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text(text)
    with pytest.raises(EnvironmentsFileError) as err:
        environments.load(path)
    message = str(err.value)
    assert str(path) in message
    assert field in message, message
    assert problem in message, message


def test_the_file_comes_from_the_environment_variable(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "elsewhere.yaml"
    path.write_text(FILE)
    monkeypatch.setenv(environments.FILE_VAR, str(path))
    assert set(environments.load()) == {"dev", "staging", "production"}


def test_installed_without_the_variable_the_error_names_it(monkeypatch) -> None:
    monkeypatch.delenv(environments.FILE_VAR, raising=False)
    monkeypatch.delenv("AIRMLOPS_PROJECT_DIR", raising=False)
    monkeypatch.setattr(environments.settings, "checkout_dir", lambda: None)
    with pytest.raises(FileNotFoundError, match=environments.FILE_VAR):
        environments.environments_file()


def test_the_shipped_file_is_valid() -> None:
    envs = environments.load(Path(__file__).resolve().parents[3] / "include" / "environments.yaml")
    assert envs["production"].promotes_from == "staging"
    assert envs["production"].approval


def test_the_deployment_names_its_environment_through_the_settings(monkeypatch) -> None:
    """AIRMLOPS_ENVIRONMENT is read through the typed settings; an empty value counts as unset
    (then the operator falls back to the Variable airmlops_environment)."""
    from airmlops_core import settings

    monkeypatch.setenv(environments.ENVIRONMENT_VAR, "staging")
    assert settings.current().environment == "staging"
    monkeypatch.setenv(environments.ENVIRONMENT_VAR, "")
    assert settings.current().environment is None
