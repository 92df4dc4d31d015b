"""The score path: resolve the champion -> list partitions -> score each -> publish.

The champion is resolved to a concrete version once, at the start of the run; every partition
of the run is scored with that version even if the alias moves meanwhile. Partitions are
independent (one mapped task each); `publish_step` writes the manifest and the run's lineage to
MLflow and fails the run, after recording everything, when any partition was quarantined.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from airmlops_core import errors, settings
from airmlops_core.errors import PartitionsQuarantined
from airmlops_core.io import data, scored, sql
from airmlops_core.io import sql_sink as score_sink
from airmlops_core.quality.evidence import quarantine_uri
from airmlops_core.quality.suite import Suite, suite_for
from airmlops_core.score import shadow
from airmlops_core.score.gate import score_or_quarantine, write_manifest
from airmlops_core.score.model import load_model, resolve_champion
from airmlops_core.score.partitions import list_partitions
from airmlops_core.score.results import PartitionResult, Published, ScoreResolved
from airmlops_core.spec import ModelSpec
from airmlops_core.tracking import resources
from airmlops_core.tracking import runs as tracking
from airmlops_core.tracking.runs import TAG_PREFIX, RunContext

log = logging.getLogger(__name__)

SCORE_PURPOSE = "score"


def input_uri(spec: ModelSpec, override: str | None = None) -> str:
    """The run's input: a DAG param, else spec.scoring.input, else <data>/landing/<model>/."""
    uri = override or spec.scoring.input or f"landing/{spec.name}/"
    return data.resolve_uri(uri, settings.data_dir())


def output_base(spec: ModelSpec) -> str:
    """Where scored partitions go (spec.scoring.output, else <data>/scored)."""
    return data.resolve_uri(spec.scoring.output or "scored", settings.data_dir())


def _score_run(spec: ModelSpec, ctx: RunContext, client: Any) -> str:

    return tracking.model_run(client, spec.name, ctx, SCORE_PURPOSE)


def resolve_step(spec: ModelSpec, ctx: RunContext, *, tracking_uri: str) -> ScoreResolved:
    """Pin the champion's version for the whole run and open the run's MLflow scoring run.

    Raises:
        errors.ChampionNotFound: nothing has been promoted yet.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    version = resolve_champion(client, spec.name)
    run_id = _score_run(spec, ctx, client)
    client.log_param(run_id, "model_version", version)
    out: ScoreResolved = {"version": version, "mlflow_run_id": run_id}
    shadow_version = shadow.resolve_shadow(client, spec, version)
    if shadow_version is not None:
        out["shadow"] = shadow_version
    return out


def partitions_step(
    spec: ModelSpec,
    ctx: RunContext,
    *,
    override: str | None = None,
    landed: Sequence[str] = (),
    s3_client: Any = None,
    sql_engine: Any = None,
) -> list[str]:
    """The partitions to score: files under the input, or the query's rows as one file.

    The input is the DAG param `override`, else the `input` of each landing Asset event that
    triggered the run (`landed`: only the batches announced), else the spec's input.
    """
    if override or not landed:
        if spec.scoring.query and not override:
            frame = sql.read_sql(spec.scoring.query, sql_engine)
            safe = data.safe_segment(ctx.run_id)
            uri = data.join_uri(settings.work_uri(), spec.name, "score", safe, "query.parquet")
            return [data.write_frame(frame, uri, s3_client=s3_client).uri]
        return list_partitions(input_uri(spec, override), s3_client=s3_client)
    found = list(
        dict.fromkeys(
            p
            for uri in dict.fromkeys(landed)
            for p in list_partitions(input_uri(spec, uri), s3_client=s3_client)
        )
    )
    names = [scored.partition_name(p) for p in found]
    if len(set(names)) < len(names):
        raise errors.DataError(
            f"landed inputs {list(landed)}: partitions would share an output "
            f"name: {sorted(found, key=scored.partition_name)}"
        )
    return found


def scoring_suite(spec: ModelSpec) -> Suite:
    """The suite a batch is checked against before scoring: the model's, except that a batch
    may carry columns the model does not read (scored, with a warning)."""
    return suite_for(spec).model_copy(update={"extra_columns": "warn"})


def score_step(
    spec: ModelSpec,
    ctx: RunContext,
    partition: str,
    resolved: ScoreResolved,
    *,
    tracking_uri: str,
    s3_client: Any = None,
) -> PartitionResult:
    """Gate and score one partition with the pinned version, or quarantine it; then, with a
    shadow version, score it with that too (`score.shadow`: apart, never failing this)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    with resources.measure() as usage:
        model = load_model(client, spec.name, resolved["version"])
        suite = scoring_suite(spec)
        name = scored.partition_name(partition)
        if not ctx.logical_date:
            raise ValueError(f"{ctx.dag_id} run {ctx.run_id}: no logical date to stamp rows with")
        when = ctx.logical_date
        result = score_or_quarantine(
            model,
            partition,
            suite=suite,
            output_uri=scored.output_uri(output_base(spec), spec.name, when, name),
            quarantine_uri=data.join_uri(quarantine_uri(spec, ctx), name),
            row_key=spec.row_key,
            logical_date=when,
            s3_client=s3_client,
            chunk_rows=spec.scoring.chunk_rows,
        )
    usage.rows = int(result.get("rows_in") or 0)
    out: PartitionResult = {**result, "usage": usage.metrics("")}
    version = resolved.get("shadow")
    if version:
        sh = shadow.score_shadow(
            spec,
            partition,
            version,
            result,
            client=client,
            output_base=output_base(spec),
            suite=suite,
            s3_client=s3_client,
        )
        if sh is not None:
            out["shadow"] = sh
    return out


def publish_step(
    spec: ModelSpec,
    ctx: RunContext,
    resolved: ScoreResolved,
    results: list[PartitionResult],
    *,
    tracking_uri: str,
    s3_client: Any = None,
    sql_engine: Any = None,
) -> Published:
    """Upsert the scored rows into the SQL sink (when the spec has one, in one transaction),
    write the manifest, log the run's lineage to MLflow, then fail if any was quarantined.

    Raises:
        PartitionsQuarantined: naming each quarantined partition, its failed rules and where
            it was kept; raised after the manifest and the lineage are recorded.
    """
    import mlflow
    from mlflow import MlflowClient

    results = [r for r in results if r]
    sink = spec.scoring.sink
    sink_rows = None
    if sink is not None and spec.row_key:
        sink_rows = score_sink.upsert(
            sql_engine,
            sink.table,
            spec.row_key,
            [
                r["output_uri"]
                for r in results
                if r["status"] == "scored" and r["output_uri"] is not None
            ],
            s3_client=s3_client,
        )
    manifest = write_manifest(output_base(spec), results, s3_client=s3_client)
    totals = manifest["totals"]
    seconds = sum(r["usage"]["wall_seconds"] for r in results)
    cpu = sum(r["usage"]["cpu_seconds"] for r in results)
    metrics = {
        "rows_in": totals["rows_in"],
        "rows_out": totals["rows_out"],
        "rows_quarantined": totals["quarantined_rows"],
        "partitions": totals["partitions"],
        "partitions_quarantined": totals["quarantined"],
        "task_seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 3),
        "rows_per_second": round(totals["rows_in"] / max(seconds, 1e-9), 1),
        "rows_per_cpu_second": round(totals["rows_in"] / max(cpu, 1e-9), 1),
        "peak_rss_mib": max(r["usage"]["peak_rss_mib"] for r in results),
        **({"sink_rows": sink_rows} if sink_rows is not None else {}),
    }
    client = MlflowClient(tracking_uri)
    run_id = resolved["mlflow_run_id"]
    mlflow.set_tracking_uri(tracking_uri)
    with tracking.resume(run_id, tracking_uri):
        mlflow.log_metrics({f"score.{k}": float(v) for k, v in metrics.items()})
        mlflow.log_dict(manifest, "scoring/manifest.json")
        mlflow.set_tags(
            {
                f"{TAG_PREFIX}manifest_uri": manifest["uri"],
                f"{TAG_PREFIX}model_version": resolved["version"],
                f"{TAG_PREFIX}inputs": ",".join(r["input_uri"] for r in results)[:5000],
            }
        )
    quarantined = [r for r in results if r["status"] == "quarantined"]
    shadowed = None
    if resolved.get("shadow"):
        shadowed = shadow.publish_shadow(
            spec,
            resolved["shadow"],
            results,
            client=client,
            run_id=run_id,
            output_base=output_base(spec),
            s3_client=s3_client,
        )
    client.set_terminated(run_id, status="FAILED" if quarantined else "FINISHED")
    if shadowed is not None and not quarantined:
        shadowed = shadow.count_runs(spec, ctx, shadowed, client=client)
    exp_id = tracking.experiment_id(client, tracking.experiment_name(spec.name))
    summary = (
        f"*{spec.name}* version {resolved['version']} scored {totals['rows_out']:,} of "
        f"{totals['rows_in']:,} rows in {totals['scored']} partition(s) "
        f"({metrics['rows_per_cpu_second']:,.0f} rows per CPU-second, peak "
        f"{metrics['peak_rss_mib']:.0f} MiB); manifest {manifest['uri']}"
    )
    if quarantined:
        lines = [
            f"{r['partition']}: {', '.join(r['failed_rules'])} -> {r['quarantine_uri']}"
            for r in quarantined
        ]
        raise PartitionsQuarantined(
            f"{len(quarantined)} of {totals['partitions']} partition(s) failed their checks "
            f"and were quarantined ({totals['quarantined_rows']:,} rows, not scored): "
            + "; ".join(lines)
            + f". {summary}"
        )
    published: Published = {
        "summary": summary,
        "manifest_uri": manifest["uri"],
        "totals": totals,
        "metrics": metrics,
        "version": resolved["version"],
        "run_url": tracking.run_url(tracking_uri, exp_id, run_id),
        "outputs": [r["output_uri"] for r in results],
    }
    if shadowed is not None:
        published["shadow"] = shadowed
        published["summary"] += (
            f"\nShadow: version {shadowed['version']} {shadowed['status']} "
            f"({shadowed['runs']} of {shadowed['needed']} shadow runs"
            + ("; back to the gate" if shadowed["ready"] else "")
            + ")"
        )
    return published
