"""Tests of airmlops_core.io.window: extract from files, S3 and SQL, windows, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from airmlops_core.errors import DataError
from airmlops_core.io import data, window
from airmlops_core.io.data import DataRef

# ------------------------------------------------------------------------------------------
# extract and windows


@pytest.fixture
def monthly(tmp_path: Path) -> Path:
    """A source table: 3 rows per month for 12 months, as Parquet and CSV under tmp_path/src."""
    months = np.repeat(np.arange(1, 13), 3)
    df = pd.DataFrame(
        {
            "row": np.arange(len(months)),
            "month": months,
            "when": pd.to_datetime(
                [
                    f"2024-{m:02d}-{d:02d} 12:00"
                    for m, d in zip(months, np.tile([1, 15, 28], 12), strict=True)
                ]
            ),
            "amount": np.linspace(0.0, 35.0, len(months)),
            "label": np.tile([0, 1, 1], 12),
        }
    )
    data.write_frame(df, str(tmp_path / "src" / "m.parquet"))
    data.write_frame(df, str(tmp_path / "src" / "m.csv"), format="csv")
    return tmp_path


def _extract(base: Path, **kw) -> DataRef:
    args = {
        "kind": "file",
        "uri": "src/m.parquet",
        "query": None,
        "format": None,
        "columns": ["row", "amount", "label"],
        "dest_uri": "out/x.parquet",
        "base_dir": base,
    }
    args.update(kw)
    return window.extract(**args)


def test_extract_keeps_columns_in_order(monthly: Path) -> None:
    ref = _extract(monthly, columns=["label", "row"])
    assert ref.uri == str(monthly / "out" / "x.parquet")
    out = data.read_ref(ref)
    assert list(out.columns) == ["label", "row"]
    assert ref.rows == len(out) == 36


@pytest.mark.parametrize(
    ("start", "end"), [(3, 5), (12, 12), (None, 2), (11, None), ("4", "6"), (3.5, 5.0)]
)
def test_window_on_numeric_column_is_inclusive(monthly: Path, start: object, end: object) -> None:
    src = data.read_frame(str(monthly / "src" / "m.parquet"))
    lo = float(start) if start is not None else -np.inf  # type: ignore[arg-type]
    hi = float(end) if end is not None else np.inf  # type: ignore[arg-type]
    expected = [r for r, m in zip(src["row"], src["month"], strict=True) if lo <= m <= hi]
    ref = _extract(monthly, window=("month", start, end))
    out = data.read_ref(ref)
    assert out["row"].tolist() == expected
    assert "month" not in out.columns  # used to filter, not asked for


def test_window_on_datetime_column_with_string_and_aware_bounds(monthly: Path) -> None:
    exact = ("2024-03-15 12:00", "2024-04-01 12:00")  # both ends hit rows exactly
    out = data.read_ref(_extract(monthly, columns=["when"], window=("when", *exact)))
    assert out["when"].dt.strftime("%m-%d").tolist() == ["03-15", "03-28", "04-01"]
    aware = (pd.Timestamp("2024-03-15 13:00", tz="Europe/Oslo"), None)  # = 12:00 UTC
    out = data.read_ref(_extract(monthly, columns=["when"], window=("when", *aware)))
    assert out["when"].min() == pd.Timestamp("2024-03-15 12:00")
    assert len(out) == 3 * 9 + 2


def test_window_on_csv_date_text_compares_as_dates(monthly: Path) -> None:
    out = data.read_ref(
        _extract(
            monthly,
            uri="src/m.csv",
            columns=["row", "when"],
            window=("when", "2024-02-15T12:00:00+00:00", "2024-3-1 12:00"),
        )
    )
    assert out["row"].tolist() == [4, 5, 6]


def test_window_never_keeps_missing_values(tmp_path: Path) -> None:
    (tmp_path / "holes.csv").write_text("row,month\n1,1\n2,\n3,5\n4,\n")
    out = data.read_ref(
        _extract(tmp_path, uri="holes.csv", columns=["row"], window=("month", None, None))
    )
    assert out["row"].tolist() == [1, 3]


def test_empty_window_is_a_data_error(monthly: Path) -> None:
    with pytest.raises(DataError, match=r"no rows in the window month >= 13 \(of 36 rows read\)"):
        _extract(monthly, window=("month", 13, None))
    assert not (monthly / "out").exists()


def test_window_start_after_end_is_a_data_error(monthly: Path) -> None:
    with pytest.raises(DataError, match="window start 6 is after its end 2"):
        _extract(monthly, window=("month", 6, 2))


def test_window_bound_of_wrong_type_is_a_data_error(monthly: Path) -> None:
    with pytest.raises(DataError, match="window bound 'spring' is not a number"):
        _extract(monthly, window=("month", "spring", None))


def test_extract_missing_columns_lists_them(monthly: Path) -> None:
    with pytest.raises(DataError, match=r"missing columns \['income', 'age'\]") as info:
        _extract(monthly, columns=["row", "income", "age"])
    assert str(monthly / "src" / "m.parquet") in str(info.value)
    with pytest.raises(DataError, match=r"missing columns \['season'\]"):
        _extract(monthly, window=("season", 1, 2))


def test_extract_csv_with_wrong_delimiter(tmp_path: Path) -> None:
    (tmp_path / "src.csv").write_text("row;amount;label\n1;2.5;0\n2;3.5;1\n")
    with pytest.raises(DataError, match=r"missing columns \['row', 'amount', 'label'\]"):
        _extract(tmp_path, uri="src.csv")


def test_extract_writes_csv_when_asked(monthly: Path) -> None:
    ref = _extract(monthly, dest_uri=str(monthly / "o" / "x.csv"), window=("month", 1, 1))
    assert ref.format == "csv"
    assert Path(ref.uri).read_text().splitlines()[0] == "row,amount,label"
    assert data.read_ref(ref)["row"].tolist() == [0, 1, 2]


def test_extract_argument_errors(monthly: Path) -> None:
    with pytest.raises(DataError, match="unknown source kind 'ftp'"):
        _extract(monthly, kind="ftp")
    with pytest.raises(DataError, match="needs a uri"):
        _extract(monthly, uri=None)
    with pytest.raises(DataError, match="kind 's3' needs an s3://"):
        _extract(monthly, kind="s3")
    with pytest.raises(DataError, match="SQLAlchemy engine is needed"):
        _extract(monthly, kind="sql", uri=None, query="select 1")


def test_extract_from_sql_with_window(sqlite_engine: sa.Engine, tmp_path: Path) -> None:
    ref = _extract(
        tmp_path,
        kind="sql",
        uri=None,
        query="select * from loans",
        sql_engine=sqlite_engine,
        columns=["id", "amount"],
        window=("month", 2, 3),
    )
    out = data.read_ref(ref)
    assert out.to_dict("list") == {"id": [2, 3], "amount": [20.5, 30.0]}
    with pytest.raises(DataError, match=r"SQL query 'select \* from loans'.*missing columns"):
        _extract(
            tmp_path,
            kind="sql",
            uri=None,
            query="select * from loans",
            sql_engine=sqlite_engine,
            columns=["id", "label"],
        )
    with pytest.raises(DataError, match="no rows"):
        _extract(
            tmp_path,
            kind="sql",
            uri=None,
            query="select * from loans where id > 99",
            sql_engine=sqlite_engine,
            columns=["id"],
        )


# ------------------------------------------------------------------------------------------
# split


@pytest.fixture
def labelled() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"id": np.arange(200), "f": rng.normal(size=200), "y": ["yes"] * 60 + ["no"] * 140}
    )


def test_split_is_deterministic_and_partitions_rows(labelled: pd.DataFrame) -> None:
    train, test = window.split_frame(labelled, test_size=0.25, seed=7, stratify_on=None)
    train2, test2 = window.split_frame(labelled, test_size=0.25, seed=7, stratify_on=None)
    pd.testing.assert_frame_equal(train, train2)
    pd.testing.assert_frame_equal(test, test2)
    assert (len(train), len(test)) == (150, 50)
    assert sorted(train["id"].tolist() + test["id"].tolist()) == list(range(200))
    assert train.index.equals(pd.RangeIndex(150))
    assert test.index.equals(pd.RangeIndex(50))
    _, other = window.split_frame(labelled, test_size=0.25, seed=8, stratify_on=None)
    assert other["id"].tolist() != test["id"].tolist()
    assert test["id"].tolist() != sorted(test["id"].tolist())  # shuffled


def test_split_stratifies(labelled: pd.DataFrame) -> None:
    train, test = window.split_frame(labelled, test_size=0.2, seed=3, stratify_on="y")
    assert test["y"].value_counts().to_dict() == {"no": 28, "yes": 12}  # 30 % of 40
    assert train["y"].value_counts().to_dict() == {"no": 112, "yes": 48}


def test_split_errors(labelled: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="stratify column 'target' missing"):
        window.split_frame(labelled, test_size=0.2, seed=0, stratify_on="target")
    with pytest.raises(DataError, match="test_size must be between 0 and 1"):
        window.split_frame(labelled, test_size=1.5, seed=0, stratify_on=None)
    lonely = labelled.assign(y=["rare"] + ["common"] * 199)
    with pytest.raises(DataError, match="cannot split 200 rows"):
        window.split_frame(lonely, test_size=0.2, seed=0, stratify_on="y")
    holes = labelled.assign(y=labelled["y"].where(labelled["id"] != 5))
    with pytest.raises(DataError, match="has 1 missing values"):
        window.split_frame(holes, test_size=0.2, seed=0, stratify_on="y")


def test_split_by_key_keeps_each_row_on_its_side_as_the_table_grows() -> None:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(
        {
            "id": np.arange(20_000),
            "f": rng.normal(size=20_000),
            "y": rng.choice(["yes", "no"], size=20_000, p=[0.3, 0.7]),
        }
    )
    first, grown = frame.iloc[:15_000], frame.sample(frac=1.0, random_state=2)  # + new rows
    train1, test1 = window.split_frame(first, test_size=0.2, seed=42, stratify_on="y", key="id")
    train2, test2 = window.split_frame(grown, test_size=0.2, seed=42, stratify_on="y", key="id")
    # the rows a first model trained on never reach the grown table's holdout, and back
    assert not set(train1["id"]) & set(test2["id"])
    assert set(test1["id"]) <= set(test2["id"])
    assert sorted([*train2["id"], *test2["id"]]) == list(range(20_000))
    # about test_size of the rows, and of each class (binomial sd at n=20k: 0.3 points)
    assert abs(len(test2) / 20_000 - 0.2) < 0.015
    share = test2["y"].value_counts() / grown["y"].value_counts()
    assert share.between(0.185, 0.215).all(), share.to_dict()
    # deterministic, seed-dependent, and shuffled rather than in key order
    pd.testing.assert_frame_equal(
        test2, window.split_frame(grown, test_size=0.2, seed=42, stratify_on="y", key="id")[1]
    )
    other = window.split_frame(grown, test_size=0.2, seed=7, stratify_on="y", key="id")[1]
    assert set(other["id"]) != set(test2["id"])
    assert test2["id"].tolist() != sorted(test2["id"].tolist())


def test_split_by_key_errors(labelled: pd.DataFrame) -> None:
    with pytest.raises(DataError, match="row key 'key' missing"):
        window.split_frame(labelled, test_size=0.2, seed=0, stratify_on=None, key="key")
    twice = labelled.assign(id=labelled["id"] // 2)
    with pytest.raises(DataError, match="0 missing and 100 duplicated"):
        window.split_frame(twice, test_size=0.2, seed=0, stratify_on=None, key="id")
    lonely = labelled.assign(y=["rare"] + ["common"] * 199)
    with pytest.raises(DataError, match=r"classes \['rare'\] missing from one side"):
        window.split_frame(lonely, test_size=0.2, seed=0, stratify_on="y", key="id")


@pytest.mark.integration
def test_s3_extract_to_s3(s3, s3_prefix: str, monthly: Path) -> None:
    src = data.join_uri(s3_prefix, "src.csv")
    data.write_frame(
        data.read_frame(str(monthly / "src" / "m.parquet")), src, format="csv", s3_client=s3.client
    )
    ref = window.extract(
        kind="s3",
        uri=src,
        query=None,
        format=None,
        columns=["row", "label"],
        dest_uri=data.join_uri(s3_prefix, "out", "train.parquet"),
        window=("month", 12, None),
        base_dir=monthly,
        s3_client=s3.client,
    )
    assert ref.uri.startswith(s3_prefix)
    assert data.read_ref(ref, s3_client=s3.client)["row"].tolist() == [33, 34, 35]
