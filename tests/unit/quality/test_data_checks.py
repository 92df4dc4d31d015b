"""Tests of airmlops_core.quality.data_checks: the GX data gate, its suites, reports and quarantine.

The corruption campaign breaks samples of the real churn data in many ways and checks that every
corrupted sample is rejected for the right reason, and that clean samples are never rejected.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import browser
from airmlops_core.errors import SuiteError
from airmlops_core.io import data
from airmlops_core.quality import data_checks as dc
from airmlops_core.quality.data_checks import CheckResult, Failure
from airmlops_dev import demo_data

# ------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="module")
def churn() -> pd.DataFrame:
    return demo_data.churn()


@pytest.fixture(scope="module")
def churn_suite() -> dc.Suite:
    return dc.load_suite(dc.suite_path("customer_churn"))


@pytest.fixture(scope="module")
def flights() -> pd.DataFrame:
    return demo_data.flights()


def _sample(df: pd.DataFrame, seed: int, n: int = 1000) -> pd.DataFrame:
    return df.sample(n=n, random_state=seed).reset_index(drop=True)


def _rules(result: CheckResult) -> list[str]:
    return [f.rule for f in result.failures]


# ------------------------------------------------------------------------------------------
# The committed suites accept their own demo data


@pytest.mark.parametrize(
    ("model", "make"),
    [("customer_churn", demo_data.churn), ("diamond_price", demo_data.diamonds)],
)
def test_demo_data_passes_its_suite(model: str, make: Callable[[], pd.DataFrame]) -> None:
    suite = dc.load_suite(dc.suite_path(model))
    df = make()
    result = dc.validate(df, suite)
    assert result.success, result.summary()
    assert result.failures == []
    assert result.warnings == []
    assert result.rows == len(df)
    assert result.evaluated >= 3 * len(suite.columns)


def test_flights_suite_passes_training_window_and_later_months(flights: pd.DataFrame) -> None:
    suite = dc.load_suite(dc.suite_path("flight_delay"))
    train = flights[flights["month"] <= 9].reset_index(drop=True)
    result = dc.validate(train, suite)
    assert result.success, result.summary()
    assert not result.failures
    assert not result.warnings
    for month in (10, 11, 12):
        part = flights[flights["month"] == month].reset_index(drop=True)
        for batch in (True, False):  # scoring batches; labelled later for retraining
            res = dc.validate(part, suite, batch=batch)
            assert res.success, (month, batch, res.summary())
            assert not res.failures
    # ... and the suite is not vacuous: a month beyond the calendar is rejected
    bad = flights[flights["month"] == 12].assign(month=13)
    assert "month.range" in _rules(dc.validate(bad, suite, batch=True))


def test_validate_timing_is_reported(churn: pd.DataFrame, churn_suite: dc.Suite) -> None:
    dc.validate(churn.head(200), churn_suite)  # GX imported and context built once
    sample = _sample(churn, 0)
    start = time.perf_counter()
    result = dc.validate(sample, churn_suite)
    took = time.perf_counter() - start
    print(f"\nvalidate(): {took:.3f} s for {result.evaluated} expectations on {result.rows} rows")
    assert result.success
    assert took < 10


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


def test_corruption_campaign(churn: pd.DataFrame, churn_suite: dc.Suite, tmp_path: Path) -> None:
    caught: Counter[str] = Counter()
    misses: list[str] = []
    for name, corrupt in CORRUPTIONS.items():
        for seed in SEEDS:
            rng = np.random.default_rng(seed)
            work = tmp_path / f"{name.replace(' ', '_')}-{seed}"
            work.mkdir()
            bad, rule = corrupt(_sample(churn, seed), rng, work)
            if isinstance(bad, str):
                result, frame = dc.validate_uri(bad, churn_suite)
                assert frame is None
            else:
                result = dc.validate(bad, churn_suite)
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
        result = dc.validate(_sample(churn, seed, n), churn_suite)
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


def test_missing_column_is_named_once(churn: pd.DataFrame, churn_suite: dc.Suite) -> None:
    result = dc.validate(_sample(churn, 5).drop(columns=["tenure", "contract"]), churn_suite)
    assert not result.success
    # the missing columns are the failures; their other rules are consequences, not reported
    assert sorted(_rules(result)) == ["contract.exists", "tenure.exists"]
    assert {f.column for f in result.failures} == {"tenure", "contract"}


def test_empty_frame_fails_on_row_count_only(churn: pd.DataFrame, churn_suite: dc.Suite) -> None:
    result = dc.validate(churn.iloc[:0], churn_suite)
    assert not result.success
    assert result.rows == 0
    assert _rules(result) == ["table.row_count"]
    assert result.failures[0].observed == 0
    nothing = dc.validate(pd.DataFrame(), churn_suite)  # no columns at all: fails, no crash
    assert not nothing.success
    assert "table.row_count" in _rules(nothing)
    assert "customer_id.exists" in _rules(nothing)


def test_duplicate_column_names_fail(churn: pd.DataFrame, churn_suite: dc.Suite) -> None:
    df = _sample(churn, 3)
    twice = pd.concat([df, df[["tenure"]]], axis=1)
    result = dc.validate(twice, churn_suite)
    assert not result.success
    assert "table.duplicate_columns" in _rules(result)


def test_clean_csv_passes_with_suite_types(
    churn: pd.DataFrame, churn_suite: dc.Suite, tmp_path: Path
) -> None:
    # female/senior_citizen hold "0"/"1" text: a CSV reader sees integers
    path = tmp_path / "batch.csv"
    _sample(churn, 8).to_csv(path, index=False)
    result, frame = dc.validate_uri(str(path), churn_suite)
    assert result.success, result.summary()
    assert frame is not None
    assert frame["female"].dtype == "str"
    assert result.source == str(path)


# ------------------------------------------------------------------------------------------
# Severity, batch variant, summary


def test_warn_severity_does_not_block(churn: pd.DataFrame, churn_suite: dc.Suite) -> None:
    df = _sample(churn, 4)
    df.loc[: len(df) // 20, "total_charges"] = None  # 5% nulls; the suite allows 1% (warn)
    result = dc.validate(df, churn_suite)
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
    suite = dc.load_suite(path)
    df = _sample(churn, 6)
    df.loc[:9, "total_charges"] = -1.0
    result = dc.validate(df, suite)
    assert result.success
    assert [w.rule for w in result.warnings] == ["total_charges.range"]
    df.loc[:9, "tenure"] = 500
    result = dc.validate(df, suite)
    assert not result.success
    assert _rules(result) == ["tenure.range"]
    assert result.failures[0].unexpected_count == 10


def test_batch_ignores_the_target(churn: pd.DataFrame, churn_suite: dc.Suite) -> None:
    df = _sample(churn, 9)
    unlabelled = df.drop(columns=["churn"])
    assert dc.validate(unlabelled, churn_suite, batch=True).success
    training = dc.validate(unlabelled, churn_suite)
    assert not training.success
    assert _rules(training) == ["churn.exists"]
    garbage_labels = df.assign(churn=7)
    batch = dc.validate(garbage_labels, churn_suite, batch=True)
    assert batch.success, batch.summary()
    assert batch.batch
    assert "churn.allowed" in _rules(dc.validate(garbage_labels, churn_suite))
    fewer = dc.validate(df, churn_suite, batch=True).evaluated
    assert fewer < dc.validate(df, churn_suite).evaluated


def test_summary_names_expectation_column_count_and_samples(
    churn: pd.DataFrame, churn_suite: dc.Suite
) -> None:
    df = _sample(churn, 12)
    df.loc[[3, 50, 70, 90], "payment_method"] = "Crypto"
    df.loc[[5, 6], "payment_method"] = "Barter"
    result = dc.validate(df, churn_suite)
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


# ------------------------------------------------------------------------------------------
# Profiling and suite files


def test_profile_known_answers() -> None:
    n = 200
    rng = np.random.default_rng(0)
    df = pd.DataFrame(
        {
            "id": np.arange(n, dtype="int64"),
            "age": np.linspace(10, 20, n).round().astype("int64"),
            "score": np.where(
                (np.arange(n) >= 100) & (np.arange(n) < 104), np.nan, np.linspace(1.0, 3.0, n)
            ),
            "flag": (np.arange(n) % 2).astype("int64"),
            "city": rng.choice(["Oslo", "Lima", "Pune"], n),
            "free_text": [f"note {i}" for i in range(n)],
            "const": np.full(n, 5, dtype="int64"),
        }
    )
    suite = dc.profile(df, model="toy", target="flag", unique=["id"], max_categories=10)
    c = suite.columns
    assert c["id"] == dc.ColumnRules(dtype="int64", nullable=False, unique=True)
    assert (c["age"].min, c["age"].max, c["age"].nullable) == (9, 21, False)  # 10..20 +- 1
    assert c["age"].min_distinct == 2
    assert c["score"].max_null_fraction == pytest.approx(0.04)  # 2 x 4/200
    assert c["score"].severities == {"max_null_fraction": "warn"}
    assert c["score"].min == pytest.approx(0.8)
    assert c["score"].max == pytest.approx(3.2)
    assert c["flag"].allowed == [0, 1]
    assert c["city"].allowed == ["Lima", "Oslo", "Pune"]
    assert c["city"].dtype == "str"
    assert c["free_text"].allowed is None  # 200 values > max_categories
    assert c["const"].min_distinct is None  # constant in the reference: no variation rule
    assert (suite.row_count.min, suite.target) == (100, "flag")
    assert dc.validate(df, suite).success


def test_profile_write_load_round_trip(churn: pd.DataFrame, tmp_path: Path) -> None:
    suite = dc.profile(churn, model="customer_churn", target="churn", unique=["customer_id"])
    path = tmp_path / "customer_churn.yaml"
    dc.write_suite(suite, path, header="drafted in a test")
    text = path.read_text()
    assert text.startswith("# drafted in a test\nmodel: customer_churn\n")
    assert dc.load_suite(path) == suite
    dc.write_suite(suite, path, header="drafted in a test")
    assert path.read_text() == text  # stable bytes
    assert list(suite.columns) == list(churn.columns)


def test_profile_to_file_with_window(flights: pd.DataFrame, tmp_path: Path) -> None:
    src = tmp_path / "flights.parquet"
    data.write_frame(flights[flights["month"].isin([8, 9, 10])], str(src))
    out = tmp_path / "flight_delay.yaml"
    suite = dc.profile_to_file(
        str(src), "flight_delay", "delayed", out, ["flight_id"], window=("month", 8, 9)
    )
    assert dc.load_suite(out) == suite
    assert (suite.columns["month"].min, suite.columns["month"].max) == (7, 10)  # 8..9 +- 0.1
    assert "rows of" in out.read_text().splitlines()[1]


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
        dc.load_suite(path)
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
        dc.load_suite(path)
    message = str(info.value)
    assert str(path) in message
    assert f"{field}:" in message, message
    assert problem in message, message


def test_suite_path_defaults_to_the_project(tmp_path: Path) -> None:
    assert dc.suite_path("customer_churn").parts[-3:] == (
        "include",
        "expectations",
        "customer_churn.yaml",
    )
    assert dc.suite_path("m", tmp_path) == tmp_path / "m.yaml"


# ------------------------------------------------------------------------------------------
# HTML report


@pytest.fixture(scope="module")
def failed_result(churn: pd.DataFrame, churn_suite: dc.Suite) -> CheckResult:
    df = _sample(churn, 21)
    df.loc[:40, "contract"] = "<script>alert(1)</script>"
    df.loc[:9, "total_charges"] = None
    df.loc[10:30, "total_charges"] = None
    df = df.drop(columns=["tenure"])
    result = dc.validate(df, churn_suite, source="/data/batch-2013-10.parquet")
    assert not result.success
    assert result.warnings
    return result


def test_render_html_is_self_contained(failed_result: CheckResult) -> None:
    page = dc.render_html(failed_result, title="Data check: customer_churn")
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
    ok = dc.render_html(CheckResult("m", True, [], [], 5, 10), title="ok")
    assert "PASSED" in ok
    assert "No blocking failures." in ok


def test_render_html_in_a_real_browser(failed_result: CheckResult, tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(dc.render_html(failed_result, title="Data check: customer_churn"), "utf-8")
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
    page.write_text(dc.render_html(CheckResult("m", True, [], [], 5, 10), title="ok"), "utf-8")
    pixels = browser.screenshot(page, tmp_path)
    assert browser.colour_pixels(pixels, (26, 127, 55)) > 5000
    assert browser.colour_pixels(pixels, (207, 34, 46)) == 0


# ------------------------------------------------------------------------------------------
# Quarantine


def test_quarantine_writes_evidence_and_is_idempotent(
    churn: pd.DataFrame, churn_suite: dc.Suite, tmp_path: Path
) -> None:
    bad = _sample(churn, 30).assign(tenure=-1)
    result = dc.validate(bad, churn_suite)
    qdir = tmp_path / "quarantine" / "customer_churn" / "2013-10"
    first = dc.quarantine(bad, "/data/in.parquet", result, str(qdir))
    assert first["uri"] == str(qdir)
    assert sorted(p.name for p in qdir.iterdir()) == ["data.parquet", "report.html", "result.json"]
    stored = data.read_ref(data.DataRef.from_dict(first["data"]))
    pd.testing.assert_frame_equal(stored, bad)
    payload = json.loads(Path(first["result"]).read_text())
    assert payload["source_uri"] == "/data/in.parquet"
    assert payload["result"]["success"] is False
    assert payload["result"]["failures"][0]["rule"] == "tenure.range"
    assert "tenure.range" in Path(first["report"]).read_text()

    again = dc.quarantine(bad, "/data/in.parquet", result, str(qdir))
    assert again == first  # same names, same bytes
    # a retry that could not read the data replaces the evidence and drops the stale data
    unreadable, frame = dc.validate_uri(str(tmp_path / "missing.parquet"), churn_suite)
    assert frame is None
    assert _rules(unreadable) == ["file.readable"]
    third = dc.quarantine(frame, str(tmp_path / "missing.parquet"), unreadable, str(qdir))
    assert third["data"] is None
    assert sorted(p.name for p in qdir.iterdir()) == ["report.html", "result.json"]
    assert (
        "file not found"
        in json.loads(Path(third["result"]).read_text())["result"]["failures"][0]["observed"]
    )


def test_validate_and_quarantine_on_s3(
    churn: pd.DataFrame, churn_suite: dc.Suite, s3: Any, s3_prefix: str
) -> None:
    good_uri = s3_prefix + "incoming/good.parquet"
    data.write_frame(_sample(churn, 40), good_uri, s3_client=s3.client)
    result, frame = dc.validate_uri(good_uri, churn_suite, batch=True, s3_client=s3.client)
    assert result.success, result.summary()
    assert frame is not None
    assert result.source == good_uri

    bad_uri = s3_prefix + "incoming/bad.parquet"
    s3.client.put_object(Bucket=s3.bucket, Key=bad_uri.split("/", 3)[3], Body=b"PAR1 not really")
    bad, frame = dc.validate_uri(bad_uri, churn_suite, s3_client=s3.client)
    assert frame is None
    assert _rules(bad) == ["file.readable"]
    out = dc.quarantine(frame, bad_uri, bad, s3_prefix + "quarantine/run-1", s3_client=s3.client)
    assert out["data"] is None
    assert out["result"] == s3_prefix + "quarantine/run-1/result.json"
    key = out["report"].split("/", 3)[3]
    obj = s3.client.get_object(Bucket=s3.bucket, Key=key)
    assert obj["ContentType"].startswith("text/html")
    assert "file.readable" in obj["Body"].read().decode()
    again = dc.quarantine(frame, bad_uri, bad, s3_prefix + "quarantine/run-1", s3_client=s3.client)
    assert again == out


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
