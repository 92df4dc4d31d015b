"""The chunked batch gate gives the verdict Great Expectations gives on the whole table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airmlops_core.quality import batch_checks
from airmlops_core.quality.check import validate, validate_uri
from airmlops_core.quality.results import CheckResult
from airmlops_core.quality.suite import ColumnRules, parse_suite
from airmlops_core.score import gate

CONTRACTS = ["month", "year1", "year2"]
SUITE = parse_suite(
    {
        "model": "gate_test",
        "target": "churn",
        "extra_columns": "block",
        "row_count": {"min": 10, "max": 1_000_000},
        "columns": {
            "customer_id": {"dtype": "int64"},
            "tenure": {
                "dtype": "int64",
                "nullable": False,
                "min": 0,
                "max": 100,
                "min_distinct": 2,
            },
            "monthly": {"dtype": "float64", "max_null_fraction": 0.05, "min": 0},
            "contract": {"dtype": "str", "nullable": False, "allowed": CONTRACTS},
            "churn": {"dtype": "int64", "allowed": [0, 1]},
        },
    }
)
# what batch_suite should make of SUITE, with the label kept so whole-frame validate tolerates it
KEYED = SUITE.model_copy(
    update={
        "columns": {
            **SUITE.columns,
            "customer_id": ColumnRules(dtype="int64", nullable=False, unique=True),
        }
    }
)


def clean(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": np.arange(n, dtype="int64"),
            "tenure": rng.integers(0, 73, n).astype("int64"),
            "monthly": np.round(rng.uniform(18, 120, n), 2),
            "contract": pd.array(rng.choice(CONTRACTS, n), dtype="str"),
            "churn": rng.integers(0, 2, n).astype("int64"),
        }
    )


def dirty(n: int = 10_000) -> pd.DataFrame:
    """Every kind of failure, spread over several chunks of 1,024 rows."""
    df = clean(n)
    df.loc[[5, 4000, 9999], "tenure"] = [150, -1, 101]
    df.loc[[7, 8000], "contract"] = "weekly"
    df.loc[6001, "contract"] = None
    df.loc[np.arange(0, n, 12), "monthly"] = np.nan  # 8.3% nulls > 5%
    df.loc[[9000, 9500, 9990], "customer_id"] = df.loc[[1, 2, 1], "customer_id"].to_numpy()
    return df.assign(extra=1)


def write_parquet(df: pd.DataFrame, path: Path) -> str:
    pq.write_table(pa.Table.from_pandas(df, preserve_index=False), path, row_group_size=3000)
    return str(path)


def by_rule(result: CheckResult) -> dict[str, tuple[Any, ...]]:
    return {f.rule: (f.severity, f.unexpected_count) for f in [*result.failures, *result.warnings]}


def test_batch_suite_drops_the_label_and_keys_the_row_key() -> None:
    suite = batch_checks.batch_suite(SUITE, "customer_id")
    assert "churn" not in suite.columns
    assert suite.target is None
    assert suite.columns["customer_id"].unique
    assert not suite.columns["customer_id"].nullable
    assert suite.columns["customer_id"].dtype == "int64"
    added = batch_checks.batch_suite(SUITE, "order_id")
    assert next(iter(added.columns)) == "order_id"
    assert added.columns["order_id"].unique
    assert (
        batch_checks.batch_suite(SUITE, None).columns
        == SUITE.for_batch().columns
        == {k: v for k, v in SUITE.columns.items() if k != "churn"}
    )


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_chunked_gate_equals_whole_frame_validate(fmt: str, tmp_path: Path) -> None:
    df = dirty()
    if fmt == "parquet":
        uri = write_parquet(df, tmp_path / "b.parquet")
        whole = validate(df, KEYED, batch=True)
    else:
        uri = str(tmp_path / "b.csv")
        df.to_csv(uri, index=False)
        whole, _ = validate_uri(uri, KEYED, batch=True)
    chunked = gate.check_partition(uri, SUITE, row_key="customer_id", chunk_rows=1024)
    expected = {
        "table.extra_columns": ("block", None),
        "customer_id.unique": ("block", 5),  # values 1 (x3) and 2 (x2)
        "tenure.range": ("block", 3),
        "monthly.max_null_fraction": ("block", int(np.ceil(10_000 / 12))),
        "contract.nullable": ("block", 1),
        "contract.allowed": ("block", 2),
    }
    assert by_rule(chunked) == expected
    assert by_rule(whole) == expected  # the independent computation agrees
    assert chunked.failed_rules == whole.failed_rules
    assert chunked.rows == whole.rows == len(df)
    assert chunked.evaluated == whole.evaluated
    assert chunked.batch
    assert chunked.source == uri
    failures = {f.rule: f for f in chunked.failures}
    assert set(failures["tenure.range"].sample_values) == {150, -1, 101}
    assert failures["tenure.range"].unexpected_percent == pytest.approx(0.03)
    assert failures["customer_id.unique"].sample_values == [1, 2]
    assert failures["table.extra_columns"].observed == ["extra"]
    assert "FAILED" in chunked.summary()


def test_clean_batch_passes_and_label_is_tolerated(tmp_path: Path) -> None:
    uri = write_parquet(clean(5000), tmp_path / "ok.parquet")
    result = gate.check_partition(uri, SUITE, row_key="customer_id", chunk_rows=512)
    assert result.success, result.summary()
    assert result.rows == 5000


@pytest.mark.parametrize("key_type", ["int64", "str"])
def test_uniqueness_is_exact_when_keys_spill_to_disk(
    key_type: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch_checks, "UNIQUE_IN_MEMORY_ROWS", 1000)
    rng = np.random.default_rng(5)
    n = 30_000
    keys = rng.permutation(n * 10)[:n]
    dup_at = rng.choice(n, 40, replace=False)
    keys[dup_at[20:]] = keys[dup_at[:20]]  # 20 values now twice
    keys[dup_at[0:1]] = keys[dup_at[1:2]]  # one value three times in all
    df = clean(n).assign(customer_id=keys.astype(key_type))
    suite = SUITE.model_copy(
        update={"columns": {**SUITE.columns, "customer_id": ColumnRules(dtype=key_type)}}
    )
    uri = write_parquet(df, tmp_path / "k.parquet")
    result = gate.check_partition(uri, suite, row_key="customer_id", chunk_rows=2048)
    expected = int(df["customer_id"].duplicated(keep=False).sum())
    assert by_rule(result) == {"customer_id.unique": ("block", expected)}
    counts = df["customer_id"].value_counts()
    assert result.failures[0].sample_values[0] == counts.index[0]  # the value seen 3 times


def test_table_rules_aggregate_over_chunks(tmp_path: Path) -> None:
    df = clean(3000).assign(tenure=7)  # one distinct value overall, though every chunk is fine
    uri = write_parquet(df, tmp_path / "t.parquet")
    result = gate.check_partition(uri, SUITE, row_key="customer_id", chunk_rows=256)
    assert by_rule(result) == {"tenure.min_distinct": ("block", None)}
    tiny = write_parquet(clean(6), tmp_path / "tiny.parquet")
    assert gate.check_partition(tiny, SUITE, row_key="customer_id").failed_rules == [
        "table.row_count"
    ]


@pytest.mark.parametrize(
    ("case", "rules", "text"),
    [
        ("empty parquet", ["table.row_count"], "0 rows"),
        ("missing column", ["monthly.exists"], "monthly"),
        ("truncated parquet", ["file.readable"], "not a readable Parquet file"),
        ("wrong delimiter", ["file.readable"], "is the delimiter wrong"),
        ("latin-1", ["file.readable"], "column 'contract' is not UTF-8"),
        ("text in an int column", ["tenure.dtype"], "invalid value 'twelve'"),
        ("float in an int column", ["tenure.dtype"], "tenure"),
    ],
)
def test_unreadable_or_empty_partitions_fail_with_the_reason(
    case: str, rules: list[str], text: str, tmp_path: Path
) -> None:
    df = clean(5000)
    if case == "empty parquet":
        uri = write_parquet(df.head(0), tmp_path / "x.parquet")
    elif case == "missing column":
        uri = write_parquet(df.drop(columns=["monthly"]), tmp_path / "x.parquet")
    elif case == "truncated parquet":
        full = Path(write_parquet(df, tmp_path / "x.parquet")).read_bytes()
        (tmp_path / "x.parquet").write_bytes(full[: len(full) // 2])
        uri = str(tmp_path / "x.parquet")
    else:
        uri = str(tmp_path / "x.csv")
        if case == "wrong delimiter":
            df.to_csv(uri, index=False, sep=";")
        elif case == "latin-1":
            df.assign(contract=np.where(df.index == 4000, "année", df["contract"])).to_csv(
                uri, index=False, encoding="latin-1"
            )
        elif case == "text in an int column":
            df.assign(tenure=np.where(df.index == 4500, "twelve", df["tenure"].astype(str))).to_csv(
                uri, index=False
            )
        else:
            df.assign(tenure=np.where(df.index == 10, "1.5", df["tenure"].astype(str))).to_csv(
                uri, index=False
            )
    result = gate.check_partition(uri, SUITE, row_key="customer_id", chunk_rows=1024)
    assert not result.success
    assert result.failed_rules == rules
    assert text in result.summary()
    assert result.source == uri
