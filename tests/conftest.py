"""Shared test settings: each test session uses its own local state directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlflow_server import mlflow_server

PROJECT_DIR = Path(__file__).resolve().parents[1]
MODELS_DIR = PROJECT_DIR / "include" / "models"

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "true")

# Fixtures that start a real server process: a test that uses one is an integration test
# wherever it lives, so `-m "not integration"` is the fast tier that starts no server.
SERVER_FIXTURES = frozenset(
    {"mlflow_url", "s3_server", "s3", "s3_prefix", "postgres", "postgres_server", "stack"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a server fixture, or lives in tests/integration, as such."""
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & SERVER_FIXTURES or "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


# Process-wide settings code under test may set (the CLI and the stack's helpers put the local
# MLflow's credentials into os.environ on purpose): each test gets back what it started with,
# so no test sees a login an earlier one left behind (a module's or the session's fixtures,
# set up before this one, keep theirs).
ISOLATED_ENV = (
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
    "MLFLOW_TRACKING_URI",
)


@pytest.fixture(autouse=True)
def _isolated_environment() -> Iterator[None]:
    before = {key: os.environ.get(key) for key in ISOLATED_ENV}
    yield
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture
def models_dir() -> Path:
    """The committed demo specs."""
    return MODELS_DIR


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow tracking server for the session (SQLite, served artifacts)."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url
