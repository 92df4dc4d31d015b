"""Tests of airmlops_core.quality.results: failures and verdicts as JSON-able evidence."""

from __future__ import annotations

import json

import numpy as np

from airmlops_core.quality.results import CheckResult, Failure


def test_failure_round_trip_and_describe() -> None:
    f = Failure(
        rule="a.range",
        expectation="expect_column_values_to_be_between",
        column="a",
        severity="block",
        unexpected_count=3,
        unexpected_percent=1.5,
        sample_values=[np.int64(7), float("nan")],
        observed=None,
        expected="values <= 5",
    )
    d = f.to_dict()
    assert d["sample_values"] == [7, None]
    assert json.loads(json.dumps(d)) == d
    assert "a.range" in f.describe()
    assert "3 unexpected (1.50% of rows)" in f.describe()


def test_check_result_round_trip_and_summary() -> None:
    blocking = Failure(
        "a.exists", "expect_column_to_exist", "a", "block", observed="no such column"
    )
    warning = Failure(
        "b.max_null_fraction",
        "expect_column_values_to_not_be_null",
        "b",
        "warn",
        unexpected_count=4,
        unexpected_percent=2.0,
        expected="at most 1.00% nulls",
    )
    result = CheckResult("m", False, [blocking], [warning], 200, 7, batch=True, source="/in.csv")
    d = result.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert CheckResult.from_dict(d) == result
    assert result.failed_rules == ["a.exists"]
    text = result.summary()
    assert text.startswith(
        "m batch data check FAILED: 7 expectations on 200 rows of /in.csv, "
        "1 blocking failure(s), 1 warning(s)."
    )
    assert (
        "Failures: a.exists (expect_column_to_exist on column 'a'): observed \"no such column\""
        in text
    )
    assert "Warnings: b.max_null_fraction" in text
    assert "4 unexpected (2.00% of rows)" in text
    assert d["summary"] == text
