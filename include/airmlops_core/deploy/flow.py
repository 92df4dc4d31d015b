"""The deploy path: resolve the source version -> pull and verify its files -> push them into
the target registry -> verify there -> (approval) -> move `champion`, or reject.

Steps take MLflow clients (or URIs) of the two registries; which connection each comes from,
and its credentials, is the operator's business. Every step returns small JSON-able dicts.
Nothing is registered in the target before the source version's gate evidence, its digest and
the model-safety check have passed.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from airmlops_core.deploy import evidence
from airmlops_core.deploy.environments import Route
from airmlops_core.drift import flow as drift_flow
from airmlops_core.errors import DeployRefused, NoReference
from airmlops_core.io.scored import PREDICTION, proba_names
from airmlops_core.score import flow as score_flow
from airmlops_core.score import gate as score_gate
from airmlops_core.spec import ModelSpec
from airmlops_core.tracking import model_digest, model_load, registry
from airmlops_core.tracking import runs as tracking
from airmlops_core.tracking.model_digest import DIGEST_TAG
from airmlops_core.tracking.runs import RunContext
from airmlops_core.train import estimator as training
from airmlops_core.validate import shadow_evidence

log = logging.getLogger(__name__)

DEPLOY_PURPOSE = "deploy"
CHAMPION = registry.CHAMPION
MONITORING_DIR = "monitoring"  # the training run's reference profile and calibration
MODEL_DIR = "model"


class Resolved(TypedDict):
    """The source version to deploy and the route (`resolve_step`)."""

    model: str
    source_environment: str
    source_registry: str
    target_environment: str
    version: str
    source_run_id: str
    digest: str
    requested_by: str
    tags: dict[str, str]  # lineage and gate evidence carried to the target
    approval: bool
    reviewers: list[str]
    approval_timeout_hours: float


class Pulled(TypedDict):
    """The source version's files, checked, in a local directory (`pull_step`)."""

    model_dir: str
    monitoring_dir: str | None
    digest: str
    flavors: list[str]
    golden_output: list[Any] | None  # the model's output on its own input example


class Pushed(TypedDict):
    """The version registered in the target (`push_step`)."""

    version: str
    run_id: str
    created: bool
    digest: str
    golden_output: list[Any] | None
    url: str


class Verified(TypedDict):
    """The target-side verification; shaped like the validate gate's result, so the approval
    operator reads it the same way (`verify_step`)."""

    promote: bool
    reasons: list[str]
    tags: dict[str, str]
    message: str
    challenger: str
    champion: str | None
    trained_by: str  # who asked: may not approve their own deploy
    approval: bool
    reviewers: list[str]
    approval_timeout_hours: float
    target_environment: str
    url: str


class Deployed(registry.AliasMoveDict):
    """Where the aliases point after the deploy (`promote_step`)."""

    summary: str
    url: str


class Refused(TypedDict):
    """The target version tagged `rejected`, and why (`reject_step`)."""

    rejected: str
    reasons: list[str]
    summary: str
    url: str
    champion: NotRequired[str | None]


def route_label(route: Route) -> str:
    return f"{route.source.name} -> {route.target.name}"


def resolve_step(
    spec: ModelSpec,
    route: Route,
    *,
    source_client: Any,
    source_version: str,
    requested_by: str,
) -> Resolved:
    """Pin the source version (its champion, or the given number) and check its gate evidence.

    Raises:
        DeployRefused: no such version or champion, it did not pass its gate in the source,
            or it has no recorded digest.
    """
    from mlflow.exceptions import MlflowException

    where = f"the {route.source.name} registry ({source_client.tracking_uri})"
    wanted = (source_version or CHAMPION).strip().lower()
    if wanted == CHAMPION:
        version = registry.alias_version(source_client, spec.name, CHAMPION)
        if version is None:
            raise DeployRefused(f"{spec.name} has no champion in {where}: nothing to deploy")
    elif wanted.isdigit() and int(wanted) > 0:
        version = str(int(wanted))
    else:
        raise DeployRefused(
            f"source_version {source_version!r} is neither 'champion' nor a version number"
        )
    label = f"{model_load.version_label(spec.name, version)} in {where}"
    try:
        mv = source_client.get_model_version(spec.name, version)
    except MlflowException as exc:
        raise DeployRefused(f"{label} does not exist: {exc.message}") from exc
    tags = dict(mv.tags)
    refusal = evidence.gate_refusal(tags, label)
    if refusal is not None:
        raise DeployRefused(f"deploy refused: {refusal}")
    digest = tags.get(DIGEST_TAG)
    if not digest:
        raise DeployRefused(
            f"deploy refused: {label} has no recorded digest ({DIGEST_TAG}); register it "
            "again with this pack (retrain) so its files can be verified"
        )
    return {
        "model": spec.name,
        "source_environment": route.source.name,
        "source_registry": str(source_client.tracking_uri),
        "target_environment": route.target.name,
        "version": version,
        "source_run_id": str(mv.run_id or ""),
        "digest": digest,
        "requested_by": requested_by,
        "tags": evidence.carried_tags(tags),
        "approval": route.target.approval,
        "reviewers": list(route.target.reviewers),
        "approval_timeout_hours": route.target.approval_timeout_hours,
    }


def pull_step(spec: ModelSpec, resolved: Resolved, *, source_client: Any, dst: Path) -> Pulled:
    """Download the source version into `dst`, verify its digest, run the model-safety check
    and record its answer to its own input example (the golden request).

    Raises:
        DeployRefused: the files' digest differs from the one recorded at registration.
        UnsafeModel: the model-safety check refused the files.
    """
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    version = resolved["version"]
    label = f"{model_load.version_label(spec.name, version)} of {resolved['source_environment']}"
    local = model_load.download_version(source_client, spec.name, version, dst / MODEL_DIR)
    found = model_digest.dir_sha256(local)
    if found != resolved["digest"]:
        raise DeployRefused(
            f"deploy refused: the files of {label} changed since registration (digest "
            f"{found[:16]}..., recorded {resolved['digest'][:16]}...); nothing was registered "
            f"in {resolved['target_environment']}"
        )
    safe = model_load.load_dir(local, label)  # the model-safety check, then the load
    monitoring: str | None = None
    if resolved["source_run_id"]:
        try:
            monitoring = mlflow.artifacts.download_artifacts(
                run_id=resolved["source_run_id"],
                artifact_path=MONITORING_DIR,
                dst_path=str(dst / "run"),
                tracking_uri=source_client.tracking_uri,
            )
        except (OSError, MlflowException) as exc:
            log.warning("%s: no %s artifacts to carry (%s)", label, MONITORING_DIR, exc)
    golden_output = golden_request(local, safe)
    return {
        "model_dir": str(local),
        "monitoring_dir": monitoring,
        "digest": found,
        "flavors": list(safe.checked.flavors),
        "golden_output": golden_output,
    }


def golden_request(model_dir: str | Path, safe: Any) -> list[Any] | None:
    """The checked, loaded model's output on the input example stored with its files (the
    golden request), or None when the model has no example."""
    example: Any = safe.meta.load_input_example(str(model_dir))  # a DataFrame (typed str)
    if example is None:
        return None
    return _as_list(safe.pyfunc().predict(example))


def _as_list(output: Any) -> list[Any]:
    import numpy as np

    values = output.to_numpy() if hasattr(output, "to_numpy") else np.asarray(output)
    return np.asarray(values, dtype=float).tolist()


def push_step(
    spec: ModelSpec, ctx: RunContext, resolved: Resolved, pulled: Pulled, *, tracking_uri: str
) -> Pushed:
    """Log the verified files to a deploy run in the target and register them with provenance
    tags (no alias yet), then check the registered files' digest. Idempotent per DAG run.

    Raises:
        DeployRefused: the target's copy differs from the source's (the version is deleted).
    """
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)  # mlflow.register_model (registry.register_version)
    client = MlflowClient(tracking_uri)
    run_id = tracking.model_run(client, spec.name, ctx, DEPLOY_PURPOSE)
    existing = registry.versions_with_key(client, spec.name, _key(ctx))
    if not existing:  # a retry after registration does not upload again
        client.log_artifacts(run_id, pulled["model_dir"], MODEL_DIR)
        if pulled["monitoring_dir"]:
            client.log_artifacts(run_id, pulled["monitoring_dir"], MONITORING_DIR)
    tags = {
        **resolved["tags"],
        **ctx.tags(),
        **evidence.provenance_tags(
            source_environment=resolved["source_environment"],
            source_registry=resolved["source_registry"],
            source_version=resolved["version"],
            source_run_id=resolved["source_run_id"],
            digest=pulled["digest"],
            target_environment=resolved["target_environment"],
            requested_by=resolved["requested_by"],
            deploy_run=f"{ctx.dag_id}/{ctx.run_id}",
        ),
    }
    reg = registry.register_version(
        client,
        spec.name,
        f"runs:/{run_id}/{MODEL_DIR}",
        run_id=run_id,
        idempotency_key=_key(ctx),
        tags=tags,
        alias=None,
        description=f"{resolved['source_environment']} version {resolved['version']} deployed "
        f"by {ctx.dag_id} run {ctx.run_id} (asked by {resolved['requested_by']})",
    )
    client.set_terminated(run_id, status="FINISHED")
    with tempfile.TemporaryDirectory(prefix="airmlops-deployed-") as tmp:
        copy = model_load.download_version(client, spec.name, reg.version, Path(tmp))
        found = model_digest.dir_sha256(copy)
    if found != pulled["digest"]:
        client.delete_model_version(spec.name, reg.version)
        raise DeployRefused(
            f"deploy refused: {model_load.version_label(spec.name, reg.version)} in "
            f"{resolved['target_environment']} differs from the source's files (digest "
            f"{found[:16]}..., expected {pulled['digest'][:16]}...); the version was deleted"
        )
    return {
        "version": reg.version,
        "run_id": run_id,
        "created": reg.created,
        "digest": found,
        "golden_output": pulled["golden_output"],
        "url": tracking.model_version_url(tracking_uri, spec.name, reg.version),
    }


def _key(ctx: RunContext) -> str:
    return f"{ctx.dag_id}/{ctx.run_id}"


def verify_step(
    spec: ModelSpec, ctx: RunContext, resolved: Resolved, pushed: Pushed, *, tracking_uri: str
) -> Verified:
    """Verify the target's version on the target: the model-safety check on the target's
    bytes, the golden request, and, when the target has scored a batch, the data check of
    that batch and a shadow score of it next to the target's champion."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    version = pushed["version"]
    label = f"{model_load.version_label(spec.name, version)} in {resolved['target_environment']}"
    with tempfile.TemporaryDirectory(prefix="airmlops-verify-") as tmp:
        local = model_load.download_version(client, spec.name, version, Path(tmp))
        safe = model_load.load_dir(local, label)  # the safety check on the target's bytes
        target_output = golden_request(local, safe)  # the same example: the same files
    if pushed["golden_output"] is not None and target_output is not None:
        golden = evidence.golden_check(pushed["golden_output"], target_output)
    else:
        golden = evidence.GoldenCheck(rows=0, max_abs_diff=0.0)
    champion = registry.alias_version(client, spec.name, CHAMPION)
    data_check, shadow, note = latest_batch_evidence(spec, client, version, safe, champion)
    decision = evidence.decide(golden=golden, data_check=data_check, shadow=shadow, batch_note=note)
    route = f"{resolved['source_environment']} -> {resolved['target_environment']}"
    tags = decision.tags()
    for key, value in tags.items():
        client.set_model_version_tag(spec.name, version, key, value)
    log.info("deploy verification of %s version %s: %s", spec.name, version, decision.reasons)
    return {
        "promote": decision.promote,
        "reasons": decision.reasons,
        "tags": tags,
        "message": decision.message(spec.name, version, route)
        + f"\n(source version {resolved['version']}, asked by {resolved['requested_by']})",
        "challenger": version,
        "champion": champion,
        "trained_by": resolved["requested_by"],
        "approval": resolved["approval"],
        "reviewers": resolved["reviewers"],
        "approval_timeout_hours": resolved["approval_timeout_hours"],
        "target_environment": resolved["target_environment"],
        "url": pushed["url"],
    }


def latest_batch_evidence(
    spec: ModelSpec, client: Any, version: str, safe: Any, champion: str | None
) -> tuple[dict[str, Any] | None, shadow_evidence.ShadowEvidence | None, str | None]:
    """The data check of the target's latest scored batch and the new version's shadow score
    of it next to the champion's scores, or a note saying why there is none."""
    import numpy as np
    import pandas as pd

    window, lineage = drift_flow.current_window(spec, None, 1)
    if window.empty:
        return None, None, "no scored batch in the target yet: no data check or shadow score"
    suite = score_flow.scoring_suite(spec)  # the very check the batch passed to be scored
    results = [
        score_gate.check_partition(uri, suite, row_key=spec.row_key) for uri in lineage["inputs"]
    ]
    data_check = {
        "success": all(r.success for r in results),
        "summary": "; ".join(r.summary() for r in results),
        "inputs": list(lineage["inputs"]),
    }
    if champion is None or safe.native is None:
        return data_check, None, "no champion in the target (or not scikit-learn): no shadow"
    X = training.feature_frame(spec, window)
    estimator = safe.native
    candidate_pred = np.asarray(estimator.predict(X))
    agreement = shadow_evidence.agreement(window[PREDICTION].to_numpy(), candidate_pred)
    mad = None
    outputs = pd.DataFrame({PREDICTION: candidate_pred})
    if spec.is_classifier:
        names = proba_names(list(estimator.classes_))
        proba = np.asarray(estimator.predict_proba(X))
        if all(n in window.columns for n in names):
            mad = shadow_evidence.mean_abs_difference(window[names].to_numpy(), proba)
        outputs = outputs.assign(**{n: proba[:, i] for i, n in enumerate(names)})
    drift = None
    notes: list[str] = []
    try:
        drift = shadow_evidence.prediction_drift(spec, client, version, outputs)
    except NoReference as exc:
        notes.append(str(exc))
    shadow = shadow_evidence.ShadowEvidence(
        runs=1,
        rows=len(window),
        agreement=agreement,
        mean_abs_diff=mad,
        min_agreement=spec.promotion.shadow_min_agreement,
        drift=drift,
        comparison=None,
        labelled_rows=0,
        notes=notes,
    )
    return data_check, shadow, None


def promote_step(
    spec: ModelSpec, ctx: RunContext, verified: Verified, *, tracking_uri: str, approved_by: str
) -> Deployed:
    """Move the target's `champion` to the deployed version under the champion lease
    (compare-and-set against the champion the verification saw)."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    move = registry.move_champion(
        client,
        spec.name,
        verified["challenger"],
        expected_champion=verified["champion"],
        tags={
            **verified["tags"],
            f"{evidence.DEPLOY}approved_by": approved_by,
            f"{evidence.DEPLOY}promoted_by": _key(ctx),
        },
        owner=f"{_key(ctx)} (deploy to {verified['target_environment']})",
    )
    head = (
        f":rocket: *{spec.name}* version {verified['challenger']} is champion in "
        f"{verified['target_environment']} (was {verified['champion'] or 'none'}), "
        f"approved by {approved_by}"
    )
    return {
        **move.to_dict(),
        "summary": "\n".join([head, *verified["message"].splitlines()[1:]]),
        "url": verified["url"],
    }


def reject_step(
    spec: ModelSpec, verified: Verified, *, tracking_uri: str, extra_reasons: list[str]
) -> Refused:
    """Tag the deployed version `rejected` in the target (it can never be deployed further);
    the target's champion stays."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    reasons = [*(verified["reasons"] if not verified["promote"] else []), *extra_reasons]
    client.set_model_version_tag(
        spec.name, verified["challenger"], evidence.REJECTED_TAG, json.dumps(reasons)[:5000]
    )
    head = (
        f":no_entry: *{spec.name}* version {verified['challenger']} not deployed to "
        f"{verified['target_environment']}: champion stays {verified['champion'] or 'none'}"
    )
    return {
        "rejected": verified["challenger"],
        "reasons": reasons,
        "summary": "\n".join([head, *(f"• {r}" for r in reasons)]),
        "url": verified["url"],
        "champion": verified["champion"],
    }
