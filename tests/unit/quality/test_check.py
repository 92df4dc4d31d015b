"""Tests of airmlops_core.quality.check: the Great Expectations gate on frames and files.

The corruption campaign breaks samples of the real churn data in many ways and checks that every
corrupted sample is rejected for the right reason, and that clean samples are never rejected.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from airmlops_core.io import data
from airmlops_core.quality.check import validate, validate_uri
from airmlops_core.quality.results import CheckResult
from airmlops_core.quality.suite import Suite, load_suite, suite_path
from airmlops_dev import demo_data
from samples import sample_rows

# ------------------------------------------------------------------------------------------
# The committed suites accept their own demo data


@pytest.mark.parametrize(
    ("model", "make"),
    [("customer_churn", demo_data.churn), ("diamond_price", demo_data.diamonds)],
)
def test_demo_data_passes_its_suite(model: str, make: Callable[[], pd.DataFrame]) -> None:
    suite = load_suite(suite_path(model))
    df = make()
    result = validate(df, suite)
    assert result.success, result.summary()
    assert result.failures == []
    assert result.warnings == []
    assert result.rows == len(df)
    assert result.evaluated >= 3 * len(suite.columns)


def test_flights_suite_passes_training_window_and_later_months(flights: pd.DataFrame) -> None:
    suite = load_suite(suite_path("flight_delay"))
    train = flights[flights["month"] <= 9].reset_index(drop=True)
    result = validate(train, suite)
    assert result.success, result.summary()
    assert not result.failures
    assert not result.warnings
    for month in (10, 11, 12):
        part = flights[flights["month"] == month].reset_index(drop=True)
        for batch in (True, False):  # scoring batches; labelled later for retraining
            res = validate(part, suite, batch=batch)
            assert res.success, (month, batch, res.summary())
            assert not res.failures
    # ... and the suite is not vacuous: a month beyond the calendar is rejected
    bad = flights[flights["month"] == 12].assign(month=13)
    assert "month.range" in validate(bad, suite, batch=True).failed_rules


def test_validate_reports_what_it_evaluated(churn: pd.DataFrame, churn_suite: Suite) -> None:
    validate(churn.head(200), churn_suite)  # GX imported and context built once
    sample = sample_rows(churn, 0)
    result = validate(sample, churn_suite)
    assert result.success
    assert result.rows == len(sample)
    assert result.evaluated > 0


# ------------------------------------------------------------------------------------------
# Corruption campaign


def _write_parquet(tmp: Path, df: pd.DataFrame, name: str) -> str:
    return data.write_frame(df, str(tmp / name)).uri


def _null_burst(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    col = str(rng.choice(["tenure", "contract", "monthly_charges", "partner"]))
    rows = rng.choice(len(df), size=len(df) // 20, replace=False)
    out = df.copy()
    out.loc[rows, col] = None
    return out, f"{col}.nullable"


def _dropped_column(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    col = str(rng.choice([c for c in df.columns if c != "churn"]))
    return df.drop(columns=[col]), f"{col}.exists"


def _renamed_column(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    col = str(rng.choice(["monthly_charges", "payment_method", "tenure"]))
    camel = "".join(p.title() for p in col.split("_"))
    return df.rename(columns={col: camel}), f"{col}.exists"


def _dtype_flip(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    col = str(rng.choice(["tenure", "monthly_charges", "partner", "customer_id"]))
    return df.assign(**{col: df[col].astype("str")}), f"{col}.dtype"


def _out_of_range(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    col = str(rng.choice(["tenure", "monthly_charges", "total_charges"]))
    rows = rng.choice(len(df), size=30, replace=False)
    out = df.copy()
    out.loc[rows, col] = -out.loc[rows, col].fillna(1).abs() - 5  # negative charges / tenure
    return out, f"{col}.range"


def _duplicate_keys(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    rows = rng.choice(len(df), size=10, replace=False)
    out = df.copy()
    out.loc[rows[5:], "customer_id"] = out.loc[rows[:5], "customer_id"].to_numpy()
    return out, "customer_id.unique"


def _empty_frame(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    return df.iloc[:0], "table.row_count"


def _truncated_parquet(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    uri = _write_parquet(tmp, df, "truncated.parquet")
    raw = Path(uri).read_bytes()
    Path(uri).write_bytes(raw[: int(len(raw) * rng.uniform(0.2, 0.9))])
    return uri, "file.readable"


def _unseen_category(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    col = str(rng.choice(["contract", "payment_method", "internet_service", "female"]))
    rows = rng.choice(len(df), size=25, replace=False)
    out = df.copy()
    out.loc[rows, col] = "Unheard of"
    return out, f"{col}.allowed"


def _constant_column(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    col = str(rng.choice(["internet_service", "tenure", "senior_citizen", "monthly_charges"]))
    return df.assign(**{col: df[col].iloc[0]}), f"{col}.min_distinct"


def _wrong_delimiter(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    path = tmp / "semicolons.csv"
    df.to_csv(path, sep=str(rng.choice([";", "\t", "|"])), index=False)
    return str(path), "file.readable"


def _empty_file(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    path = tmp / str(rng.choice(["empty.parquet", "empty.csv"]))
    path.write_bytes(b"")
    return str(path), "file.readable"


def _extra_column(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    return df.assign(debug_score=rng.random(len(df))), "table.extra_columns"


def _bad_labels(df: pd.DataFrame, rng: np.random.Generator, tmp: Path) -> tuple[Any, str]:
    rows = rng.choice(len(df), size=15, replace=False)
    out = df.copy()
    out.loc[rows, "churn"] = 2
    return out, "churn.allowed"


CORRUPTIONS: dict[str, Callable[..., tuple[Any, str]]] = {
    "null burst": _null_burst,
    "dropped column": _dropped_column,
    "renamed column": _renamed_column,
    "dtype flip": _dtype_flip,
    "out of range": _out_of_range,
    "duplicate keys": _duplicate_keys,
    "empty frame": _empty_frame,
    "truncated parquet": _truncated_parquet,
    "unseen category": _unseen_category,
    "constant column": _constant_column,
    "wrong delimiter csv": _wrong_delimiter,
    "empty file": _empty_file,
    "extra column": _extra_column,
    "bad labels": _bad_labels,
}
SEEDS = (11, 22, 33)


def test_corruption_campaign(churn: pd.DataFrame, churn_suite: Suite, tmp_path: Path) -> None:
    caught: Counter[str] = Counter()
    misses: list[str] = []
    for name, corrupt in CORRUPTIONS.items():
        for seed in SEEDS:
            rng = np.random.default_rng(seed)
            work = tmp_path / f"{name.replace(' ', '_')}-{seed}"
            work.mkdir()
            bad, rule = corrupt(sample_rows(churn, seed), rng, work)
            if isinstance(bad, str):
                result, frame = validate_uri(bad, churn_suite)
                assert frame is None
            else:
                result = validate(bad, churn_suite)
            column = rule.rsplit(".", 1)[0]
            named = [
                f
                for f in result.failures
                if f.rule == rule and (f.column == column or column in ("table", "file"))
            ]
            if not result.success and named and named[0].severity == "block":
                caught[name] += 1
            else:
                misses.append(f"{name} (seed {seed}): wanted {rule}, got {result.summary()}")

    false_rejections: list[str] = []
    warned = 0
    for seed in range(100, 120):
        n = int(np.random.default_rng(seed).integers(500, 3001))
        result = validate(sample_rows(churn, seed, n), churn_suite)
        warned += bool(result.warnings)
        if not result.success or result.failures:
            false_rejections.append(f"seed {seed}, {n} rows: {result.summary()}")

    total = len(CORRUPTIONS) * len(SEEDS)
    print(
        f"\ncorruption campaign on customer_churn: {sum(caught.values())}/{total} corrupted "
        f"samples rejected for the right rule; {20 - len(false_rejections)}/20 clean samples "
        f"accepted ({warned} with warnings)"
    )
    for name in CORRUPTIONS:
        print(f"  {name:22s} {caught[name]}/{len(SEEDS)}")
    assert not misses, "\n".join(misses)
    assert not false_rejections, "\n".join(false_rejections)
    assert len(CORRUPTIONS) >= 10
    assert sum(caught.values()) == total


def test_missing_column_is_named_once(churn: pd.DataFrame, churn_suite: Suite) -> None:
    result = validate(sample_rows(churn, 5).drop(columns=["tenure", "contract"]), churn_suite)
    assert not result.success
    # the missing columns are the failures; their other rules are consequences, not reported
    assert sorted(result.failed_rules) == ["contract.exists", "tenure.exists"]
    assert {f.column for f in result.failures} == {"tenure", "contract"}


def test_empty_frame_fails_on_row_count_only(churn: pd.DataFrame, churn_suite: Suite) -> None:
    result = validate(churn.iloc[:0], churn_suite)
    assert not result.success
    assert result.rows == 0
    assert result.failed_rules == ["table.row_count"]
    assert result.failures[0].observed == 0
    nothing = validate(pd.DataFrame(), churn_suite)  # no columns at all: fails, no crash
    assert not nothing.success
    assert "table.row_count" in nothing.failed_rules
    assert "customer_id.exists" in nothing.failed_rules


def test_duplicate_column_names_fail(churn: pd.DataFrame, churn_suite: Suite) -> None:
    df = sample_rows(churn, 3)
    twice = pd.concat([df, df[["tenure"]]], axis=1)
    result = validate(twice, churn_suite)
    assert not result.success
    assert "table.duplicate_columns" in result.failed_rules


def test_clean_csv_passes_with_suite_types(
    churn: pd.DataFrame, churn_suite: Suite, tmp_path: Path
) -> None:
    # female/senior_citizen hold "0"/"1" text: a CSV reader sees integers
    path = tmp_path / "batch.csv"
    sample_rows(churn, 8).to_csv(path, index=False)
    result, frame = validate_uri(str(path), churn_suite)
    assert result.success, result.summary()
    assert frame is not None
    assert frame["female"].dtype == "str"
    assert result.source == str(path)


# ------------------------------------------------------------------------------------------
# Severity, batch variant, summary


def test_warn_severity_does_not_block(churn: pd.DataFrame, churn_suite: Suite) -> None:
    df = sample_rows(churn, 4)
    df.loc[: len(df) // 20, "total_charges"] = None  # 5% nulls; the suite allows 1% (warn)
    result = validate(df, churn_suite)
    assert result.success, result.summary()
    assert result.failures == []
    assert [w.rule for w in result.warnings] == ["total_charges.max_null_fraction"]
    warning = result.warnings[0]
    assert warning.severity == "warn"
    assert warning.unexpected_count == int(df.total_charges.isna().sum())
    assert "Warnings: total_charges.max_null_fraction" in result.summary()
    assert "PASSED" in result.summary()


def test_column_level_severity_from_the_brief_format(churn: pd.DataFrame, tmp_path: Path) -> None:
    path = tmp_path / "customer_churn.yaml"
    path.write_text(
        "model: customer_churn\n"
        "target: churn\n"
        "row_count: {min: 100, max: 50000000, severity: block}\n"
        "severity: block\n"
        "extra_columns: ignore\n"
        "columns:\n"
        "  customer_id: {dtype: int64, nullable: false, unique: true}\n"
        "  tenure: {dtype: int64, nullable: false, min: 0, max: 100}\n"
        "  total_charges: {dtype: float64, max_null_fraction: 0.01, min: 0, severity: warn}\n"
        "  contract: {dtype: str, nullable: false, allowed: [Month-to-month, One year, Two year]}\n"
        "  churn: {dtype: int64, nullable: false, allowed: [0, 1]}\n"
    )
    suite = load_suite(path)
    df = sample_rows(churn, 6)
    df.loc[:9, "total_charges"] = -1.0
    result = validate(df, suite)
    assert result.success
    assert [w.rule for w in result.warnings] == ["total_charges.range"]
    df.loc[:9, "tenure"] = 500
    result = validate(df, suite)
    assert not result.success
    assert result.failed_rules == ["tenure.range"]
    assert result.failures[0].unexpected_count == 10


def test_batch_ignores_the_target(churn: pd.DataFrame, churn_suite: Suite) -> None:
    df = sample_rows(churn, 9)
    unlabelled = df.drop(columns=["churn"])
    assert validate(unlabelled, churn_suite, batch=True).success
    training = validate(unlabelled, churn_suite)
    assert not training.success
    assert training.failed_rules == ["churn.exists"]
    garbage_labels = df.assign(churn=7)
    batch = validate(garbage_labels, churn_suite, batch=True)
    assert batch.success, batch.summary()
    assert batch.batch
    assert "churn.allowed" in validate(garbage_labels, churn_suite).failed_rules
    fewer = validate(df, churn_suite, batch=True).evaluated
    assert fewer < validate(df, churn_suite).evaluated


def test_summary_names_expectation_column_count_and_samples(
    churn: pd.DataFrame, churn_suite: Suite
) -> None:
    df = sample_rows(churn, 12)
    df.loc[[3, 50, 70, 90], "payment_method"] = "Crypto"
    df.loc[[5, 6], "payment_method"] = "Barter"
    result = validate(df, churn_suite)
    text = result.summary()
    assert not result.success
    assert "FAILED" in text
    assert "payment_method.allowed" in text
    assert "expect_column_values_to_be_in_set" in text
    assert "column 'payment_method'" in text
    assert "6 unexpected (0.60% of rows)" in text
    assert '"Crypto"' in text
    assert '"Barter"' in text
    failure = result.failures[0]
    assert failure.sample_values[:2] == ["Crypto", "Barter"]  # most frequent first
    assert json.loads(json.dumps(result.to_dict()))["failures"][0]["rule"] == failure.rule
    assert CheckResult.from_dict(result.to_dict()) == result
