"""Tests of airmlops_core.quality.__main__: drafting and checking from the shell."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from airmlops_core.io import data
from airmlops_core.quality.__main__ import main
from airmlops_core.quality.suite import load_suite
from samples import sample_rows


def test_profile_then_check(
    churn: pd.DataFrame,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("AIRMLOPS_PROJECT_DIR", str(tmp_path))  # suite_path() goes here
    no_month = data.write_frame(sample_rows(churn, 1), str(tmp_path / "plain.parquet")).uri
    with_month = sample_rows(churn, 2).assign(month=[1, 2] * 500)
    src = data.write_frame(with_month, str(tmp_path / "window.parquet")).uri
    out = tmp_path / "include" / "expectations" / "customer_churn.yaml"
    out.parent.mkdir(parents=True)
    argv = ["profile", src, "--model", "customer_churn", "--target", "churn"]
    assert main([*argv, "--unique", "customer_id", "--window", "month", "1", "1"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    suite = load_suite(out)
    assert suite.columns["month"].allowed == [1]  # only the window's rows were profiled
    assert suite.columns["customer_id"].unique

    # the drafted suite rejects the unwindowed months: exit code 1, an HTML report
    page = tmp_path / "report.html"
    assert main(["check", src, "--model", "customer_churn", "--html", str(page)]) == 1
    assert "month.allowed" in capsys.readouterr().out
    assert "FAILED" in page.read_text()
    # a file without the month column fails on it; the batch variant ignores the label
    assert main(["check", no_month, "--model", "customer_churn", "--batch"]) == 1
    assert "month.exists" in capsys.readouterr().out
