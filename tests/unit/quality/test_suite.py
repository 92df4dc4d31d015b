"""Tests of airmlops_core.quality.suite: the schema, its errors, writing and finding suites."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from airmlops_core.errors import SuiteError
from airmlops_core.quality.drafting import profile
from airmlops_core.quality.suite import load_suite, suite_for, suite_path, write_suite
from airmlops_core.spec import DataChecks, load_spec
from paths import PROJECT_DIR as PROJECT


def test_profile_write_load_round_trip(churn: pd.DataFrame, tmp_path: Path) -> None:
    suite = profile(churn, model="customer_churn", target="churn", unique=["customer_id"])
    path = tmp_path / "customer_churn.yaml"
    write_suite(suite, path, header="drafted in a test")
    text = path.read_text()
    assert text.startswith("# drafted in a test\nmodel: customer_churn\n")
    assert load_suite(path) == suite
    write_suite(suite, path, header="drafted in a test")
    assert path.read_text() == text  # stable bytes
    assert list(suite.columns) == list(churn.columns)


@pytest.mark.parametrize(
    ("body", "field", "problem"),
    [
        (
            "  tenure: {dtype: int64, nullable: false, maximum: 3}\n",
            "columns.tenure.maximum",
            "unknown field",
        ),
        (
            "  tenure: {dtype: int64, min: 10, max: 1}\n",
            "columns.tenure",
            "min (10) is greater than max (1)",
        ),
        ("  tenure: {dtype: int64, severity: fatal}\n", "columns.tenure.severity", "fatal"),
        ("  tenure: {dtype: integer}\n", "columns.tenure.dtype", "unknown dtype 'integer'"),
        (
            "  tenure: {dtype: int64, severities: {maximum: warn}}\n",
            "columns.tenure.severities.maximum",
            "range",
        ),
        ("  tenure: {dtype: int64, allowed: []}\n", "columns.tenure.allowed", "empty allowed"),
        ("  tenure: int64\n", "columns.tenure", "expected a mapping of rules"),
    ],
)
def test_bad_suite_file_names_file_and_field(
    tmp_path: Path, body: str, field: str, problem: str
) -> None:
    path = tmp_path / "customer_churn.yaml"
    path.write_text("model: customer_churn\ncolumns:\n" + body)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{field}:" in message, message
    assert problem in message, message


@pytest.mark.parametrize(
    ("text", "field", "problem"),
    [
        ("model: customer_churn\nseverity: loud\ncolumns: {a: {dtype: str}}\n", "severity", "loud"),
        ("model: other_name\ncolumns: {a: {dtype: str}}\n", "model", "must equal the file name"),
        (
            "model: customer_churn\ntarget: label\ncolumns: {a: {dtype: str}}\n",
            "(top level)",
            "target 'label' is not one of the columns",
        ),
        (
            "model: customer_churn\nrow_count: {min: 5, max: 1}\ncolumns: {a: {}}\n",
            "row_count",
            "min (5) is greater than max (1)",
        ),
        ("model: customer_churn\ncolumns: [a, b]\n", "columns", "valid dictionary"),
        ("- just a list\n", "(top level)", "expected a mapping"),
        ("model: [unclosed\n", "(yaml)", "not valid YAML"),
    ],
)
def test_bad_suite_top_level(tmp_path: Path, text: str, field: str, problem: str) -> None:
    path = tmp_path / "customer_churn.yaml"
    path.write_text(text)
    with pytest.raises(SuiteError) as info:
        load_suite(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{field}:" in message, message
    assert problem in message, message


def test_suite_path_defaults_to_the_project(tmp_path: Path) -> None:
    assert suite_path("customer_churn").parts[-3:] == (
        "include",
        "expectations",
        "customer_churn.yaml",
    )
    assert suite_path("m", tmp_path) == tmp_path / "m.yaml"


def test_suite_for_narrows_to_the_spec_columns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = load_spec(PROJECT / "include" / "models" / "customer_churn.yaml")
    full = load_suite(suite_path("customer_churn"))
    narrowed = suite_for(spec)
    assert list(narrowed.columns) == [c for c in full.columns if c in spec.columns]
    assert "phone_service" in full.columns  # in the table, not read by the model
    assert "phone_service" not in narrowed.columns
    assert narrowed.target == "churn"
    # spec.data_checks.suite: a path under the project directory
    suites = tmp_path / "suites"
    suites.mkdir()
    (suites / "customer_churn.yaml").write_text(
        "model: customer_churn\ncolumns: {tenure: {dtype: int64}, unused: {dtype: str}}\n"
    )
    monkeypatch.setenv("AIRMLOPS_PROJECT_DIR", str(tmp_path))
    custom = spec.model_copy(update={"data_checks": DataChecks(suite="suites/customer_churn.yaml")})
    assert list(suite_for(custom).columns) == ["tenure"]
