"""Read a table from SQL through a SQLAlchemy engine or a DB-API connection."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airmlops_core.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


def first_line(query: str) -> str:
    """The first non-blank line of a query, cut to 80 characters (for messages)."""
    line = next((ln.strip() for ln in query.splitlines() if ln.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def _engine_label(engine_or_conn: Any) -> str:
    url = getattr(engine_or_conn, "url", None) or getattr(
        getattr(engine_or_conn, "engine", None), "url", None
    )
    if url is not None and hasattr(url, "render_as_string"):
        return f" on {url.render_as_string(hide_password=True)}"
    return ""


def read_sql(query: str, engine_or_conn: Any) -> pd.DataFrame:
    """Run a SELECT and return its rows.

    The query string is sent to the driver as is (no SQLAlchemy bind-parameter parsing).

    Args:
        query: the SQL text.
        engine_or_conn: a SQLAlchemy Engine or Connection (e.g. from
            DbApiHook.get_sqlalchemy_engine()), or a DB-API sqlite3 connection.

    Raises:
        DataError: the query fails; the message names the query's first line and the database.
    """
    import pandas as pd

    if not query or not query.strip():
        raise DataError("empty SQL query")
    where = f"SQL query '{first_line(query)}'{_engine_label(engine_or_conn)}"
    try:
        df = pd.read_sql(query, engine_or_conn)
    except Exception as exc:  # drivers raise their own types; pandas wraps only some of them
        raise DataError(f"{where}: failed: {exc}") from exc
    log.debug("read %d rows from %s", len(df), where)
    return df
