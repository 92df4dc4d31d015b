"""Labels that land after scoring: one row per row key with the target, from the spec's
`labels:` section (a file or directory, an S3 file or prefix, or an SQL query).

Files are read through the data layer (`io.store`), only the row key and target columns; when
several files hold a key, the first file in name order wins. A location with no label files
yet gives an empty frame and says so in `LandedLabels.note` (labels often land late); a bucket
that does not exist, a file without the columns or a failing query is an error naming the place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airmlops_core import settings
from airmlops_core.errors import DataError
from airmlops_core.io import data, sql
from airmlops_core.io.scored import PARTITION_EXTENSIONS
from airmlops_core.io.store import Store
from airmlops_core.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LandedLabels:
    """The landed labels (columns: row key, target), where they were read, and a note when
    none were found there."""

    frame: pd.DataFrame
    source: str
    note: str = ""


def labels_uri(spec: ModelSpec) -> str:
    """The labels' file or prefix: `labels.uri` (relative paths under the data directory),
    else <data>/labels/<model>/."""
    return data.resolve_uri(spec.labels.uri or f"labels/{spec.name}/", settings.data_dir())


def label_files(store: Store, uri: str) -> list[str]:
    """`uri` itself when it names a .parquet/.pq/.csv file, else the label files under it."""
    if uri.lower().endswith(PARTITION_EXTENSIONS):
        return [uri] if store.exists(uri) else []
    return [u for u in store.list_files(uri) if u.lower().endswith(PARTITION_EXTENSIONS)]


def read_labels(spec: ModelSpec, store: Store, *, sql_engine: Any = None) -> LandedLabels:
    """The row key and target of every landed label of `spec`'s model (a key's first label
    wins).

    Args:
        spec: the model (its `row_key`, `target` and `labels` section).
        store: reaches the files (local or S3).
        sql_engine: a SQLAlchemy engine of `labels.conn_id`, for `kind: sql`.

    Raises:
        DataError: no row key, an unreadable place, or the key or target column missing.
    """
    import pandas as pd

    if not spec.row_key:
        raise DataError(f"{spec.name}: labels are joined on the row key, and the spec has none")
    cols = [spec.row_key, spec.target]
    if spec.labels.kind == "sql":
        query = spec.labels.query or ""
        if sql_engine is None:
            raise DataError(
                f"labels query '{sql.first_line(query)}': a SQLAlchemy engine of connection "
                f"{spec.labels.conn_id!r} is needed"
            )
        where = f"labels query '{sql.first_line(query)}' (connection {spec.labels.conn_id})"
        frame = sql.read_sql(query, sql_engine)
        frame = frame[data.check_columns(where, [str(c) for c in frame.columns], cols) or cols]
        note = "" if len(frame) else f"{where}: returned no rows"
        return LandedLabels(frame.drop_duplicates(spec.row_key).reset_index(drop=True), where, note)
    uri = labels_uri(spec)
    files = label_files(store, uri)
    if not files:
        log.warning("no label files at %s", uri)
        return LandedLabels(pd.DataFrame(columns=cols), uri, f"{uri}: no label files yet")
    by_format: dict[str, list[str]] = {}
    for f in files:
        by_format.setdefault(data.infer_format(f, None), []).append(f)
    tables = [store.read_table(fs, cols).to_pandas() for fs in by_format.values()]
    frame = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    log.info("read %d labels from %d file(s) at %s", len(frame), len(files), uri)
    return LandedLabels(frame.drop_duplicates(spec.row_key).reset_index(drop=True), uri)
