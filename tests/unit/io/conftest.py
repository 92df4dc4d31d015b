"""Fixtures of the io tests: a small SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa


@pytest.fixture
def sqlite_engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "create table loans (id integer primary key, month integer, amount real, note text)"
        )
        conn.exec_driver_sql(
            "insert into loans values (1, 1, 10.0, 'a:b'), (2, 2, 20.5, null), (3, 3, 30.0, 'c'),"
            " (4, 4, 40.0, 'd')"
        )
    yield engine
    engine.dispose()
