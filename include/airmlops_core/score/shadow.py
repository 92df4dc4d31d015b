"""Shadow scoring: a challenger waiting at the gate scores what the champion scores, apart.

While `promotion.shadow_runs` is set and a version has the alias `shadow` (the validate gate
gave it, `validate.shadow_evidence.start_wait`), each score run also streams every partition
the champion scored through that version, after the production output is written, into

    <scoring.output>/_shadow/v<version>/<model>/<logical date>/<partition>.parquet

with its own `_manifest.json` there. Nothing of it reaches the production files, the
production manifest or the SQL sink (model names start with a letter, so `_shadow` is never a
model's folder, and the drift DAG reads `<scoring.output>/<model>/` only). A shadow failure
(the model refused by the safety check, a scoring error, a write error) is logged and
recorded on the partition's result and the score run (`airmlops.shadow_status = failed`);
the production scoring goes on. After the run is published, the version's completed shadow
runs are counted; the run that reaches `shadow_runs` hands the version back to the gate (the
score DAG's `shadow_handoff` task emits the candidate Asset).
"""

from __future__ import annotations

import logging
from typing import Any

from airmlops_core.io import data, scored
from airmlops_core.quality import batch_checks
from airmlops_core.quality.suite import Suite
from airmlops_core.score import stream
from airmlops_core.score.gate import write_manifest
from airmlops_core.score.model import load_model
from airmlops_core.score.results import (
    PartitionOutcome,
    PartitionResult,
    ShadowOutcome,
    ShadowPublished,
)
from airmlops_core.spec import ModelSpec
from airmlops_core.tracking import registry
from airmlops_core.tracking.runs import RunContext
from airmlops_core.validate import shadow_evidence as ev

log = logging.getLogger(__name__)

SHADOW_DIR = "_shadow"


def shadow_base(output_base: str, version: str) -> str:
    """<output base>/_shadow/v<version>: the scored layout (io.scored) of one shadow version."""
    return data.join_uri(output_base, SHADOW_DIR, f"v{version}")


def resolve_shadow(client: Any, spec: ModelSpec, champion: str) -> str | None:
    """The version to shadow-score this run: the alias `shadow`, when the spec asks for shadow
    runs and it is not the champion itself."""
    if not spec.promotion.shadow_runs:
        return None
    version = registry.alias_version(client, spec.name, registry.SHADOW)
    return None if version is None or version == champion else version


def score_shadow(
    spec: ModelSpec,
    partition: str,
    version: str,
    production: PartitionOutcome,
    *,
    client: Any,
    output_base: str,
    suite: Suite,
    s3_client: Any = None,
) -> ShadowOutcome | None:
    """Score a partition the champion scored with the shadow version (None: it was not scored).

    Never raises: a failure is logged and returned as status "failed" with the error.
    """
    if production["status"] != "scored":
        return None
    when = production["logical_date"]
    uri = scored.output_uri(
        shadow_base(output_base, version), spec.name, when, production["partition"]
    )
    try:
        model = load_model(client, spec.name, version)  # the model-safety check included
        out = stream.score_partition(
            model,
            partition,
            uri,
            row_key=spec.row_key,
            logical_date=when,
            s3_client=s3_client,
            chunk_rows=spec.scoring.chunk_rows,
            column_types=batch_checks.csv_types(batch_checks.batch_suite(suite, spec.row_key)),
        )
    except Exception as exc:  # noqa: BLE001 - the shadow never fails production scoring
        error = f"{type(exc).__name__}: {exc}"[:2000]
        log.warning(
            "shadow scoring of %s with %s version %s failed (production unaffected): %s",
            partition,
            spec.name,
            version,
            error,
        )
        return {"version": version, "status": "failed", "error": error}
    return {"version": version, "status": "scored", "outcome": out}


def publish_shadow(
    spec: ModelSpec,
    version: str,
    results: list[PartitionResult],
    *,
    client: Any,
    run_id: str,
    output_base: str,
    s3_client: Any = None,
) -> ShadowPublished:
    """Write the shadow manifest and tag the score run with the shadow version, its manifest
    and its status ("complete" only when every partition the champion scored was
    shadow-scored). Never raises: a failure is recorded as status "failed"."""
    errors: list[str] = []
    manifest_uri = None
    try:
        outcomes = []
        for r in results:
            if r["status"] != "scored":
                continue
            sh = r.get("shadow")
            if sh is None or sh["status"] != "scored" or "outcome" not in sh:
                errors.append(f"{r['partition']}: {sh.get('error') if sh else 'not scored'}")
            else:
                outcomes.append(sh["outcome"])
        if outcomes:
            base = shadow_base(output_base, version)
            manifest_uri = write_manifest(base, outcomes, s3_client=s3_client)["uri"]
        elif not errors:
            errors.append("no partition was scored")
    except Exception as exc:  # noqa: BLE001 - the shadow never fails production scoring
        errors.append(f"shadow manifest: {type(exc).__name__}: {exc}")
    status = "failed" if errors else ev.COMPLETE
    try:
        client.set_tag(run_id, ev.SHADOW_VERSION_TAG, version)
        client.set_tag(run_id, ev.SHADOW_STATUS_TAG, status)
        if manifest_uri:
            client.set_tag(run_id, ev.SHADOW_MANIFEST_TAG, manifest_uri)
        client.log_metric(run_id, "shadow.partitions_failed", float(len(errors)))
    except Exception as exc:  # noqa: BLE001
        errors.append(f"recording on the score run: {type(exc).__name__}: {exc}")
        status = "failed"
    if errors:
        log.warning("shadow scoring of %s version %s: %s", spec.name, version, "; ".join(errors))
    return {
        "version": version,
        "status": "complete" if status == ev.COMPLETE else "failed",
        "manifest_uri": manifest_uri,
        "errors": errors,
        "runs": 0,
        "needed": int(spec.promotion.shadow_runs or 0),
        "ready": False,
    }


def count_runs(
    spec: ModelSpec, ctx: RunContext, published: ShadowPublished, *, client: Any
) -> ShadowPublished:
    """After the score run finished: the version's completed shadow runs, and whether this run
    hands it back to the gate (the first run that reaches `shadow_runs`; a retry of that same
    run again). Never raises."""
    version = published["version"]
    try:
        done = len(ev.completed_runs(client, spec.name, version))
        out: ShadowPublished = {**published, "runs": done}
        if registry.alias_version(client, spec.name, registry.SHADOW) != version:
            return out  # decided meanwhile
        client.set_model_version_tag(
            spec.name, version, ev.WAITING_TAG, f"{done}/{published['needed']}"
        )
        if done < published["needed"]:
            return out
        me = f"{ctx.dag_id}/{ctx.run_id}"
        handed = client.get_model_version(spec.name, version).tags.get(ev.HANDOFF_TAG)
        if handed in (None, me):
            client.set_model_version_tag(spec.name, version, ev.HANDOFF_TAG, me)
            out["ready"] = True
        return out
    except Exception as exc:  # noqa: BLE001 - the shadow never fails production scoring
        log.warning("counting the shadow runs of %s version %s: %r", spec.name, version, exc)
        return {**published, "errors": [*published["errors"], f"counting runs: {exc}"]}
