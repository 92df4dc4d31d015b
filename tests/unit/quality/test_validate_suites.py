"""`airmlops validate --deep` reads each model's expectation suite: a reviewer's typo in a drafted
suite is named before a train run fails on it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from airmlops_core import cli, settings

PROJECT_DIR = settings.project_dir()


def _spec_with_suite(tmp_path: Path, suite: dict | None) -> Path:
    raw = yaml.safe_load((PROJECT_DIR / "include" / "models" / "customer_churn.yaml").read_text())
    suites = tmp_path / "suites"
    suites.mkdir()
    raw["data_checks"] = {"suite": str(suites / "customer_churn.yaml")}
    if suite is not None:
        (suites / "customer_churn.yaml").write_text(yaml.safe_dump(suite))
    path = tmp_path / "customer_churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _shipped_suite() -> dict:
    text = (PROJECT_DIR / "include" / "expectations" / "customer_churn.yaml").read_text()
    return yaml.safe_load(text)


def test_a_bad_severity_key_in_a_suite_fails_deep_validation(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    suite = _shipped_suite()
    column = next(iter(suite["columns"]))
    suite["columns"][column]["severities"] = {"max": "warn"}  # the rule is called `range`
    path = _spec_with_suite(tmp_path, suite)
    assert cli.main(["validate", str(path)]) == 0  # without --deep the suite is not read
    capsys.readouterr()
    assert cli.main(["validate", "--deep", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"columns.{column}.severities.max" in err
    assert "customer_churn.yaml" in err


def test_a_valid_suite_passes_and_a_missing_one_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "good").mkdir()
    good = _spec_with_suite(tmp_path / "good", _shipped_suite())
    assert cli.main(["validate", "--deep", str(good)]) == 0
    capsys.readouterr()
    (tmp_path / "missing").mkdir()
    missing = _spec_with_suite(tmp_path / "missing", None)
    assert cli.main(["validate", "--deep", str(missing)]) == 0  # a note, not an error
    assert "no expectation suite at " in capsys.readouterr().err
