"""The drift path: the champion's reference profile vs the last scored window, with alerts.

- At training, `log_reference` stores a compact profile of the training data (features,
  label) and of the model's holdout output (predictions) as an artifact of the training run,
  so a check never depends on a file that may have moved.
- `check_step` reads the champion's profile, rebuilds the current window of one source (batch:
  from the last scoring manifests, features from the hash-verified inputs, predictions from
  the outputs; online: the model API's live-traffic records of the last
  `monitoring.live.window_hours`, io.live), checks feature and prediction drift, and, where
  labels have landed on a batch window (joined on the row key and the
  model version, never imputed), label and performance drift. Everything goes to a monitoring
  MLflow run tagged with the model version: metrics, an offline HTML report and PNG plots.
  For classifiers it also estimates performance before labels (drift.estimated), per scoring
  run, when the champion's holdout calibration allows.
- Scoring manifests, inputs, outputs and label files are read through the data layer
  (`io.store`), on a local folder or S3 alike.
- `alert_transition` turns consecutive results into at most one message per run: a new or
  changed drift (features, predictions, labels, performance, bias) alerts, the same drift
  within the cool-down stays quiet, a recovery is announced.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import tempfile
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import pandas as pd

from airmlops_core import errors
from airmlops_core.drift import estimated as cbpe
from airmlops_core.drift import report as drift_report
from airmlops_core.io import data, live, scored
from airmlops_core.io.labels import read_labels
from airmlops_core.io.store import Store
from airmlops_core.score import flow as score_flow
from airmlops_core.score.model import resolve_champion
from airmlops_core.spec import ModelSpec
from airmlops_core.stats import drift, fairness
from airmlops_core.stats.metrics import encode_labels
from airmlops_core.stats.performance import performance_drift
from airmlops_core.stats.profile import ReferenceProfile
from airmlops_core.stats.verdict import BARELY_USED, DriftConfig, metric_name, rank_by_importance
from airmlops_core.tracking import model_metrics
from airmlops_core.tracking import runs as tracking
from airmlops_core.tracking.runs import TAG_PREFIX, RunContext
from airmlops_core.train import importance, reference

log = logging.getLogger(__name__)

DRIFT_PURPOSE = "drift"
SOURCES = ("batch", "online")
PREDICTION = "prediction"


class DriftChecked(TypedDict):
    """Drift and decay of the champion on the last scored window (`check_step`).

    `drifted` maps each drifted column to its effect sizes, the model's output and the most
    important features first when the version has a permutation importance table
    (`ranked_by_importance`), else largest effect first; `barely_used` lists drifted features
    the model barely uses (stats.verdict.rank_by_importance); `performance` is
    `performance.PerformanceDrift.to_dict()` (None without labels); `bias` maps each sensitive
    feature to its metric gaps. `estimate` is the newest scoring run's performance estimate
    (`stats.estimate.Estimate.to_dict()`; None for a regressor or an empty window).
    """

    version: str
    status: str
    summary: str
    drifted: dict[str, str]
    label_status: str
    label_drifted: dict[str, str]
    performance: dict[str, Any] | None
    degraded: bool
    bias: dict[str, dict[str, float]]
    bias_over_limit: dict[str, str]
    estimate: dict[str, Any] | None
    estimated_decay: bool
    rows: int
    labelled_rows: int
    run_url: str
    report: str
    source: NotRequired[str]  # batch or online
    ranked_by_importance: NotRequired[bool]
    barely_used: NotRequired[list[str]]
    notes: NotRequired[list[str]]


def champion_profile(client: Any, spec: ModelSpec, version: str) -> ReferenceProfile:
    """The reference profile logged with `version`'s training run (`reference.version_profile`)."""
    return reference.version_profile(client, spec, version)


def run_manifests(spec: ModelSpec, store: Store, window_runs: int) -> tuple[list[Any], str]:
    """The last `window_runs` scoring manifests of the model (oldest first), read through the
    data layer from <scoring output>/<model>/<run>/_manifest.json, and the prefix searched.

    Raises:
        DataError: the output location cannot be listed (e.g. the bucket does not exist) or a
            manifest is unreadable; the message names the URI.
    """
    base = data.join_uri(score_flow.output_base(spec), spec.name)
    root = base.rstrip("/") + "/"
    found = [
        u
        for u in store.list_files(base, suffix="/" + scored.MANIFEST_NAME)
        if u[len(root) :].count("/") == 1  # <run>/_manifest.json: one run folder deep
    ]
    return [store.read_json(u) for u in found[-window_runs:]], base


def current_window(
    spec: ModelSpec, version: str | None, window_runs: int, store: Store | None = None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Scored rows of the last `window_runs` scoring runs of `version` (None: any version):
    input features joined with the outputs' predictions, streamed through the data layer
    (only the needed columns of each file, joined in Arrow, one pandas frame at the end).
    Inputs that moved or changed are skipped and counted. The lineage's "runs" gives each
    scoring run's logical date and rows, in the window's row order; "note" says when no
    scoring run was found at all (and where it looked)."""
    import pyarrow as pa

    store = store or Store()
    tables: list[Any] = []
    used, skipped, runs = [], [], []
    manifests, base = run_manifests(spec, store, window_runs)
    for manifest in manifests:
        if version is not None and str(manifest["model_version"]) != str(version):
            continue
        rows = 0
        for part in manifest["partitions"]:
            if part["status"] != "scored":
                continue
            try:
                table = partition_window(spec, store, part)
            except errors.DataError as exc:
                skipped.append(f"{part['partition']}: {exc}")
                continue
            tables.append(table)
            rows += table.num_rows
            used.append(part["input_uri"])
        if rows:
            runs.append({"logical_date": manifest.get("logical_date"), "rows": rows})
    lineage: dict[str, Any] = {"inputs": used, "skipped": skipped, "runs": runs}
    if not manifests:
        lineage["note"] = f"{base}: no scoring manifests (*/{scored.MANIFEST_NAME}) found"
        log.warning("%s", lineage["note"])
    try:
        table = pa.concat_tables(tables, promote_options="permissive") if tables else None
    except pa.ArrowException as exc:
        raise errors.DataError(f"{base}: scoring runs with incompatible columns: {exc}") from exc
    window = table.to_pandas() if table is not None else pd.DataFrame()
    lineage["rows"] = len(window)
    return window, lineage


def online_window(
    spec: ModelSpec, version: str, store: Store, *, now: dt.datetime
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The model API's recorded requests of `version` in the last `monitoring.live.window_hours`
    up to `now` (io.live), after removing the records past `retention_days`. The lineage lists
    the files read; "note" says when there were none (and where it looked)."""
    cfg = spec.monitoring.live
    if cfg is None:
        raise ValueError(f"{spec.name}: monitoring.sources has online without monitoring.live")
    base = live.live_base(spec.name)
    live.prune(store, base, cfg.retention_days, now)
    since = now - dt.timedelta(hours=cfg.window_hours)
    window, files = live.read_window(store, base, version=version, since=since, until=now)
    lineage: dict[str, Any] = {"inputs": files, "skipped": [], "runs": [], "rows": len(window)}
    if window.empty:
        lineage["note"] = (
            f"{base}: no live records of v{version} since {since.isoformat(timespec='seconds')}"
        )
        log.warning("%s", lineage["note"])
    return window, lineage


def partition_window(spec: ModelSpec, store: Store, part: dict[str, Any]) -> Any:
    """One scored partition's window rows as a pyarrow Table: the input's row key, features
    (plus sensitive and segment columns when the batch has them) joined one-to-one with the
    output's prediction and probabilities, in the input's row order.

    Raises:
        DataError: the input changed since it was scored (sha256), a file is unreadable, a
            column is missing or the row key is not unique; naming the file.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    uri, out_uri = part["input_uri"], part["output_uri"]
    found = store.sha256(uri)
    if found != part["input_sha256"]:
        raise errors.DataError(
            f"{uri}: content changed since it was scored "
            f"(expected sha256 {part['input_sha256']}, found {found})"
        )
    key = spec.row_key or scored.ROW_INDEX
    base = ([spec.row_key] if spec.row_key else []) + spec.features.all
    extras = [c for c in spec.columns if c not in base and c != spec.target]
    inputs = store.dataset([uri])
    wanted = base + extras if set(extras) <= set(inputs.schema.names) else base
    features = store.read_table([uri], wanted)
    positions = pa.array(np.arange(features.num_rows, dtype=np.int64))
    if not spec.row_key:
        features = features.add_column(0, key, positions)
    features = features.append_column("__pos", positions)
    out_cols = store.dataset([out_uri]).schema.names
    preds = store.read_table(
        [out_uri], [key, *[c for c in out_cols if c == PREDICTION or c.startswith("proba_")]]
    )
    for name, table in ((uri, features), (out_uri, preds)):
        if pc.count_distinct(table[key]).as_py() != table.num_rows:
            raise errors.DataError(f"{name}: row key '{key}' is not unique")
    try:
        joined = features.join(preds, keys=key, join_type="inner")
    except pa.ArrowException as exc:
        raise errors.DataError(f"{uri} and {out_uri}: cannot join on '{key}': {exc}") from exc
    return joined.sort_by("__pos").drop_columns(["__pos"])


def labelled(spec: ModelSpec, window: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Window rows whose labels have landed (`io.labels.read_labels`), joined on the row key;
    rows without a label are left out, never imputed."""
    if window.empty or not spec.row_key or labels.empty:
        return window.iloc[0:0]
    # a key scored in several runs appears once per run; each row gets the key's label
    return window.merge(labels, on=spec.row_key, how="inner", validate="many_to_one")


def bias(spec: ModelSpec, labels: pd.DataFrame) -> list[Any]:
    """The gate's group metrics (fairness.group_metrics) of the champion's predictions on the
    labelled window, per sensitive feature present in it."""
    present = [c for c in spec.sensitive_features if c in labels.columns]
    if not present or labels.empty:
        return []
    kw = {}
    if spec.task == "binary":
        kw["pos_label"] = sorted(labels[spec.target].unique().tolist())[-1]
    return [
        fairness.group_metrics(
            labels[spec.target],
            labels[PREDICTION],
            labels[c].astype("str"),
            task=spec.task,
            feature=c,
            **kw,
        )
        for c in present
    ]


def bias_metrics(reports: list[Any]) -> dict[str, float]:
    """MLflow metrics of the group reports: every gap and every group's value."""
    out: dict[str, float] = {}
    for r in reports:
        base = f"bias.{metric_name(r.feature)}"
        out.update({f"{base}.{m}_gap": float(v) for m, v in r.gaps.items()})
        for group, values in r.by_group.items():
            out.update(
                {
                    f"{base}.{metric_name(group)}.{m}": float(v)
                    for m, v in values.items()
                    if math.isfinite(v)
                }
            )
    return out


def bias_over_limit(spec: ModelSpec, reports: list[Any]) -> dict[str, str]:
    """Gaps above `promotion.fairness_max_gap` (the gate's absolute limit): "<metric> by
    <feature>" -> a sentence with the gap and the two groups."""
    limit = spec.promotion.fairness_max_gap
    if limit is None:
        return {}
    return {
        f"{m} by {r.feature}": f"{m} gap {gap:.3g} by {r.feature} "
        f"({' vs '.join(r.gap_between.get(m, ()))}) exceeds fairness_max_gap {limit:g}"
        for r in reports
        for m, gap in r.gaps.items()
        if gap > limit
    }


def config(spec: ModelSpec) -> DriftConfig:
    return reference.drift_config(spec)


def check_step(
    spec: ModelSpec,
    ctx: RunContext,
    *,
    tracking_uri: str,
    store: Store | None = None,
    sql_engine: Any = None,
    source: str = "batch",
    now: dt.datetime | None = None,
) -> DriftChecked:
    """Feature, prediction, label and performance drift of the champion; logged to MLflow.

    Args:
        store: reaches the scored outputs, inputs and label files (local or S3).
        sql_engine: an engine of `labels.conn_id`, for labels from an SQL query.
        source: "batch" (the last scoring runs) or "online" (the model API's recorded
            traffic; feature and prediction drift only: labels join scored batches).
        now: the end of the online window (default: the time of the check).
    """
    if source not in SOURCES:
        raise ValueError(f"drift source {source!r}: expected one of {SOURCES}")
    import mlflow
    from mlflow import MlflowClient

    store = store or Store()
    client = MlflowClient(tracking_uri)
    version = resolve_champion(client, spec.name)
    profile = champion_profile(client, spec, version)
    if source == "online":
        now = now or dt.datetime.now(dt.UTC)
        window, lineage = online_window(spec, version, store, now=now)
    else:
        window, lineage = current_window(spec, version, spec.monitoring.window_runs, store)
    notes = [lineage["note"]] if "note" in lineage else []
    cfg = config(spec)
    result = drift.check_drift(
        profile, window if not window.empty else profile.empty_frame(), config=cfg
    )
    labels = window.iloc[0:0]
    if source == "batch" and spec.row_key and not window.empty:
        landed = read_labels(spec, store, sql_engine=sql_engine)
        notes += [landed.note] if landed.note else []
        labels = labelled(spec, window, landed.frame)
    label_result, perf = None, None
    if len(labels):
        target = labels[spec.target].astype("str") if spec.is_classifier else labels[spec.target]
        label_result = drift.check_drift(
            profile, labels.assign(**{spec.target: target}), config=cfg, roles=("label",)
        )
        metric = spec.gate_metric
        holdout_value = float(client.get_model_version(spec.name, version).tags[f"metric.{metric}"])
        if spec.is_classifier:
            classes = sorted(c for c in labels[spec.target].unique())
            proba_cols = [f"proba_{c}" for c in classes]
            if all(c in labels.columns for c in proba_cols):
                output = labels[proba_cols].to_numpy()
                y = encode_labels(labels[spec.target], classes)
            else:
                output, y = None, None
        else:
            output, y = labels[PREDICTION].to_numpy(), labels[spec.target].to_numpy()
        if output is not None:
            perf = performance_drift(
                y,
                output,
                metric,
                reference=holdout_value,
                max_drop=spec.monitoring.max_metric_drop,
                min_rows=spec.monitoring.min_rows,
            )
    groups = bias(spec, labels)
    over = bias_over_limit(spec, groups)
    trained_in = client.get_model_version(spec.name, version).run_id
    weights = importance.read_importance(client, trained_in) if trained_in else None
    ranked, barely = rank_by_importance(result.drifted, weights)
    estimates = (
        cbpe.estimate_runs(
            spec, window, lineage["runs"], cbpe.champion_calibration(client, spec, version)
        )
        if spec.is_classifier and source == "batch"
        else []
    )
    estimate = estimates[-1]["estimate"] if estimates else None
    purpose = DRIFT_PURPOSE if source == "batch" else f"{DRIFT_PURPOSE}_{source}"
    run_id = tracking.model_run(client, spec.name, ctx, purpose)
    mlflow.set_tracking_uri(tracking_uri)
    with tracking.resume(run_id, tracking_uri), tempfile.TemporaryDirectory() as tmp:
        mlflow.set_tags(
            {
                f"{TAG_PREFIX}model_version": version,
                f"{TAG_PREFIX}drift_status": result.status,
                f"{TAG_PREFIX}drift_source": source,
            }
        )
        # linked to the champion's logged model: its MLflow 3 model page shows its drift
        drift_numbers = {
            **result.metrics("drift"),
            **(label_result.metrics("label_drift") if label_result else {}),
            **bias_metrics(groups),
            "window.rows": float(len(window)),
            "window.labelled_rows": float(len(labels)),
        }
        if perf is not None and perf.current is not None:
            drift_numbers[f"performance.{perf.metric}"] = perf.current
        model_metrics.log_model_metrics(
            client,
            run_id,
            drift_numbers,
            model_id=model_metrics.version_model_id(client, spec.name, version),
        )
        cbpe.log_estimates(estimates)
        if estimate is not None:
            mlflow.set_tag(f"{TAG_PREFIX}estimate_status", estimate["status"])
        images = drift_report.plots(result, profile, window, Path(tmp)) if len(window) else []
        page = Path(tmp) / "drift_report.html"
        page.write_text(
            drift_report.render_report(
                result,
                title=f"Drift ({source}): {spec.name} v{version}",
                subtitle=(
                    f"{len(window):,} scored rows from {len(lineage['inputs'])} partition(s); "
                    f"{len(labels):,} labelled"
                    if source == "batch"
                    else f"{len(window):,} recorded requests' rows from "
                    f"{len(lineage['inputs'])} live-record file(s)"
                ),
                performance=perf,
                images=images,
                bias=groups,
            )
        )
        mlflow.log_artifact(str(page), artifact_path="monitoring")
        for img in images:
            mlflow.log_artifact(str(img), artifact_path="monitoring/plots")
        mlflow.log_dict(
            {
                "features_predictions": result.to_dict(),
                "labels": label_result.to_dict() if label_result else None,
                "performance": perf.to_dict() if perf else None,
                "bias": [g.to_dict() for g in groups],
                "estimates": estimates,
                "window": lineage,
            },
            "monitoring/drift.json",
        )
    client.set_terminated(run_id, status="FINISHED")
    exp_id = tracking.experiment_id(client, tracking.experiment_name(spec.name))
    url = tracking.run_url(tracking_uri, exp_id, run_id)
    return {
        "version": version,
        "source": source,
        "status": result.status,
        "summary": result.summary(),
        "drifted": {c: _effect(result.column(c)) for c in ranked},
        "ranked_by_importance": weights is not None,
        "barely_used": barely,
        "label_status": label_result.status if label_result else "no_labels",
        "label_drifted": (
            {c: _effect(label_result.column(c)) for c in label_result.drifted}
            if label_result
            else {}
        ),
        "performance": perf.to_dict() if perf else None,
        "degraded": bool(perf and perf.degraded),
        "bias": {g.feature: g.gaps for g in groups},
        "bias_over_limit": over,
        "estimate": estimate,
        "estimated_decay": bool(estimate and estimate["status"] == "decayed"),
        "rows": len(window),
        "labelled_rows": len(labels),
        "run_url": url,
        "report": f"{url}/artifacts/monitoring/drift_report.html",
        "notes": notes,
    }


def _effect(col: Any) -> str:
    d = col.to_dict() if hasattr(col, "to_dict") else dict(col)
    effects = d.get("effects") or {}
    shown = ", ".join(f"{k} {v:.3g}" for k, v in effects.items() if isinstance(v, int | float))
    return f"{d.get('role', '')} {shown}".strip()


def state_key(model: str, source: str) -> str:
    """Where a source's alert state is kept (batch: the key used before sources existed)."""
    return f"airmlops_drift_{model}" if source == "batch" else f"airmlops_drift_{model}__{source}"


def should_retrain(spec: ModelSpec, checked: DriftChecked) -> bool:
    """The spec's retrain rule: feature/prediction drift, label drift or performance decay."""
    return retrain_reason(spec, checked) is not None


def retrain_reason(spec: ModelSpec, checked: DriftChecked) -> str | None:
    """Which part of the retrain rule holds and why (None: it does not)."""
    rule, why = spec.monitoring.retrain_on, []
    if checked["degraded"] and "performance" in rule:
        perf = checked.get("performance") or {}
        why.append(f"performance decay: {perf.get('reason', 'below the holdout metric')}")
    if checked["status"] == "drift" and "drift" in rule:
        why.append("drifted " + ", ".join(checked["drifted"]))
    label_drifted = checked.get("label_drifted") or {}
    if checked["label_status"] == "drift" and "label_drift" in rule:
        why.append("label drift: " + "; ".join(f"{c} ({e})" for c, e in label_drifted.items()))
    return f"v{checked['version']} " + "; ".join(why) if why else None


def alert_transition(
    previous: dict[str, Any],
    checked: DriftChecked,
    *,
    cooldown_hours: float,
    now: dt.datetime | None = None,
) -> tuple[dict[str, Any], str | None]:
    """(new state, message or None): one message per run at most, repeats suppressed."""
    now = now or dt.datetime.now(dt.UTC)
    label_drift = checked["label_status"] == "drift"
    label_cols = checked.get("label_drifted") or {}
    if checked["status"] == "not_enough_data" and not (checked["degraded"] or label_drift):
        return dict(previous), None  # no verdict: neither a new alert nor a recovery
    over = checked.get("bias_over_limit") or {}
    est_decay = bool(checked.get("estimated_decay"))
    bad = any(
        (checked["status"] == "drift", checked["degraded"], bool(over), est_decay, label_drift)
    )
    fingerprint = json.dumps(
        [sorted(checked["drifted"]), checked["degraded"], sorted(over)]
        + (["estimated_decay"] if est_decay else [])  # absent: the same as before estimates
        + ([["label_drift", sorted(label_cols)]] if label_drift else [])
    )
    state = {
        "bad": bad,
        "fingerprint": fingerprint,
        "alerted_at": previous.get("alerted_at"),
        "version": checked["version"],
    }
    said = f"{checked['source']}: " if checked.get("source") else ""
    if not bad:
        if previous.get("bad"):
            return state, (
                f":large_green_circle: {said}drift of v{checked['version']} recovered: "
                f"{checked['summary']}"
            )
        return state, None
    last = previous.get("alerted_at")
    recent = isinstance(last, str) and now - dt.datetime.fromisoformat(last) < dt.timedelta(
        hours=cooldown_hours
    )
    if previous.get("fingerprint") == fingerprint and recent:
        return state, None
    state["alerted_at"] = now.isoformat(timespec="seconds")
    cols = "; ".join(f"{c} ({e})" for c, e in checked["drifted"].items()) or "none"
    head = "Drifted columns"
    if checked.get("ranked_by_importance"):
        head += " (the model's output first, then features by importance to the model)"
    barely = checked.get("barely_used") or []
    barely_text = (
        f"\nBarely used by the model (permutation importance under {BARELY_USED:.0%} of the "
        f"top feature's): {', '.join(barely)}"
        if barely
        else ""
    )
    perf = checked["performance"]
    perf_text = (
        f"\nPerformance: {perf['metric']} {perf['current']:.4g} vs holdout "
        f"{perf['reference']:.4g} ({perf['status']})"
        if perf
        else ""
    )
    bias_text = "".join(f"\nBias: {o}" for o in over.values())
    label_text = (
        "\nLabel drift (landed labels vs training): "
        + ("; ".join(f"{c} ({e})" for c, e in label_cols.items()) or "the label")
        if label_drift
        else ""
    )
    est = checked.get("estimate") or {}
    est_text = "".join(f"\nEstimated (no labels yet): {r}" for r in est.get("reasons", []))
    est_text = est_text if est_decay else ""
    return state, (
        f":warning: {said}drift in v{checked['version']}: {checked['summary']}\n"
        f"{head}: {cols}{barely_text}{label_text}{perf_text}{bias_text}{est_text}\n"
        f"Report: {checked['report']}"
    )
