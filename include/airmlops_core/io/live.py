"""Live-traffic records: where the model API's recorded requests live, how their files are
named, read back as the online drift window, and pruned past their retention.

Layout, through the data layer (local path or S3 alike), under <AIRMLOPS_WORK_URI>/live:

    live/<model>/day=<YYYY-MM-DD>/<worker>-<seq>.parquet

`worker` is unique per API worker process (host, pid and a random part: a restarted worker
that gets the same pid never reuses a name) and `seq` counts its files, so no two processes
ever write the same name. Each file is published atomically (`Store.write_bytes`). Columns:
`recorded_at` (UTC), `model_version`, the row key when the request had one, the spec's input
columns present in the request, then the outputs as the score DAG writes them (`prediction`,
`proba_<class>`).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Sequence
from typing import Any

from airmlops_core import settings
from airmlops_core.errors import DataError
from airmlops_core.io import data
from airmlops_core.io.store import Store

log = logging.getLogger(__name__)

LIVE_DIR = "live"
RECORDED_AT = "recorded_at"
MODEL_VERSION = "model_version"
_DAY = re.compile(r"/day=(\d{4}-\d{2}-\d{2})/")


def live_base(model: str, work_uri: str | None = None) -> str:
    """Where `model`'s live records go: <work URI>/live/<model>."""
    return data.join_uri(work_uri or settings.work_uri(), LIVE_DIR, model)


def file_uri(base: str, day: dt.date, worker: str, seq: int) -> str:
    """The name of a worker's `seq`-th file of records made on `day`."""
    return data.join_uri(base, f"day={day.isoformat()}", f"{worker}-{seq:08d}.parquet")


def file_day(uri: str) -> dt.date | None:
    """The day a record file was written (from its folder), None for another file."""
    found = _DAY.search(uri.replace("\\", "/"))
    return dt.date.fromisoformat(found.group(1)) if found else None


def record_files(store: Store, base: str, since: dt.date | None = None) -> list[str]:
    """The record files under `base` (written on `since` or later), oldest day first."""
    files = store.list_files(base, suffix=".parquet")
    days = [(file_day(u), u) for u in files]
    return [u for day, u in days if day is not None and (since is None or day >= since)]


def prune(store: Store, base: str, retention_days: int, now: dt.datetime) -> list[str]:
    """Delete the record files older than `retention_days` (by their day); returns them."""
    oldest = (now - dt.timedelta(days=retention_days)).date()
    old = [u for u in store.list_files(base, suffix=".parquet") if (file_day(u) or oldest) < oldest]
    for uri in old:
        store.delete(uri)
    if old:
        log.info("removed %d live-record files of %s older than %s", len(old), base, oldest)
    return old


def read_window(
    store: Store,
    base: str,
    *,
    version: str | None,
    since: dt.datetime,
    until: dt.datetime,
    columns: Sequence[str] | None = None,
) -> tuple[Any, list[str]]:
    """Records of `version` (None: any) made in [since, until], as a pandas frame (only
    `columns` that the files hold, plus the time and version), and the files read.

    Streamed: pyarrow reads only the wanted columns of the files of those days and filters
    rows as it scans.

    Raises:
        DataError: a record file cannot be read.
    """
    import pandas as pd
    import pyarrow as pa
    import pyarrow.dataset as ds

    end = until.date()
    files = [u for u in record_files(store, base, since.date()) if (file_day(u) or end) <= end]
    if not files:
        return pd.DataFrame(), []
    dataset = store.dataset(files, format="parquet")
    names = dataset.schema.names
    wanted = [RECORDED_AT, MODEL_VERSION] + [
        c for c in (columns or names) if c in names and c not in (RECORDED_AT, MODEL_VERSION)
    ]
    ts = pa.scalar(since.astimezone(dt.UTC), type=pa.timestamp("us", tz="UTC"))
    te = pa.scalar(until.astimezone(dt.UTC), type=pa.timestamp("us", tz="UTC"))
    where = (ds.field(RECORDED_AT) >= ts) & (ds.field(RECORDED_AT) <= te)
    if version is not None:
        where &= ds.field(MODEL_VERSION) == str(version)
    try:
        table = dataset.to_table(columns=wanted, filter=where)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{base}: cannot read the live records: {exc}") from exc
    return table.to_pandas(), files
