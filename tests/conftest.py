"""Shared test settings: each test session uses its own local state directory."""

from __future__ import annotations

import os
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


@pytest.fixture
def models_dir() -> Path:
    """The committed demo specs."""
    return MODELS_DIR


@pytest.fixture(scope="session")
def mlflow_url(tmp_path_factory: pytest.TempPathFactory):
    """A real MLflow tracking server for the session (SQLite, served artifacts)."""
    with mlflow_server(tmp_path_factory.mktemp("mlflow")) as url:
        yield url
