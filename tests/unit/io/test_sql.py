"""Tests of airmlops_core.io.sql: reading through a SQLAlchemy engine or connection."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from airmlops_core.errors import DataError
from airmlops_core.io import sql

# ------------------------------------------------------------------------------------------
# SQL


def test_read_sql_through_engine_and_connection(sqlite_engine: sa.Engine) -> None:
    df = sql.read_sql(
        "select id, amount, note from loans where note != ':x' order by id", sqlite_engine
    )
    assert df["id"].tolist() == [1, 3, 4]  # ':x' is literal text, not a bind parameter
    assert df["amount"].tolist() == [10.0, 30.0, 40.0]
    with sqlite_engine.connect() as conn:
        assert sql.read_sql("select count(*) as n from loans", conn)["n"].tolist() == [4]


def test_read_sql_error_names_query_and_database(sqlite_engine: sa.Engine) -> None:
    with pytest.raises(DataError, match="no such column: income") as info:
        sql.read_sql("\n  select income\n  from loans", sqlite_engine)
    msg = str(info.value)
    assert "SQL query 'select income'" in msg
    assert "db.sqlite" in msg
