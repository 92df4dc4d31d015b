"""Parsing and validation of the Astro-format airflow_settings.yaml (no Airflow needed)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from airmlops_dev.settings_loader import (
    ConnectionSetting,
    PoolSetting,
    Settings,
    SettingsError,
    VariableSetting,
    load_settings_file,
    main,
    parse_settings,
)
from paths import PROJECT_DIR

# What `astro dev init` writes: placeholders with every field empty.
ASTRO_TEMPLATE = """
airflow:
  connections:
    - conn_id:
      conn_type:
      conn_host:
      conn_schema:
      conn_login:
      conn_password:
      conn_port:
      conn_extra:
        example_extra_field: example-value
  pools:
    - pool_name:
      pool_slot:
      pool_description:
  variables:
    - variable_name:
      variable_value:
"""


def test_project_settings_file() -> None:
    settings = load_settings_file(PROJECT_DIR / "airflow_settings.yaml")
    conns = {c.conn_id: c for c in settings.connections}
    assert set(conns) == {"slack_alerts", "mlflow_default", "model_api_default"}
    api = conns["model_api_default"]
    assert (api.conn_type, api.host, api.password) == ("http", "http://127.0.0.1:5001", None)
    assert conns["slack_alerts"].conn_type == "slackwebhook"
    assert conns["slack_alerts"].password == "http://127.0.0.1:8099/services/T000/B000/local"
    assert (conns["mlflow_default"].conn_type, conns["mlflow_default"].host) == (
        "http",
        "http://127.0.0.1:5000",
    )
    assert {(p.name, p.slots) for p in settings.pools} == {("ml_training", 2), ("ml_scoring", 2)}
    assert settings.variables == (VariableSetting("airmlops_environment", "local"),)


def test_astro_template_placeholders_are_skipped() -> None:
    data = yaml.safe_load(ASTRO_TEMPLATE)
    # the template's only non-empty value is the example extra; blank it like a fresh project
    data["airflow"]["connections"][0]["conn_extra"] = None
    assert parse_settings(data) == Settings()


def test_empty_documents() -> None:
    assert parse_settings(None) == Settings()
    assert parse_settings({"airflow": None}) == Settings()
    assert parse_settings({"airflow": {"connections": None}}) == Settings()


def test_full_entries_are_normalised() -> None:
    data = {
        "airflow": {
            "connections": [
                {
                    "conn_id": "pg",
                    "conn_type": "postgres",
                    "conn_host": "db",
                    "conn_schema": "public",
                    "conn_login": "me",
                    "conn_password": "pw",
                    "conn_port": "5432",
                    "conn_extra": '{"sslmode": "disable"}',
                }
            ],
            "pools": [{"pool_name": "p", "pool_slot": 3}],
            "variables": [
                {"variable_name": "n", "variable_value": 5},
                {"variable_name": "flag", "variable_value": True},
                {"variable_name": "cfg", "variable_value": {"a": [1, 2]}},
                {"variable_name": "empty", "variable_value": None},
            ],
        }
    }
    settings = parse_settings(data)
    assert settings.connections == (
        ConnectionSetting(
            "pg", "postgres", "db", "public", "me", "pw", 5432, {"sslmode": "disable"}
        ),
    )
    assert settings.pools == (PoolSetting("p", 3, ""),)
    assert {v.key: v.value for v in settings.variables} == {
        "n": "5",
        "flag": "true",
        "cfg": '{"a": [1, 2]}',
        "empty": "",
    }


def test_password_is_not_in_repr() -> None:
    conn = ConnectionSetting("c", "http", password="hunter2-secret")
    assert "hunter2-secret" not in repr(conn)
    assert "hunter2-secret" not in repr(Settings(connections=(conn,)))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["not", "a", "mapping"], "expected a mapping"),
        ({"airflw": {}}, "unknown top-level key"),
        ({"airflow": []}, "'airflow' must be a mapping"),
        ({"airflow": {"pool": []}}, "unknown section"),
        ({"airflow": {"pools": {"pool_name": "x"}}}, "airflow.pools must be a list"),
        ({"airflow": {"pools": ["x"]}}, r"airflow.pools\[0\] must be a mapping"),
        ({"airflow": {"pools": [{"pool_name": "x"}]}}, "pool_slot is required"),
        ({"airflow": {"pools": [{"pool_name": "x", "pool_slot": "two"}]}}, "must be an integer"),
        ({"airflow": {"pools": [{"pool_name": "x", "pool_slot": -5}]}}, "must be >= -1"),
        ({"airflow": {"pools": [{"pool_slot": 1}]}}, "pool_name is required"),
        ({"airflow": {"connections": [{"conn_id": "c"}]}}, "conn_type is required"),
        (
            {"airflow": {"connections": [{"conn_id": "c", "conn_type": "http", "conn_port": 0}]}},
            "conn_port must be >= 1",
        ),
        (
            {"airflow": {"connections": [{"conn_id": "c", "conn_type": "h", "conn_extra": "[1]"}]}},
            "conn_extra must be a mapping",
        ),
        (
            {"airflow": {"connections": [{"conn_id": "c", "conn_type": "h", "conn_extra": "{"}]}},
            "conn_extra must be a mapping or a JSON object",
        ),
        (
            {"airflow": {"variables": [{"variable_name": "v"}, {"variable_name": "v"}]}},
            "variable 'v' is declared more than once",
        ),
        (
            {"airflow": {"variables": [{"variable_name": ["a"], "variable_value": 1}]}},
            "variable_name must be a scalar",
        ),
    ],
)
def test_invalid_documents(data: object, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        parse_settings(data, source="s.yaml")


def test_typo_in_a_key_names_it_but_never_the_secret() -> None:
    data = {
        "airflow": {
            "connections": [
                {"conn_id": "slack", "conn_type": "slackwebhook", "conn_pasword": "xoxb-secret"}
            ]
        }
    }
    with pytest.raises(SettingsError) as excinfo:
        parse_settings(data, source="airflow_settings.yaml")
    text = str(excinfo.value)
    assert "airflow_settings.yaml: airflow.connections[0]" in text
    assert "conn_pasword" in text
    assert "xoxb-secret" not in text


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read settings file"):
        load_settings_file(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("airflow:\n  pools: [\n")
    with pytest.raises(SettingsError, match="not valid YAML"):
        load_settings_file(bad)


def test_cli_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(PROJECT_DIR / "airflow_settings.yaml"), "--check"]) == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("airflow:\n  pools:\n    - {pool_name: p}\n")
    assert main([str(bad), "--check"]) == 2
    assert "pool_slot is required" in capsys.readouterr().err


def test_parsing_does_not_import_airflow() -> None:
    code = (
        "import sys, airmlops_dev.settings_loader as s; "
        f"s.load_settings_file({str(PROJECT_DIR / 'airflow_settings.yaml')!r}); "
        "print(any(m == 'airflow' or m.startswith('airflow.') for m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"
