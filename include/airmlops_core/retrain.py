"""The retrain path: the train path's window grown with the labelled production rows.

It sits above the train and drift stages: the window comes from the drift stage's record of
what was scored, the split and everything after it from the train stage.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from typing import Any, TypedDict

from airmlops_core import settings
from airmlops_core.drift import flow as drift_flow
from airmlops_core.io import data
from airmlops_core.io.labels import read_labels
from airmlops_core.io.store import Store
from airmlops_core.spec import ModelSpec
from airmlops_core.tracking.runs import RunContext
from airmlops_core.train import flow as train_flow

log = logging.getLogger(__name__)


class RetrainRecord(TypedDict):
    """The last successful retrain of a model (Airflow Variable `airmlops_retrain_<model>`)."""

    retrained_at: str
    run_id: str
    reason: str
    version: str


def retrain_record(*, now: dt.datetime, run_id: str, reason: str, version: str) -> RetrainRecord:
    """What the retrain DAG's last task records once the run has registered its version."""
    return {
        "retrained_at": now.astimezone(dt.UTC).isoformat(timespec="seconds"),
        "run_id": run_id,
        "reason": reason,
        "version": version,
    }


def cooldown_skip(
    spec: ModelSpec,
    previous: Mapping[str, Any],
    *,
    now: dt.datetime,
    run_id: str,
    started_by: str | None,
) -> str | None:
    """Why this retrain run is skipped, or None when it may run.

    The cool-down (`retrain.cooldown_hours`) counts from the last *successful* retrain
    (`retrained_at` of `previous`, a RetrainRecord): a failed or skipped run starts none. It
    holds back the automatic triggers (drift events, `schedules.retrain`) only: a run a person
    started (`started_by`) always runs, and so does a re-run of the run that was recorded.
    """
    last = previous.get("retrained_at")
    if started_by or not last or previous.get("run_id") == run_id:
        return None
    since = now - dt.datetime.fromisoformat(str(last))
    if since >= dt.timedelta(hours=spec.retrain.cooldown_hours):
        return None
    return (
        f"{spec.name} was retrained at {last} (run {previous.get('run_id')}, version "
        f"{previous.get('version')}); retrain.cooldown_hours is "
        f"{spec.retrain.cooldown_hours:g}: automatic retrains wait, a manual run does not"
    )


def retrain_extract_step(
    spec: ModelSpec,
    ctx: RunContext,
    *,
    reason: str,
    work_uri: str | None = None,
    s3_client: Any = None,
    sql_engine: Any = None,
    store: Store | None = None,
    labels_engine: Any = None,
) -> train_flow.TrainRefs:
    """The training window rebuilt with the latest labelled production data.

    The spec's source window plus every scored row whose label has landed (features from the
    hash-verified scoring inputs, labels joined on the row key); a row key seen again keeps its
    latest labelled row. `retrain.window: sliding` keeps the newest `retrain.max_rows` rows,
    `expanding` keeps them all. Returns extract_step's refs plus the row counts and `reason`.
    `store` reaches the scored runs and label files, `labels_engine` the labels query
    (`labels.kind: sql`).
    """
    import pandas as pd

    work = work_uri or settings.work_uri()
    out = train_flow.run_dir_uri(work, ctx)
    base = train_flow.extract_step(
        spec, ctx, work_uri=work, s3_client=s3_client, sql_engine=sql_engine
    )
    frame = data.read_ref(data.DataRef.from_dict(base["extract"]), s3_client=s3_client)
    frame = frame[[c for c in spec.columns if c in frame.columns]]
    store = store or Store()
    window, _ = drift_flow.current_window(spec, version=None, window_runs=10_000, store=store)
    landed = read_labels(spec, store, sql_engine=labels_engine) if spec.row_key else None
    new = drift_flow.labelled(spec, window, landed.frame if landed else window.iloc[0:0])
    new = new[[c for c in frame.columns if c in new.columns]]
    combined = pd.concat([frame, new], ignore_index=True)
    if spec.row_key:
        combined = combined.drop_duplicates(spec.row_key, keep="last")
    if spec.retrain.window == "sliding" and spec.retrain.max_rows:
        combined = combined.tail(spec.retrain.max_rows)
    combined = combined.reset_index(drop=True)
    ref = data.write_frame(combined, data.join_uri(out, "extract.parquet"), s3_client=s3_client)
    log.info(
        "retraining %s (%s): %d source rows + %d labelled production rows -> %d rows",
        spec.name,
        reason,
        len(frame),
        len(new),
        ref.rows,
    )
    return {
        **train_flow.freeze_split(spec, ref, out, s3_client=s3_client),
        "reason": reason,
        "rows": {"source": len(frame), "labelled": len(new), "total": ref.rows},
    }
