"""Evidence of rejected data: atomic text writes (local or S3) and the quarantine of a batch.

A quarantined batch is a directory or s3:// prefix per run (`quarantine_uri`) holding
data.parquet (the offending table, when it could be read), result.json and report.html.
"""

from __future__ import annotations

import json
import logging
import os
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from airmlops_core import settings
from airmlops_core.io import data
from airmlops_core.io.data import DataRefDict
from airmlops_core.io.store import Store
from airmlops_core.quality.report import render_html
from airmlops_core.quality.results import CheckResult
from airmlops_core.spec import ModelSpec

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)


class RunIds(Protocol):
    """The DAG run a batch belongs to (an `airmlops_core.tracking.runs.RunContext`)."""

    @property
    def dag_id(self) -> str:
        """The Airflow DAG id."""

    @property
    def run_id(self) -> str:
        """The Airflow run id."""


class Quarantined(TypedDict):
    """Where `quarantine` kept a batch: its directory, data (None: unreadable) and evidence."""

    uri: str
    data: DataRefDict | None
    result: str
    report: str


def quarantine_base(spec: ModelSpec) -> str:
    """Where the model's failing batches are kept aside: `data_checks.quarantine_uri`, else
    <work URI>/quarantine/<model> (shared by every worker, local path or s3:// alike)."""
    return spec.data_checks.quarantine_uri or data.join_uri(
        settings.work_uri(), "quarantine", spec.name
    )


def quarantine_uri(spec: ModelSpec, ctx: RunIds) -> str:
    """Where a failing batch of this run is kept aside."""
    safe = data.safe_segment(ctx.run_id)
    return data.join_uri(quarantine_base(spec), ctx.dag_id, safe)


def write_text(
    uri: str,
    text: str,
    *,
    s3_client: Any | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> str:
    """Write UTF-8 text atomically (local: temp file + fsync + rename; S3: one put_object).

    Returns:
        The URI written (local paths normalised).

    Raises:
        errors.DataError: the destination is not writable.
    """
    return Store(client=s3_client).write_bytes(uri, text.encode("utf-8"), content_type=content_type)


def _remove(uri: str, s3_client: Any | None) -> None:
    Store(client=s3_client).delete(uri)


def quarantine(
    df: pd.DataFrame | None,
    source_uri: str,
    result: CheckResult,
    quarantine_uri: str,
    *,
    s3_client: Any | None = None,
) -> Quarantined:
    """Store rejected data with its evidence: data.parquet, result.json and report.html.

    Idempotent: a second call overwrites the same names (and removes a stale data.parquet
    when the data is now unreadable).

    Args:
        df: the offending table, or None when it could not be read.
        source_uri: where the data came from (recorded in result.json).
        result: the failed check.
        quarantine_uri: a directory or s3:// prefix for this batch.
        s3_client: for s3:// destinations.

    Returns:
        {"uri": quarantine_uri, "data": DataRef dict or None, "result": uri, "report": uri}.
    """
    if not quarantine_uri.startswith("s3://"):
        quarantine_uri = data.resolve_uri(quarantine_uri, os.getcwd())
    data_uri = data.join_uri(quarantine_uri, "data.parquet")
    ref = None
    if df is not None:
        ref = data.write_frame(df, data_uri, s3_client=s3_client).to_dict()
    else:
        _remove(data_uri, s3_client)
    payload = {"source_uri": source_uri, "data": ref, "result": result.to_dict()}
    result_uri = write_text(
        data.join_uri(quarantine_uri, "result.json"),
        json.dumps(payload, indent=2, default=str) + "\n",
        s3_client=s3_client,
        content_type="application/json",
    )
    report_uri = write_text(
        data.join_uri(quarantine_uri, "report.html"),
        render_html(result, title=f"Quarantined data: {result.suite}"),
        s3_client=s3_client,
        content_type="text/html; charset=utf-8",
    )
    log.warning(
        "quarantined %s (%s) to %s",
        source_uri,
        ", ".join(result.failed_rules) or "no blocking failures",
        quarantine_uri,
    )
    return {"uri": quarantine_uri, "data": ref, "result": result_uri, "report": report_uri}
