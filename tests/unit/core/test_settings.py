"""The typed settings object, its checkout defaults, and copying the DAG files."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from airmlops_core import dag_files, settings

PROJECT_DIR = Path(__file__).resolve().parents[3]
DOCS = PROJECT_DIR / "docs" / "settings.md"


@pytest.fixture(autouse=True)
def _no_airmlops_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in settings.AirmlopsSettings.model_fields:
        monkeypatch.delenv(settings.ENV_PREFIX + name.upper(), raising=False)


def test_in_a_checkout_the_defaults_are_the_repository() -> None:
    assert settings.checkout_dir() == PROJECT_DIR
    assert settings.project_dir() == PROJECT_DIR
    assert settings.models_dir() == PROJECT_DIR / "include" / "models"
    assert settings.expectations_dir() == PROJECT_DIR / "include" / "expectations"
    assert settings.local_dir() == PROJECT_DIR / ".local"
    assert settings.work_uri() == str(PROJECT_DIR / ".local" / "work")
    assert settings.alert_log() == str(PROJECT_DIR / ".local" / "work" / "alerts" / "undelivered")


def test_variables_override_and_empty_counts_as_unset(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AIRMLOPS_PROJECT_DIR", str(tmp_path))
    monkeypatch.setenv("AIRMLOPS_WORK_URI", "s3://bucket/work")
    monkeypatch.setenv("AIRMLOPS_MODELS_DIR", "")
    assert settings.models_dir() == tmp_path / "include" / "models"
    assert settings.local_dir() == tmp_path / ".local"
    assert settings.data_dir() == tmp_path / ".local" / "data"
    assert settings.work_uri() == "s3://bucket/work"
    assert settings.alert_log() == "s3://bucket/work/alerts/undelivered"  # shared, as work is
    assert settings.resolve_path("suites/x.yaml") == tmp_path / "suites" / "x.yaml"
    assert settings.resolve_path("/abs/x.yaml") == Path("/abs/x.yaml")


def test_a_mapping_is_read_alone_and_a_wrong_type_names_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AIRMLOPS_MODEL_API_PORT", "6000")
    assert settings.current({}).model_api_port is None
    assert settings.current({"AIRMLOPS_MODEL_API_PORT": "7000"}).model_api_port == 7000
    with pytest.raises(ValidationError, match="model_api_port"):
        settings.current({"AIRMLOPS_MODEL_API_PORT": "seven"})


def test_secrets_never_show_in_the_repr() -> None:
    cfg = settings.current({"AIRMLOPS_MODEL_API_TOKEN": "s3cr3t-value-of-enough-length"})
    assert "s3cr3t" not in repr(cfg)
    assert cfg.model_api_token is not None
    assert cfg.model_api_token.get_secret_value() == "s3cr3t-value-of-enough-length"


def test_every_setting_is_in_the_documented_table() -> None:
    documented = set(re.findall(r"^\| `(AIRMLOPS_[A-Z_]+)` \|", DOCS.read_text(), re.M))
    fields = {settings.ENV_PREFIX + n.upper() for n in settings.AirmlopsSettings.model_fields}
    assert documented == fields


def test_install_dags_copies_once_and_refuses_to_clobber(tmp_path: Path) -> None:
    written = dag_files.install(tmp_path / "dags")
    assert sorted(p.name for p in written) == sorted(dag_files.DAG_FILES)
    for path in written:
        assert path.read_bytes() == (PROJECT_DIR / "dags" / path.name).read_bytes()
    assert dag_files.install(tmp_path / "dags") == []  # unchanged: nothing written
    (tmp_path / "dags" / "model_pipelines.py").write_text("# mine\n")
    with pytest.raises(dag_files.DagFileConflict, match="model_pipelines.py"):
        dag_files.install(tmp_path / "dags")
    assert [p.name for p in dag_files.install(tmp_path / "dags", overwrite=True)] == [
        "model_pipelines.py"
    ]
