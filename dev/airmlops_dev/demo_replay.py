"""The seasonal replay `make up` runs after training: Oct-Dec 2013 flights land month by month.

flight_delay's champion learned from Jan-Sep. Each month's batch is announced with a landing
Asset event (as an upstream system would), scored by `flight_delay__score`, and checked by the
`flight_delay__drift` run the scored Asset triggers, which also estimates the champion's
performance before labels (CBPE); the month's labels land afterwards (arrival delays are known
only later), so the next check measures the champion's real performance. When the spec's
retrain rule holds, the drift Asset starts `flight_delay__retrain` and the promotion gate
decides on its challenger: with `promotion.shadow_runs` it waits in the shadow, the next
month's score run scores it too, and the gate decides again with that production evidence.
Nothing here decides anything: it lands data and reports.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airmlops_core.io import data
from airmlops_core.tracking import registry
from airmlops_core.tracking.runs import experiment_name
from airmlops_dev import demo, demo_data
from airmlops_dev.airflow_api import AirflowAPIError, AirflowClient
from airmlops_dev.stack_config import StackConfig
from airmlops_dev.stack_health import status
from airmlops_dev.stack_secrets import use_mlflow_credentials

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

MODEL = "flight_delay"
MONTHS = (10, 11, 12)  # the champion trained on Jan-Sep: the rest of the year arrives
RUN_TIMEOUT_S = 900
IDLE_TIMEOUT_S = 900
MARKER = "replay.txt"  # the printed report of the first replay, shown again by later `make up`


@dataclass
class ScoreSummary:
    """What the demo shows of one scoring run: outputs, manifest, cost."""

    run_id: str
    state: str
    manifest: dict[str, Any]
    metrics: dict[str, float]
    shadow: dict[str, Any] = field(default_factory=dict)  # the publish task's `shadow`

    def lines(self) -> list[str]:
        t = self.manifest.get("totals", {})
        out = [
            f"  score run {self.run_id} ({self.state}): {t.get('rows_out', 0):,} of "
            f"{t.get('rows_in', 0):,} rows scored by v{self.manifest.get('model_version')}"
        ]
        out += [
            f"    {p['partition']:<10} {p['rows_out']:>7,} rows -> {p['output_uri']}"
            for p in self.manifest.get("partitions", [])
        ]
        if self.metrics:
            out.append(
                f"    cost: {self.metrics.get('score.rows_per_cpu_second', 0):,.0f} rows "
                f"per CPU-second, peak {self.metrics.get('score.peak_rss_mib', 0):.0f} "
                f"MiB per task (MLflow run in experiment {experiment_name(MODEL)})"
            )
        out.append(f"    manifest: {self.manifest.get('uri')}")
        if self.shadow:
            out.append(shadow_line(self.shadow))
        return out


def shadow_line(shadow: dict[str, Any]) -> str:
    """What a score run did with the challenger waiting in the shadow (its publish XCom)."""
    sh = shadow
    line = (
        f"    shadow: v{sh.get('version')} scored the same partitions apart "
        f"({sh.get('status')}; {sh.get('runs', 0)} of {sh.get('needed', 0)} shadow run(s)"
        + ("; back to the gate" if sh.get("ready") else "")
        + f") -> {sh.get('manifest_uri')}"
    )
    errors = sh.get("errors") or []
    return line + (f"\n      errors: {'; '.join(errors)}" if errors else "")


def estimate_line(est: dict[str, Any] | None) -> str:
    """The drift run's label-free performance estimate (CBPE) of the newest scoring run."""
    if not est:
        return "  estimated before labels: none (no estimate in this check)"
    if est.get("status") not in ("ok", "decayed"):
        return f"  estimated before labels: {est.get('status')}: " + "; ".join(
            est.get("reasons") or []
        )
    ref = est.get("reference") or {}
    shown = ", ".join(
        f"{m} {v:.3f}" + (f" (holdout {ref[m]:.3f})" if m in ref else "")
        for m, v in (est.get("estimated") or {}).items()
    )
    ece = est.get("ece")
    calib = f"; holdout ECE {ece:.3f} <= {est.get('max_ece')}" if ece is not None else ""
    return (
        f"  estimated before labels ({est['status']}, {est.get('n', 0):,} rows{calib}): {shown}"
        + "".join(f"\n    {r}" for r in est.get("reasons") or [])
    )


@dataclass
class MonthReport:
    """One month of the replay: its scoring run, drift check, alert and any retraining."""

    month: int
    score: ScoreSummary
    drift_run: str = ""
    checked: dict[str, Any] = field(default_factory=dict)
    alert: str = ""
    retrain: list[str] = field(default_factory=list)
    shadow_gate: list[str] = field(default_factory=list)  # the gate's decision after the shadow

    def lines(self) -> list[str]:
        c = self.checked
        out = [f"2013-{self.month:02d}:", *self.score.lines()]
        out += [f"  {line}" for line in self.shadow_gate]
        perf = c.get("performance") or {}
        perf_text = (
            f"; {perf['metric']} on labelled rows {perf['current']:.3f} vs holdout "
            f"{perf['reference']:.3f} ({perf['status']})"
            if perf.get("current") is not None
            else ""
        )
        drifted = c.get("drifted", {})
        out.append(
            f"  drift run {self.drift_run}: {c.get('status', '?')}, {len(drifted)} "
            f"column(s) on {c.get('rows', 0):,} scored rows, "
            f"{c.get('labelled_rows', 0):,} labelled{perf_text}"
        )
        out += [f"    {col}: {effect}" for col, effect in drifted.items()]
        out.append(estimate_line(c.get("estimate")))
        if c.get("report"):
            out.append(f"    report: {c['report']}")
        out.append(
            "  Slack: "
            + (
                self.alert.splitlines()[0][:110] + " ..."
                if self.alert
                else "no message (nothing new since the last alert)"
            )
        )
        out += [f"  {line}" for line in self.retrain]
        return out


def batch_check(checks: dict[str, Any] | None) -> dict[str, Any]:
    """The batch source's result of a drift `check` task (it answers per `monitoring.sources`).

    Raises:
        ValueError: the task answered without a batch result.
    """
    if checks is None:
        return {}
    if "batch" not in checks:
        raise ValueError(f"drift check answered without a 'batch' source: keys {sorted(checks)}")
    return dict(checks["batch"])


def _client(cfg: StackConfig) -> AirflowClient:
    return demo.stack_client(cfg)  # its waits print the tasks' state changes


def _idle(api: AirflowClient, dag_ids: list[str]) -> None:
    """Wait until none of dag_ids has a queued or running run (e.g. scheduled ones)."""
    deadline = time.monotonic() + IDLE_TIMEOUT_S
    while any(api.dag_runs(d, states=["queued", "running"]) for d in dag_ids):
        if time.monotonic() > deadline:
            raise TimeoutError(f"runs of {dag_ids} still active after {IDLE_TIMEOUT_S}s")
        time.sleep(2)


def _known(api: AirflowClient, dag_id: str) -> set[str]:
    return {r["dag_run_id"] for r in api.dag_runs(dag_id)}


def _next_run(api: AirflowClient, dag_id: str, known: set[str]) -> tuple[str, str]:
    """The next new run of dag_id (an Asset event's) and its final state."""
    run_id = api.wait_for_new_run(dag_id, known, timeout=RUN_TIMEOUT_S)
    log.info("waiting for %s (%s)", dag_id, run_id)
    return run_id, api.wait(dag_id, run_id, timeout=RUN_TIMEOUT_S)


def score_summary(
    cfg: StackConfig, run_id: str, state: str, shadow: dict[str, Any] | None = None
) -> ScoreSummary:
    """The run's MLflow scoring run (metrics), the manifest it points to and what it did with
    a challenger waiting in the shadow."""
    from mlflow import MlflowClient

    client = MlflowClient(cfg.mlflow_url)
    exp = client.get_experiment_by_name(experiment_name(MODEL))
    runs = (
        client.search_runs(
            [exp.experiment_id],
            max_results=1,
            filter_string=(
                f"tags.`airmlops.run_id` = '{run_id}' and tags.`airmlops.purpose` = 'score'"
            ),
        )
        if exp
        else []
    )
    uri = runs[0].data.tags.get("airmlops.manifest_uri") if runs else None
    manifest = {**json.loads(Path(uri).read_text()), "uri": uri} if uri else {}  # local demo
    metrics = dict(runs[0].data.metrics) if runs else {}
    return ScoreSummary(run_id, state, manifest, metrics, dict(shadow or {}))


def _published(api: AirflowClient, dag_id: str, run_id: str) -> dict[str, Any]:
    """The score run's publish result (empty when the task left none, e.g. it failed)."""
    try:
        return api.xcom(dag_id, run_id, "publish") or {}
    except AirflowAPIError as exc:
        if exc.status != 404:
            raise
        return {}


def gate_lines(client: Any, version: str, gate_run: str, gate_state: str, what: str) -> list[str]:
    """The gate run's decision on a version with its reasons (the version's `gate.*` tags)."""
    tags = client.get_model_version(MODEL, version).tags
    lines = [f"{what} {gate_run} ({gate_state}) on v{version}: {tags.get('gate.decision', '?')}"]
    lines += [f"  - {r}" for r in json.loads(tags.get("gate.reasons") or "[]")]
    lines.append(f"champion now v{registry.alias_version(client, MODEL, registry.CHAMPION)}")
    return lines


def _retrain_and_gate(
    cfg: StackConfig, api: AirflowClient, retrains: set[str], validations: set[str]
) -> list[str]:
    """Follow the retrain run the drift Asset started and the gate run its candidate started."""
    from mlflow import MlflowClient

    run_id, state = _next_run(api, f"{MODEL}__retrain", retrains)
    tis = {t["task_id"]: t["state"] for t in api.task_instances(f"{MODEL}__retrain", run_id)}
    if tis.get("extract") == "skipped":
        return [f"retrain run {run_id}: skipped, within retrain.cooldown_hours of the last one"]
    lines = [f"retrain run {run_id}: {state}"]
    client = MlflowClient(cfg.mlflow_url)
    found = client.search_model_versions(
        f"name = '{MODEL}' and tags.`airmlops.run_id` = '{run_id}'"
    )
    if state != "success" or not found:
        return lines
    version = found[0]
    tags = version.tags
    lines.append(f"  why: {tags.get('airmlops.retrain_reason', '?')}")
    gate_run, gate_state = _next_run(api, f"{MODEL}__validate", validations)
    return lines + gate_lines(client, version.version, gate_run, gate_state, "gate run")


def replay_month(cfg: StackConfig, api: AirflowClient, frame: pd.DataFrame) -> MonthReport:
    """Land one month's flights, follow score -> drift (-> retrain -> gate), then land the
    month's labels."""
    month = int(frame["month"].iloc[0])
    name = f"month-{month:02d}.parquet"
    landing = data.write_frame(
        frame.drop(columns=["delayed"]), str(cfg.root / "data" / "landing" / MODEL / name)
    )
    dags = {p: f"{MODEL}__{p}" for p in ("score", "drift", "retrain", "validate")}
    _idle(api, list(dags.values()))
    known = {p: _known(api, d) for p, d in dags.items()}
    api.asset_event(f"model/{MODEL}/landing", extra={"input": landing.uri, "month": month})
    score_run, score_state = _next_run(api, dags["score"], known["score"])
    shadow = _published(api, dags["score"], score_run).get("shadow")
    score = score_summary(cfg, score_run, score_state, shadow)
    shadow_gate: list[str] = []
    if shadow and shadow.get("ready"):  # the shadow runs are done: the gate decides again
        from mlflow import MlflowClient

        gate_run, gate_state = _next_run(api, dags["validate"], known["validate"])
        known["validate"].add(gate_run)
        shadow_gate = gate_lines(
            MlflowClient(cfg.mlflow_url), shadow["version"], gate_run, gate_state, "shadow gate run"
        )
    drift_run, _ = _next_run(api, dags["drift"], known["drift"])
    report = MonthReport(month, score, drift_run, shadow_gate=shadow_gate)
    report.checked = batch_check(api.xcom(dags["drift"], drift_run, "check"))
    report.alert = (api.xcom(dags["drift"], drift_run, "alert") or {}).get("message", "")
    tis = {t["task_id"]: t["state"] for t in api.task_instances(dags["drift"], drift_run)}
    if tis.get("signal_retrain") == "success":
        report.retrain = _retrain_and_gate(cfg, api, known["retrain"], known["validate"])
    # the month's arrival delays are known now: the next check measures real performance
    data.write_frame(
        frame[["flight_id", "delayed"]], str(cfg.root / "data" / "labels" / MODEL / name)
    )
    return report


class NotReady(RuntimeError):
    """The stack is down, or the demo's flight_delay has no champion yet."""


def ready(cfg: StackConfig) -> None:
    """Raise NotReady unless every component is up and flight_delay has a champion."""
    from mlflow import MlflowClient

    down = [r.component for r in status(cfg) if not (r.alive and r.healthy)]
    if down:
        raise NotReady(f"the local stack is not up ({', '.join(down)} down): run `make up` first")
    if registry.alias_version(MlflowClient(cfg.mlflow_url), MODEL, registry.CHAMPION) is None:
        raise NotReady(f"{MODEL} has no champion yet: `make up` trains and gates it")


def replay(cfg: StackConfig, *, again: bool = False) -> Iterator[str]:
    """Replay Oct-Dec once per stack (again: replay anew), yielding each month's report as
    it completes; later calls show the first replay's report."""
    marker = Path(cfg.root) / "demo" / MARKER
    if marker.exists() and not again:
        yield "(replayed earlier; `make replay AGAIN=1` replays anew)"
        yield from marker.read_text().splitlines()
        return
    use_mlflow_credentials(cfg)  # this process's MLflow clients log in as the stack's admin
    ready(cfg)
    api = _client(cfg)
    flights = demo_data.flights().drop(columns=["dest"])
    lines: list[str] = []
    for month in MONTHS:
        done = replay_month(cfg, api, flights[flights["month"] == month]).lines()
        lines += done
        yield from done
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.write_text("\n".join(lines) + "\n")
