"""The optional SQL sink of scoring: a run's scored rows upserted into a table.

`scoring.sink: {conn_id, table}` names an Airflow SQL connection and a table. The publish task
upserts every scored partition of the run in one transaction, keyed on (row key, model_name):
a re-run or a retry rewrites the same rows (no duplicates), a newer run with a new version
updates them, and readers never see half a run. The newest logical date wins: a row is only
replaced by one of the same or a later `logical_date`, so re-running last week's scoring leaves
this week's scores in place (rows with no stored date count as older). The table is created on
first use with that primary key; an existing table must have every output column and a unique
key on those two. PostgreSQL and SQLite (ON CONFLICT ... DO UPDATE ... WHERE) are supported.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airmlops_core.errors import SinkError
from airmlops_core.io import data
from airmlops_core.io.scored import LOGICAL_DATE, MODEL_NAME

log = logging.getLogger(__name__)

BATCH_ROWS = 20_000
DIALECTS = ("postgresql", "sqlite")


def _sql_type(arrow_type: Any) -> Any:
    import pyarrow as pa
    import sqlalchemy as sa

    if pa.types.is_dictionary(arrow_type):
        arrow_type = arrow_type.value_type
    if pa.types.is_integer(arrow_type):
        return sa.BigInteger()
    if pa.types.is_floating(arrow_type):
        return sa.Double()
    if pa.types.is_boolean(arrow_type):
        return sa.Boolean()
    if pa.types.is_timestamp(arrow_type):
        return sa.DateTime(timezone=arrow_type.tz is not None)
    return sa.Text()


def _table(conn: Any, name: str, schema: Any, key: str) -> Any:
    """The sink table: created with (key, model_name) as primary key, or the existing one
    checked for every output column."""
    import sqlalchemy as sa

    table_schema, _, table_name = name.rpartition(".")
    md = sa.MetaData(schema=table_schema or None)
    if not sa.inspect(conn).has_table(table_name, schema=table_schema or None):
        cols = [
            sa.Column(f.name, _sql_type(f.type), nullable=f.name not in (key, MODEL_NAME))
            for f in schema
        ]
        table = sa.Table(table_name, md, *cols, sa.PrimaryKeyConstraint(key, MODEL_NAME))
        table.create(conn)
        log.info("created sink table %s with primary key (%s, %s)", name, key, MODEL_NAME)
        return table
    table = sa.Table(table_name, md, autoload_with=conn)
    missing = [f.name for f in schema if f.name not in table.c]
    if missing:
        raise SinkError(
            f"sink table {name}: missing column(s) {missing}; it has {list(table.c.keys())}"
        )
    return table


def upsert(
    engine: Any, table_name: str, key: str, output_uris: Sequence[str], *, s3_client: Any = None
) -> int:
    """Upsert the scored rows of `output_uris` into `table_name` in one transaction.

    A stored row is replaced only when the incoming row's logical date is the same or later
    (or the stored one is empty): an older run's rows are skipped, not written.

    Returns:
        The number of rows written (inserted or updated); skipped older rows are not counted.

    Raises:
        SinkError: an unsupported database, or a table without the output's columns or without
            a unique key on (key, model_name); nothing is written then.
    """
    dialect = engine.dialect.name
    if dialect not in DIALECTS:
        raise SinkError(f"sink: upsert needs one of {list(DIALECTS)}, the connection is {dialect}")
    if not output_uris:
        return 0
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert

    files = [data.parquet_file(uri, s3_client=s3_client) for uri in output_uris]
    rows = 0
    with engine.begin() as conn:
        table = _table(conn, table_name, files[0].schema_arrow, key)
        stmt = insert(table)
        stored = table.c[LOGICAL_DATE]
        stmt = stmt.on_conflict_do_update(
            index_elements=[key, MODEL_NAME],
            set_={
                c: stmt.excluded[c]
                for c in files[0].schema_arrow.names
                if c not in (key, MODEL_NAME)
            },
            where=sa.or_(stored.is_(None), stmt.excluded[LOGICAL_DATE] >= stored),
        ).returning(table.c[key])
        offered = 0
        for uri, pf in zip(output_uris, files, strict=True):
            for batch in pf.iter_batches(batch_size=BATCH_ROWS):
                offered += batch.num_rows
                try:
                    written = conn.execute(stmt, batch.to_pylist()).all()
                except sa.exc.ProgrammingError as exc:
                    raise SinkError(
                        f"sink table {table_name}: cannot upsert {uri}: {exc.orig}"
                    ) from exc
                except sa.exc.OperationalError as exc:
                    if "ON CONFLICT" in str(exc.orig):
                        raise SinkError(
                            f"sink table {table_name}: no unique key on ({key}, "
                            f"{MODEL_NAME}) for the upsert: {exc.orig}"
                        ) from exc
                    raise
                rows += len(written)
    log.info(
        "upserted %d rows into %s; %d kept a newer logical date", rows, table_name, offered - rows
    )
    return rows
