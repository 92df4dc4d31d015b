"""Tests of airmlops_core.quality.report: the offline HTML report of a data check."""

from __future__ import annotations

import json
import re
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

import browser
from airmlops_core.quality.check import validate
from airmlops_core.quality.report import log_check, render_html
from airmlops_core.quality.results import CheckResult
from airmlops_core.quality.suite import Suite
from samples import sample_rows


@pytest.fixture(scope="module")
def failed_result(churn: pd.DataFrame, churn_suite: Suite) -> CheckResult:
    df = sample_rows(churn, 21)
    df.loc[:40, "contract"] = "<script>alert(1)</script>"
    df.loc[:9, "total_charges"] = None
    df.loc[10:30, "total_charges"] = None
    df = df.drop(columns=["tenure"])
    result = validate(df, churn_suite, source="/data/batch-2013-10.parquet")
    assert not result.success
    assert result.warnings
    return result


def test_render_html_is_self_contained(failed_result: CheckResult) -> None:
    page = render_html(failed_result, title="Data check: customer_churn")
    low = page.lower()
    assert "http://" not in low
    assert "https://" not in low
    assert "<link" not in low
    assert "<script" not in low
    assert "src=" not in low
    assert "url(" not in low
    assert "@import" not in low
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # sample values are escaped
    assert "FAILED" in page
    assert "contract.allowed" in page
    assert "tenure.exists" in page
    assert "total_charges.max_null_fraction" in page
    assert "41" in page
    assert page.count("<tr>") == 1 + len(failed_result.failures) + 1 + len(failed_result.warnings)
    ok = render_html(CheckResult("m", True, [], [], 5, 10), title="ok")
    assert "PASSED" in ok
    assert "No blocking failures." in ok


def test_render_html_in_a_real_browser(failed_result: CheckResult, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_html(failed_result, title="Data check: customer_churn"), "utf-8")
    pixels = browser.screenshot(page, tmp_path)
    assert pixels.shape[:2] == (900, 1200)
    assert pixels.std() > 20, "the screenshot is (nearly) blank"
    red = browser.colour_pixels(pixels, (207, 34, 46))
    assert red > 5000, f"the red FAILED banner is missing ({red} red pixels)"
    white = (pixels.min(axis=2) > 245).mean()
    assert white > 0.2  # table backgrounds rendered: the inline CSS applied
    # the check can fail: the same page without its inline styles has no banner
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<style>.*?</style>", "", page.read_text(), flags=re.S), "utf-8")
    assert browser.colour_pixels(browser.screenshot(bare, tmp_path), (207, 34, 46)) < 100


def test_passing_report_renders_green(tmp_path: Path) -> None:
    page = tmp_path / "ok.html"
    page.write_text(render_html(CheckResult("m", True, [], [], 5, 10), title="ok"), "utf-8")
    pixels = browser.screenshot(page, tmp_path)
    assert browser.colour_pixels(pixels, (26, 127, 55)) > 5000
    assert browser.colour_pixels(pixels, (207, 34, 46)) == 0


def test_log_check_logs_json_page_and_tag(
    failed_result: CheckResult, mlflow_url: str, tmp_path: Path
) -> None:
    mlflow.set_tracking_uri(mlflow_url)
    mlflow.set_experiment("test_log_check")
    with mlflow.start_run() as run:
        log_check(failed_result, "holdout", tag_prefix="airmlops.")
    client = MlflowClient(mlflow_url)
    logged = {a.path for a in client.list_artifacts(run.info.run_id, "data_checks")}
    assert logged == {"data_checks/holdout.json", "data_checks/holdout.html"}
    local = Path(client.download_artifacts(run.info.run_id, "data_checks", str(tmp_path)))
    stored = json.loads((local / "holdout.json").read_text())
    assert CheckResult.from_dict(stored) == failed_result
    assert "contract.allowed" in (local / "holdout.html").read_text()
    assert client.get_run(run.info.run_id).data.tags["airmlops.data_check.holdout"] == "fail"
