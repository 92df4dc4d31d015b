"""Performance before labels in the drift DAG: the champion's confidence-based estimate per
scoring run (airmlops_core.stats.estimate).

The drift check already holds what the estimate needs: the champion's probabilities on the
last scoring runs (the window) and the champion's training run, where training logged the
holdout calibration (monitoring/calibration.json). Each scoring run in the window gets its
estimate, logged as `estimated_<metric>` with the run's logical date as MLflow step (epoch
seconds) and timestamp, so the MLflow UI charts them over time; the newest run's estimate
decides the alert.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, TypedDict

import pandas as pd

from airmlops_core.io.scored import PROBA_PREFIX, as_utc
from airmlops_core.spec import ModelSpec
from airmlops_core.stats.estimate import (
    CALIBRATION_ARTIFACT,
    ESTIMATED,
    Calibration,
    estimate,
)
from airmlops_core.tracking.runs import read_run_json

log = logging.getLogger(__name__)

__all__ = ["RunEstimate", "champion_calibration", "estimate_runs", "log_estimates"]


class RunEstimate(TypedDict):
    """One scoring run's estimate: its logical date (None: the manifest has none), and
    `stats.estimate.Estimate.to_dict()`."""

    logical_date: str | None
    estimate: dict[str, Any]


def champion_calibration(client: Any, spec: ModelSpec, version: str) -> Calibration | None:
    """The holdout calibration logged with `version`'s training run (None: not logged, e.g. a
    version trained before the pack stored it, or one onboarded from elsewhere)."""
    import mlflow

    mv = client.get_model_version(spec.name, version)
    try:
        raw = read_run_json(client, mv.run_id, f"monitoring/{CALIBRATION_ARTIFACT}")
        return Calibration.from_dict(raw)
    except (OSError, ValueError, KeyError, mlflow.exceptions.MlflowException) as exc:
        log.warning("%s v%s: no holdout calibration, no estimate (%s)", spec.name, version, exc)
        return None


def estimate_runs(
    spec: ModelSpec, window: pd.DataFrame, runs: list[dict[str, Any]], calib: Calibration | None
) -> list[RunEstimate]:
    """The estimate of each scoring run in the window, oldest first.

    Args:
        spec: A classifier's spec (monitoring thresholds, metric floors).
        window: `drift.flow.current_window`'s rows, in the order of `runs`.
        runs: `lineage["runs"]`: per scoring run its logical date and row count.
        calib: The champion's holdout calibration.
    """
    proba_cols = [c for c in window.columns if c.startswith(PROBA_PREFIX)]
    m = spec.monitoring
    primary = spec.metrics.primary
    out: list[RunEstimate] = []
    start = 0
    for run in runs:
        rows = window.iloc[start : start + run["rows"]]
        start += run["rows"]
        result = estimate(
            rows[proba_cols].to_numpy(),
            calib,
            max_ece=m.calibration_max_ece,
            floors=spec.metrics.floors,
            max_drop=m.estimated_drop_max,
            drop_metrics=(primary,) if primary in ESTIMATED else ESTIMATED,
            min_rows=m.min_rows,
        )
        out.append({"logical_date": run.get("logical_date"), "estimate": result.to_dict()})
    return out


def log_estimates(estimates: list[RunEstimate]) -> None:
    """Log `estimated_<metric>` per scoring run to the active MLflow run (step: the run's
    logical date in epoch seconds; timestamp: the same in milliseconds)."""
    import mlflow
    from mlflow.entities import Metric

    found = []
    for i, run in enumerate(estimates):
        when = run["logical_date"]
        stamp = as_utc(when) if when else None
        step = int(stamp.timestamp()) if stamp else i
        ms = int(stamp.timestamp() * 1000) if stamp else _now_ms()
        found += [
            Metric(f"estimated_{m}", float(v), ms, step)
            for m, v in (run["estimate"]["estimated"] or {}).items()
        ]
    if found:
        client = mlflow.MlflowClient()
        active = mlflow.active_run()
        if active is None:
            raise RuntimeError("log_estimates needs an active MLflow run")
        client.log_batch(active.info.run_id, metrics=found)


def _now_ms() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp() * 1000)
