"""The validate path: resolve -> check holdout -> gate -> promote or reject.

The challenger is judged on the frozen holdout its training run wrote (hash-verified), the
champion on the very same rows. Every step returns small JSON-able dicts.
"""

from __future__ import annotations

import json
import logging
from typing import Any, NotRequired, TypedDict

import numpy as np

from airmlops_core.errors import GateError, UnsafeModel
from airmlops_core.io import data
from airmlops_core.io.data import DataRefDict
from airmlops_core.io.labels import read_labels
from airmlops_core.io.store import Store
from airmlops_core.quality import check, evidence
from airmlops_core.quality.evidence import Quarantined, quarantine_uri
from airmlops_core.quality.report import log_check
from airmlops_core.quality.suite import suite_for
from airmlops_core.spec import ModelSpec
from airmlops_core.stats import comparison, fairness
from airmlops_core.stats.metrics import encode_labels
from airmlops_core.tracking import model_load, model_metrics, registry
from airmlops_core.tracking import runs as tracking
from airmlops_core.tracking.runs import TAG_PREFIX, TRIGGERED_BY, RunContext
from airmlops_core.train import estimator as training
from airmlops_core.train import evaluation, generalization
from airmlops_core.validate import card_mlflow, comparison_chart, promotion, shadow_evidence

log = logging.getLogger(__name__)

VALIDATE_PURPOSE = "validate"


class Resolved(TypedDict):
    """The pinned versions and the challenger's frozen holdout (`resolve_step`)."""

    challenger: str
    champion: str | None
    holdout: DataRefDict
    data_sha256: str
    train: NotRequired[DataRefDict]  # the frozen training split (older versions lack it)
    trained_by: NotRequired[str | None]  # who started the challenger's training run, if a user


class Checked(TypedDict):
    """The holdout's expectation suite result (`check_holdout_step`)."""

    success: bool
    summary: str
    failures: int
    warnings: int
    quarantine: NotRequired[Quarantined]


class Gated(TypedDict):
    """The gate's decision and its evidence as version tags (`gate_step`)."""

    promote: bool
    reasons: list[str]
    tags: dict[str, str]
    message: str
    challenger: str
    champion: str | None
    data_sha256: str
    metrics: dict[str, float]
    # the challenger passed and waits for promotion.shadow_runs score runs (alias `shadow`)
    shadow_wait: NotRequired[bool]
    # the champion-versus-challenger chart in the MLflow UI (when there was a champion)
    chart_url: NotRequired[str]


class Promoted(registry.AliasMoveDict):
    """Where the aliases point after a promotion (`promote_step`); the card's URI, if written."""

    summary: str
    url: str
    model_card: NotRequired[str | None]


class Rejected(TypedDict):
    """The rejected challenger and why (`reject_step`); the card's URI, if written."""

    rejected: str
    reasons: list[str]
    summary: str
    url: str
    model_card: NotRequired[str | None]


class RolledBack(registry.AliasMoveDict):
    """Where the aliases point after a rollback (`rollback_step`)."""

    url: str
    summary: str


def resolve_step(spec: ModelSpec, *, tracking_uri: str) -> Resolved:
    """Pin the challenger and champion versions and the challenger's frozen holdout."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    challenger = registry.alias_version(client, spec.name, registry.CHALLENGER)
    if challenger is None:
        raise GateError(
            f"{spec.name}: no version has alias 'challenger'; run {spec.name}__train first"
        )
    tags = client.get_model_version(spec.name, challenger).tags
    holdout_uri = tags.get(f"{TAG_PREFIX}holdout_uri")
    holdout_sha = tags.get(f"{TAG_PREFIX}holdout_sha256")
    if not holdout_uri or not holdout_sha:
        raise GateError(f"{spec.name} version {challenger} has no frozen holdout tags")
    champion = registry.alias_version(client, spec.name, registry.CHAMPION)
    out: Resolved = {
        "challenger": challenger,
        "champion": champion,
        "holdout": {"uri": holdout_uri, "sha256": holdout_sha, "rows": -1, "format": "parquet"},
        "data_sha256": tags.get(f"{TAG_PREFIX}data_sha256", ""),
        "trained_by": tags.get(TRIGGERED_BY),
    }
    train_uri, train_sha = tags.get(f"{TAG_PREFIX}train_uri"), tags.get(f"{TAG_PREFIX}train_sha256")
    if train_uri and train_sha:
        out["train"] = {"uri": train_uri, "sha256": train_sha, "rows": -1, "format": "parquet"}
    return out


def _validate_run(spec: ModelSpec, ctx: RunContext, tracking_uri: str) -> str:
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    return tracking.model_run(client, spec.name, ctx, VALIDATE_PURPOSE)


def check_holdout_step(
    spec: ModelSpec,
    ctx: RunContext,
    resolved: Resolved,
    *,
    tracking_uri: str,
    s3_client: Any = None,
) -> Checked:
    """Run the expectation suite on the challenger's holdout; a failure is evidence to reject."""
    import mlflow

    mlflow.set_tracking_uri(tracking_uri)
    ref = resolved["holdout"]
    frame = data.read_frame(ref["uri"], s3_client=s3_client)
    actual = data.file_sha256(ref["uri"], s3_client=s3_client)
    if actual != ref["sha256"]:
        raise GateError(
            f"{ref['uri']}: holdout changed since training "
            f"(expected sha256 {ref['sha256']}, found {actual})"
        )
    result = check.validate(frame, suite_for(spec))
    with tracking.resume(_validate_run(spec, ctx, tracking_uri), tracking_uri):
        log_check(result, "holdout", tag_prefix=TAG_PREFIX)
    out: Checked = {
        "success": result.success,
        "summary": result.summary(),
        "failures": len(result.failures),
        "warnings": len(result.warnings),
    }
    if not result.success:
        out["quarantine"] = evidence.quarantine(
            frame, ref["uri"], result, quarantine_uri(spec, ctx), s3_client=s3_client
        )
    return out


def model_output(spec: ModelSpec, model: Any, X: Any) -> np.ndarray:
    """What metrics read: P(positive) (binary), the probability matrix (multiclass), or y-hat."""
    if spec.task == "binary":
        return np.asarray(model.predict_proba(X))[:, 1]
    if spec.task == "multiclass":
        return np.asarray(model.predict_proba(X))
    return np.asarray(model.predict(X))


def hard_prediction(spec: ModelSpec, model: Any, X: Any) -> np.ndarray:
    return np.asarray(model.predict(X))


def _estimator(client: Any, name: str, version: str) -> Any:
    """The scikit-learn estimator of one version, loaded after the model-safety check.

    Raises:
        UnsafeModel: refused, or not a scikit-learn model (the gate compares estimators).
    """
    safe = model_load.load_version(client, name, version)
    if safe.native is None:
        raise UnsafeModel(
            f"{model_load.version_label(name, version)}: the gate compares scikit-learn "
            f"models; this one has the flavors {list(safe.checked.flavors)}"
        )
    return safe.native


def overfit_evidence(
    spec: ModelSpec,
    resolved: Resolved,
    model: Any,
    holdout_metrics: dict[str, float],
    *,
    s3_client: Any = None,
) -> generalization.OverfitCheck | None:
    """The challenger's train-versus-holdout gap on its frozen (hash-verified) training split;
    without that split, an unknown gap (rejected when a limit is set), or None when unasked."""
    ref = resolved.get("train")
    if ref is None:
        if spec.promotion.max_overfit_gap is None and spec.promotion.cv_folds is None:
            return None
        metric = spec.metrics.primary
        return generalization.OverfitCheck(
            metric=metric,
            train=float("nan"),
            holdout=holdout_metrics[metric],
            max_gap=spec.promotion.max_overfit_gap,
            note=f"version {resolved['challenger']} has no {TAG_PREFIX}train_uri tag: retrain it",
        )
    train_ref = data.DataRef(ref["uri"], ref["sha256"], ref["rows"], ref["format"])
    train = data.read_ref(train_ref, s3_client=s3_client)  # verifies the hash
    return generalization.overfit_check(spec, model, train, holdout_metrics)


def gate_step(
    spec: ModelSpec,
    ctx: RunContext,
    resolved: Resolved,
    checked: Checked,
    *,
    tracking_uri: str,
    s3_client: Any = None,
    store: Store | None = None,
    sql_engine: Any = None,
) -> Gated:
    """Floors (overall and per segment), overfitting, champion vs challenger, fairness: the
    decision. `store` and `sql_engine` reach the landed labels the shadow evidence compares
    on (`io.labels.read_labels`)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    holdout = data.read_frame(resolved["holdout"]["uri"], s3_client=s3_client)
    X = training.feature_frame(spec, holdout)
    client = MlflowClient(tracking_uri)
    challenger = _estimator(client, spec.name, resolved["challenger"])
    classes = getattr(challenger, "classes_", None)
    y_raw = holdout[spec.target].to_numpy()
    y = encode_labels(y_raw, classes) if spec.is_classifier else y_raw
    metrics = evaluation.evaluate(spec, challenger, holdout)
    floors = evaluation.floor_failures(spec, metrics)
    overfit = overfit_evidence(spec, resolved, challenger, metrics, s3_client=s3_client)
    out_chall = model_output(spec, challenger, X)
    segment_failures: list[str] = []
    for column in spec.promotion.segments:
        for metric, floor in spec.metrics.floors.items():
            segment_failures += promotion.segment_floor_failures(
                y, out_chall, holdout[column], metric, floor
            )
    comp = None
    champ_reports = None
    champion = None
    chart_url: str | None = None
    if resolved["champion"] and resolved["champion"] != resolved["challenger"]:
        champion = _estimator(client, spec.name, resolved["champion"])
        out_champ = model_output(spec, champion, X)
        comp = comparison.compare(
            y,
            out_champ,
            out_chall,
            spec.gate_metric,
            margin=spec.promotion.margin,
            n_boot=spec.promotion.n_boot,
            level=spec.promotion.level,
            seed=spec.split.seed,
        )
    fair = None
    if spec.sensitive_features:

        def reports(model: Any) -> list[Any]:
            pred = hard_prediction(spec, model, X)
            kw = {}
            if spec.task == "binary" and classes is not None:
                kw["pos_label"] = classes[1]
            return [
                fairness.group_metrics(y_raw, pred, holdout[c].astype("str"), task=spec.task, **kw)
                for c in spec.sensitive_features
            ]

        champ_reports = reports(champion) if champion is not None else None
        fair = fairness.fairness_gate(
            champ_reports,
            reports(challenger),
            tolerance=spec.promotion.fairness_tolerance,
            max_gap=spec.promotion.fairness_max_gap,
        )
    shadow, waiting = None, None
    if spec.promotion.shadow_runs and comp is not None:  # no champion: nothing to shadow
        done = shadow_evidence.completed_runs(client, spec.name, resolved["challenger"])
        if len(done) >= spec.promotion.shadow_runs:
            labels = (
                read_labels(spec, store or Store(), sql_engine=sql_engine).frame
                if spec.row_key
                else None
            )
            shadow = shadow_evidence.gather(
                spec,
                client,
                resolved["challenger"],
                classes,
                done,
                s3_client=s3_client,
                labels=labels,
            )
        else:
            waiting = len(done)
    decision = promotion.decide(
        data_check_passed=checked["success"],
        data_check_summary=checked["summary"],
        floor_failures=floors,
        segment_floor_failures=segment_failures,
        comparison=comp,
        fairness=fair,
        overfit=overfit,
        shadow=shadow,
    )
    if waiting is not None and decision.promote and spec.promotion.shadow_runs:
        decision = promotion.wait_for_shadow(decision, waiting, spec.promotion.shadow_runs)
    validate_run = _validate_run(spec, ctx, tracking_uri)
    with tracking.resume(validate_run, tracking_uri):
        # linked to the challenger's logged model and the holdout: its MLflow 3 model page
        # shows the gate's numbers; the champion's number goes to the champion's page
        holdout_key = model_metrics.holdout_dataset(spec.name, resolved["holdout"]["sha256"])
        gate_numbers = {f"challenger_{k}": v for k, v in metrics.items()}
        if overfit is not None:
            gate_numbers.update(overfit.metrics())
        if comp is not None:
            iv = comp.interval
            gate_numbers.update(
                {
                    "improvement": iv.diff,
                    "improvement_ci_low": iv.low,
                    "improvement_ci_high": iv.high,
                }
            )
            model_metrics.log_model_metrics(
                client,
                validate_run,
                {"champion_" + iv.metric: iv.champion},
                model_id=model_metrics.version_model_id(
                    client, spec.name, str(resolved["champion"])
                ),
                dataset=holdout_key,
            )
            chart_url = comparison_chart.log_chart(
                y,
                out_champ,
                out_chall,
                comp,
                binary=spec.task == "binary",
                n_boot=spec.promotion.n_boot,
                seed=spec.split.seed,
                title=f"{spec.name}: challenger v{resolved['challenger']} "
                f"vs champion v{resolved['champion']}",
                run_id=validate_run,
                tracking_uri=tracking_uri,
            )
        if shadow is not None:
            gate_numbers.update(shadow.metrics())
        model_metrics.log_model_metrics(
            client,
            validate_run,
            gate_numbers,
            model_id=model_metrics.version_model_id(client, spec.name, resolved["challenger"]),
            dataset=holdout_key,
        )
        mlflow.log_dict(decision.evidence, card_mlflow.EVIDENCE_ARTIFACT)
        mlflow.set_tags(
            {
                f"{TAG_PREFIX}challenger_version": resolved["challenger"],
                f"{TAG_PREFIX}champion_version": str(resolved["champion"]),
                f"{TAG_PREFIX}decision": decision.evidence["decision"],
            }
        )
    gated: Gated = {
        "promote": decision.promote,
        "reasons": decision.reasons,
        "tags": decision.tags(),
        "message": decision.message(spec.name, resolved["challenger"])
        + (f"\nChampion vs challenger chart: {chart_url}" if chart_url else ""),
        "challenger": resolved["challenger"],
        "champion": resolved["champion"],
        "data_sha256": resolved["data_sha256"],
        "metrics": metrics,
    }
    if chart_url:
        gated["chart_url"] = chart_url
    if waiting is not None and decision.evidence["decision"] == "shadow":
        shadow_evidence.start_wait(client, spec, resolved["challenger"], waiting, decision.tags())
        gated["shadow_wait"] = True
    return gated


def promote_step(
    spec: ModelSpec, ctx: RunContext, gated: Gated, *, tracking_uri: str, approved_by: str
) -> Promoted:
    """Move `champion` to the challenger (compare-and-set); evidence as version tags."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    tags = {
        **gated["tags"],
        f"{TAG_PREFIX}approved_by": approved_by,
        f"{TAG_PREFIX}promoted_by": f"{ctx.dag_id}/{ctx.run_id}",
        f"{TAG_PREFIX}data_sha256": gated["data_sha256"],
    }
    move = registry.move_champion(
        client,
        spec.name,
        gated["challenger"],
        expected_champion=gated["champion"],
        tags=tags,
        owner=f"{ctx.dag_id}/{ctx.run_id} (promotion)",
    )
    if "rejected" in client.get_model_version(spec.name, gated["challenger"]).tags:
        client.delete_model_version_tag(spec.name, gated["challenger"], "rejected")
    shadow_evidence.end_wait(client, spec.name, gated["challenger"])
    card = write_model_card(
        spec,
        ctx,
        gated,
        promoted=True,
        reasons=gated["reasons"],
        approved_by=approved_by,
        tracking_uri=tracking_uri,
    )
    return {
        **move.to_dict(),
        "summary": gated["message"],
        "url": tracking.model_version_url(tracking_uri, spec.name, gated["challenger"]),
        "model_card": card,
    }


def reject_step(
    spec: ModelSpec,
    ctx: RunContext,
    gated: Gated,
    *,
    tracking_uri: str,
    extra_reasons: list[str] | None = None,
) -> Rejected:
    """Tag the challenger `rejected` with the reasons; aliases stay as they are."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    reasons = [*gated["reasons"], *(extra_reasons or [])]
    for key, value in gated["tags"].items():
        client.set_model_version_tag(spec.name, gated["challenger"], key, value)
    client.set_model_version_tag(
        spec.name, gated["challenger"], "rejected", json.dumps(reasons)[:5000]
    )
    shadow_evidence.end_wait(client, spec.name, gated["challenger"])
    card = write_model_card(
        spec,
        ctx,
        gated,
        promoted=False,
        reasons=reasons,
        approved_by=None,
        tracking_uri=tracking_uri,
    )
    return {
        "rejected": gated["challenger"],
        "reasons": reasons,
        "summary": gated["message"]
        if not extra_reasons
        else f"{gated['message']}\n" + "; ".join(extra_reasons),
        "url": tracking.model_version_url(tracking_uri, spec.name, gated["challenger"]),
        "model_card": card,
    }


def write_model_card(
    spec: ModelSpec,
    ctx: RunContext,
    gated: Gated,
    *,
    promoted: bool,
    reasons: list[str],
    approved_by: str | None,
    tracking_uri: str,
) -> str | None:
    """Log the challenger's model card to the validation run and link it from the version.

    Called once the outcome is recorded (alias moved, or `rejected` tagged). The card documents
    a decision already made, so a failure never raises: it is logged as a warning and recorded
    on the version (`airmlops.model_card_error`); the aliases and gate tags stay as they are,
    and a re-run of the task writes the card again.

    Returns:
        The HTML card's URI, or None when it could not be written.
    """
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    version = gated["challenger"]
    try:
        run_id = _validate_run(spec, ctx, tracking_uri)
        facts = card_mlflow.gather(
            client,
            spec,
            version,
            validate_run_id=run_id,
            outcome="promoted" if promoted else "rejected",
            reasons=reasons,
            metrics=gated["metrics"],
            champion_before=gated["champion"],
            approved_by=approved_by,
            tracking_uri=tracking_uri,
        )
        return card_mlflow.log_card(
            client, facts, validate_run_id=run_id, tracking_uri=tracking_uri
        )
    except Exception as exc:  # documentation only: never undo or block the decision
        log.warning("model card of %s version %s not written: %r", spec.name, version, exc)
        card_mlflow.record_failure(client, spec.name, version, exc)
        return None


def rollback_step(
    spec: ModelSpec, ctx: RunContext, *, target: str, reason: str, user: str, tracking_uri: str
) -> RolledBack:
    """Point `champion` at `target` (a version number or `previous_champion`), recording why."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri)
    current = registry.alias_version(client, spec.name, registry.CHAMPION)
    version = (
        registry.alias_version(client, spec.name, registry.PREVIOUS_CHAMPION)
        if target == registry.PREVIOUS_CHAMPION
        else str(target).strip()
    )
    if not version or not version.isdigit():
        raise GateError(f"rollback target '{target}' of {spec.name} does not name a version")
    client.get_model_version(spec.name, version)  # raises if the version does not exist
    try:  # a target the pack would refuse to load never becomes champion
        model_load.check_version(client, spec.name, version)
    except UnsafeModel as exc:
        raise UnsafeModel(f"rollback of {spec.name} to version {version} refused: {exc}") from exc
    if version == current:
        raise GateError(
            f"rollback of {spec.name}: version {version} is already the champion"
            + (
                " (previous_champion equals champion: a promotion stopped between "
                "its two alias moves; re-run that validate run first)"
                if target == registry.PREVIOUS_CHAMPION
                else ""
            )
        )
    tags = {
        f"{TAG_PREFIX}rollback_reason": reason[:5000],
        f"{TAG_PREFIX}rollback_by": user,
        f"{TAG_PREFIX}rollback_run": f"{ctx.dag_id}/{ctx.run_id}",
        f"{TAG_PREFIX}rollback_from": str(current),
    }
    move = registry.move_champion(
        client,
        spec.name,
        version,
        expected_champion=current,
        tags=tags,
        owner=f"{ctx.dag_id}/{ctx.run_id} (rollback by {user})",
    )
    return {
        **move.to_dict(),
        "url": tracking.model_version_url(tracking_uri, spec.name, version),
        "summary": f"{spec.name}: champion rolled back from version {current} to {version} "
        f"by {user}: {reason}",
    }
