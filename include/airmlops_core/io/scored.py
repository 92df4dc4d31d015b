"""The layout of scored outputs, shared by the score and drift stages and the SQL sink.

One scoring run writes <output base>/<model>/<logical date>/<partition>.parquet, one file per
input partition, and a _manifest.json beside them; each row carries the columns named here.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Sequence
from typing import Any

from airmlops_core.io import data

ROW_INDEX = "row_index"
PREDICTION = "prediction"
PROBA_PREFIX = "proba_"
MODEL_NAME = "model_name"
MODEL_VERSION = "model_version"
INPUT_SHA256 = "input_sha256"
LOGICAL_DATE = "logical_date"
MANIFEST_NAME = "_manifest.json"
PARTITION_EXTENSIONS = (".parquet", ".pq", ".csv")


def partition_name(uri: str) -> str:
    """A partition's output name: its file name without extension, made path-safe."""
    base = uri.rstrip("/").rsplit("/", 1)[-1]
    for ext in PARTITION_EXTENSIONS:
        if base.lower().endswith(ext):
            base = base[: -len(ext)]
            break
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", base).lstrip("._") or "partition"


def as_utc(logical_date: str | dt.datetime | dt.date) -> dt.datetime:
    """A logical date (ISO string, datetime or date; naive means UTC) as aware UTC."""
    if isinstance(logical_date, str):
        try:
            value = dt.datetime.fromisoformat(logical_date.strip())
        except ValueError as exc:
            raise ValueError(f"logical date {logical_date!r} is not an ISO 8601 date") from exc
    elif isinstance(logical_date, dt.datetime):
        value = logical_date
    elif isinstance(logical_date, dt.date):
        value = dt.datetime(logical_date.year, logical_date.month, logical_date.day)
    else:
        raise TypeError(
            f"logical date must be a datetime or ISO string, got {type(logical_date).__name__}"
        )
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    return value.astimezone(dt.UTC)


def logical_date_iso(logical_date: str | dt.datetime | dt.date) -> str:
    """The logical date as ISO 8601 UTC with a Z (naive values are taken as UTC)."""
    return as_utc(logical_date).isoformat().replace("+00:00", "Z")


def _date_segment(logical_date: str | dt.datetime | dt.date) -> str:
    ts = as_utc(logical_date)
    text = ts.strftime("%Y-%m-%dT%H-%M-%S")
    return f"{text}.{ts.microsecond:06d}Z" if ts.microsecond else f"{text}Z"


def _base(output_base: str) -> str:
    return output_base if data.is_s3(output_base) else data.resolve_uri(output_base, os.getcwd())


def run_output_uri(output_base: str, model: str, logical_date: str | dt.datetime) -> str:
    """<output_base>/<model>/<logical date, e.g. 2024-05-01T00-00-00Z>: one run's outputs."""
    return data.join_uri(_base(output_base), model, _date_segment(logical_date))


def output_uri(
    output_base: str, model: str, logical_date: str | dt.datetime, partition: str
) -> str:
    """Where a partition's scores go: <run output>/<partition>.parquet (deterministic)."""
    return data.join_uri(run_output_uri(output_base, model, logical_date), f"{partition}.parquet")


def manifest_uri(output_base: str, model: str, logical_date: str | dt.datetime) -> str:
    """<run output>/_manifest.json (dataset readers skip names starting with _)."""
    return data.join_uri(run_output_uri(output_base, model, logical_date), MANIFEST_NAME)


def proba_names(classes: Sequence[Any]) -> list[str]:
    """One path-safe column name per class (proba_<class>), or proba_<i> when names clash."""
    names = [PROBA_PREFIX + re.sub(r"[^0-9A-Za-z_]+", "_", str(c)).strip("_") for c in classes]
    if len(set(names)) != len(names) or any(n == PROBA_PREFIX for n in names):
        names = [f"{PROBA_PREFIX}{i}" for i in range(len(classes))]
    return names
