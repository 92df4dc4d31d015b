"""Where the pack keeps things: one typed settings object read from AIRMLOPS_* variables.

Every variable is in the table of docs/settings.md. Defaults follow where the pack runs: in a
checkout, the repository (specs in include/models, state in .local/); installed as a package,
the example specs and suites shipped in the package and state under $AIRFLOW_HOME/airmlops.
`current()` reads the environment on each call, so a changed variable takes effect at once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "AIRMLOPS_"
# Shipped in the wheel (pyproject.toml [tool.setuptools] package-dir), absent in a checkout.
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


class AirmlopsSettings(BaseSettings):
    """The pack's settings, each from AIRMLOPS_<FIELD NAME> (empty counts as unset)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_ignore_empty=True, extra="ignore", frozen=True
    )

    project_dir: Path | None = Field(
        default=None, description="a checkout of the pack; default: the one this code runs from"
    )
    models_dir: Path | None = Field(default=None, description="the model specs (<model>.yaml)")
    expectations_dir: Path | None = Field(
        default=None, description="the data suites (<model>.yaml)"
    )
    local_dir: Path | None = Field(default=None, description="root of the local defaults")
    data_dir: Path | None = Field(default=None, description="root of relative data URIs in specs")
    work_uri: str | None = Field(
        default=None,
        description="where tasks hand files to each other: a directory or s3:// prefix",
    )
    alert_log: str | None = Field(
        default=None,
        description="undelivered alerts: a directory or s3:// prefix (one JSON file each)",
    )
    code_version: str | None = Field(
        default=None, description="code version tagged on every MLflow run"
    )
    scoring_threads: int | None = Field(default=None, description="prediction threads per task")
    model_api_url: str | None = Field(
        default=None, description="model API for the health probe when no connection names one"
    )
    model_api_port: int | None = Field(default=None, ge=1, le=65535, description="model API port")
    recorder_log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", description="log level of the model API's live-recording processes"
    )
    model_api_token: SecretStr | None = Field(
        default=None, description="the model API's bearer token"
    )
    model_api_token_file: Path | None = Field(default=None, description="file holding that token")
    model_api_metrics_token: SecretStr | None = Field(
        default=None, description="scrape-only token for the model API's /metrics"
    )
    model_api_metrics_token_file: Path | None = Field(
        default=None, description="file holding that token"
    )
    environment: str | None = Field(
        default=None, description="this deployment's environment (deploy DAGs)"
    )
    environments_file: Path | None = Field(
        default=None, description="the environments file (deploy DAGs)"
    )


class _MappingSettings(AirmlopsSettings):
    """The same fields from an explicit mapping only (a CLI's `env` argument, tests)."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings,)


def current(env: Mapping[str, str] | None = None) -> AirmlopsSettings:
    """The settings from the process environment, or from `env` alone when given.

    Raises:
        pydantic.ValidationError: a variable holds a value of the wrong type (names it).
    """
    if env is None:
        return AirmlopsSettings()
    values: dict[str, Any] = {}
    for name in AirmlopsSettings.model_fields:
        value = env.get(ENV_PREFIX + name.upper())
        if value:
            values[name] = value
    return _MappingSettings(**values)


def checkout_dir() -> Path | None:
    """The repository this code runs from (include/airmlops_core in it), else None."""
    root = Path(__file__).resolve().parents[2]
    here = Path(__file__).resolve().parent
    return root if here == root / "include" / "airmlops_core" else None


def project_dir() -> Path:
    """The pack's checkout: AIRMLOPS_PROJECT_DIR, else the repository this code runs from.

    Raises:
        FileNotFoundError: installed as a package with AIRMLOPS_PROJECT_DIR unset.
    """
    found = current().project_dir or checkout_dir()
    if found is None:
        raise FileNotFoundError(
            "no checkout of the pack: the package is installed, and AIRMLOPS_PROJECT_DIR is unset"
        )
    return found


def _project_or_none() -> Path | None:
    return current().project_dir or checkout_dir()


def models_dir() -> Path:
    """Model specs: AIRMLOPS_MODELS_DIR, else include/models, else the specs in the package."""
    project = _project_or_none()
    return current().models_dir or (
        project / "include" / "models" if project else BUNDLED_DIR / "models"
    )


def expectations_dir() -> Path:
    """Data suites: AIRMLOPS_EXPECTATIONS_DIR, else include/expectations, else the package's."""
    project = _project_or_none()
    return current().expectations_dir or (
        project / "include" / "expectations" if project else BUNDLED_DIR / "expectations"
    )


def resolve_path(path: str | Path) -> Path:
    """A path a spec names: absolute as is; relative to the checkout, else to the folder
    holding the models directory (a deployment's copy of include/)."""
    path = Path(path)
    if path.is_absolute():
        return path
    project = _project_or_none()
    return (project or models_dir().parent) / path


def local_dir() -> Path:
    """Local state: AIRMLOPS_LOCAL_DIR, else <checkout>/.local, else $AIRFLOW_HOME/airmlops."""
    project = _project_or_none()
    if (env := current().local_dir) is not None:
        return env
    if project is not None:
        return project / ".local"
    airflow_home = os.environ.get("AIRFLOW_HOME") or Path.home() / "airflow"
    return Path(airflow_home) / "airmlops"


def data_dir() -> Path:
    """Root for relative data URIs in specs (AIRMLOPS_DATA_DIR, else <local dir>/data)."""
    return current().data_dir or local_dir() / "data"


def work_uri() -> str:
    """Where tasks hand files to each other: AIRMLOPS_WORK_URI, else <local dir>/work."""
    return current().work_uri or str(local_dir() / "work")


def alert_log() -> str:
    """Undelivered alerts: AIRMLOPS_ALERT_LOG, else <work URI>/alerts/undelivered (shared by
    every worker, as the work files are)."""
    return current().alert_log or work_uri().rstrip("/") + "/alerts/undelivered"
