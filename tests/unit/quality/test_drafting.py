"""Tests of airmlops_core.quality.drafting: suites drafted from reference data."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airmlops_core.io import data
from airmlops_core.quality.check import validate
from airmlops_core.quality.drafting import profile, profile_to_file
from airmlops_core.quality.suite import ColumnRules, load_suite


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
    suite = profile(df, model="toy", target="flag", unique=["id"], max_categories=10)
    c = suite.columns
    assert c["id"] == ColumnRules(dtype="int64", nullable=False, unique=True)
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
    assert validate(df, suite).success


def test_profile_to_file_with_window(flights: pd.DataFrame, tmp_path: Path) -> None:
    src = tmp_path / "flights.parquet"
    data.write_frame(flights[flights["month"].isin([8, 9, 10])], str(src))
    out = tmp_path / "flight_delay.yaml"
    suite = profile_to_file(
        str(src), "flight_delay", "delayed", out, ["flight_id"], window=("month", 8, 9)
    )
    assert load_suite(out) == suite
    assert (suite.columns["month"].min, suite.columns["month"].max) == (7, 10)  # 8..9 +- 0.1
    assert "rows of" in out.read_text().splitlines()[1]


def test_the_drafts_header_names_the_specs_uri_and_says_how_ranges_relax(
    flights: pd.DataFrame, tmp_path: Path
) -> None:
    """A committed draft holds no machine's path, and says that its ranges block."""
    src = tmp_path / "flights.parquet"
    data.write_frame(flights, str(src))
    out = tmp_path / "flight_delay.yaml"
    profile_to_file(str(src), "flight_delay", "delayed", out, source_name="demo/flights.parquet")
    header = [line for line in out.read_text().splitlines() if line.startswith("#")]
    assert "rows of demo/flights.parquet." in header[1]
    assert str(tmp_path) not in out.read_text()
    assert "severities: {range: warn}" in " ".join(header)
    assert load_suite(out).columns["month"].min is not None  # the comment lines parse away
