"""A version's model card from MLflow: gather the facts, log the card, link it from the version.

The facts come from the spec, the version (tags, training run: inputs, params and the optional
`evaluation/permutation_importance.json`), the validation run (`gate/evidence.json`) and the
model's drift runs (`airmlops.purpose = drift`). Rendering is `validate.model_card` (no MLflow).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from airmlops_core.spec import ModelSpec
from airmlops_core.tracking import runs as tracking
from airmlops_core.tracking.runs import TAG_PREFIX
from airmlops_core.validate import model_card
from airmlops_core.validate.model_card import CardFacts, Dataset, DriftRun

log = logging.getLogger(__name__)

CARD_DIR = "model_card"
CARD_TAG = f"{TAG_PREFIX}model_card"
CARD_ERROR_TAG = f"{TAG_PREFIX}model_card_error"
EVIDENCE_ARTIFACT = "gate/evidence.json"
IMPORTANCE_ARTIFACT = "evaluation/permutation_importance.json"
DESCRIPTION_PREFIX = "Model card: "
DRIFT_RUNS_SHOWN = 10


def read_json_artifact(client: Any, run_id: str, path: str) -> Any | None:
    """A run's JSON artifact, or None when the run has no such file."""
    parent = path.rsplit("/", 1)[0] if "/" in path else None
    if path not in {f.path for f in client.list_artifacts(run_id, parent)}:
        return None
    return tracking.read_run_json(client, run_id, path)


def source_lines(spec: ModelSpec) -> list[str]:
    """Where the training data comes from, in words."""
    src = spec.source
    if src is None:
        return []
    if src.kind == "sql":
        return [f"SQL on connection {src.conn_id}: {src.query}"]
    conn = f", connection {src.conn_id}" if src.conn_id else ""
    return [f"{src.kind} {src.uri} ({src.resolved_format}{conn})"]


def window_text(spec: ModelSpec) -> str | None:
    """The spec's training window as `column in [start, end]` (open ends say so)."""
    w = spec.source.window if spec.source is not None else None
    if w is None:
        return None
    start = "any" if w.start is None else w.start
    end = "any" if w.end is None else w.end
    return f"{w.column} in [{start}, {end}]"


def _datasets(run: Any) -> list[Dataset]:
    out = []
    for di in run.inputs.dataset_inputs if run.inputs else []:
        tags = {t.key: t.value for t in di.tags}
        try:
            source = json.loads(di.dataset.source).get("uri", di.dataset.source)
        except (ValueError, AttributeError):
            source = di.dataset.source
        rows = tags.get("rows")
        out.append(
            Dataset(
                context=tags.get("mlflow.data.context", di.dataset.name),
                rows=int(rows) if rows and rows.lstrip("-").isdigit() else None,
                sha256=tags.get("sha256", di.dataset.digest),
                source=str(source),
            )
        )
    return out


def drift_runs(client: Any, spec: ModelSpec, tracking_uri: str) -> list[DriftRun]:
    """The model's latest drift checks, newest first."""
    exp = client.get_experiment_by_name(tracking.experiment_name(spec.name))
    if exp is None:
        return []
    found = client.search_runs(
        [exp.experiment_id],
        f"tags.`{TAG_PREFIX}purpose` = 'drift'",
        order_by=["attributes.start_time DESC"],
        max_results=DRIFT_RUNS_SHOWN,
    )
    out = []
    for run in found:
        started = dt.datetime.fromtimestamp(run.info.start_time / 1000, tz=dt.UTC)
        out.append(
            DriftRun(
                version=run.data.tags.get(f"{TAG_PREFIX}model_version", "?"),
                status=run.data.tags.get(f"{TAG_PREFIX}drift_status", "unknown"),
                started=started.strftime("%Y-%m-%d %H:%M UTC"),
                rows=run.data.metrics.get("window.rows"),
                n_drifted=run.data.metrics.get("drift.dataset.n_drifted"),
                url=tracking.run_url(tracking_uri, exp.experiment_id, run.info.run_id),
            )
        )
    return out


def gather(
    client: Any,
    spec: ModelSpec,
    version: str,
    *,
    validate_run_id: str,
    outcome: str,
    reasons: list[str],
    metrics: dict[str, float],
    champion_before: str | None,
    approved_by: str | None,
    tracking_uri: str,
) -> CardFacts:
    """The card's facts: the spec, the version and its training run, the gate, drift runs."""
    mv = client.get_model_version(spec.name, version)
    tags = mv.tags or {}
    train_run = client.get_run(mv.run_id) if mv.run_id else None
    importance, note = None, model_card.NOT_COMPUTED
    if train_run is not None:
        raw = read_json_artifact(client, mv.run_id, IMPORTANCE_ARTIFACT)
        try:
            importance = None if raw is None else model_card.read_importance(raw)
        except ValueError as exc:
            note = f"unreadable ({IMPORTANCE_ARTIFACT}: {exc})"
    retrain = tags.get(f"{TAG_PREFIX}retrain_reason")
    if retrain and train_run is not None:
        rows = train_run.data.tags.get(f"{TAG_PREFIX}retrain_rows")
        retrain += f" (rows: {rows})" if rows else ""
    links = {"model version": tracking.model_version_url(tracking_uri, spec.name, version)}
    for label, run in (
        ("training run", train_run),
        ("validation run", client.get_run(validate_run_id)),
    ):
        if run is not None:
            links[label] = tracking.run_url(tracking_uri, run.info.experiment_id, run.info.run_id)
    params = train_run.data.params if train_run is not None else {}
    return CardFacts(
        model=spec.name,
        version=version,
        outcome=outcome,
        reasons=reasons,
        owner=spec.card.owner or spec.owner,
        description=spec.description,
        intended_use=spec.card.intended_use,
        limitations=list(spec.card.limitations),
        approved_by=approved_by,
        champion_before=champion_before,
        task=spec.task,
        target=spec.target,
        features=spec.features.all,
        sensitive_features=list(spec.sensitive_features),
        segments=list(spec.promotion.segments),
        estimator=params.get("estimator") or (spec.estimator.class_path if spec.estimator else ""),
        sources=source_lines(spec),
        window=window_text(spec),
        retrain_reason=retrain,
        datasets=_datasets(train_run) if train_run is not None else [],
        data_sha256=tags.get(f"{TAG_PREFIX}data_sha256"),
        spec_sha=tags.get(f"{TAG_PREFIX}spec_sha"),
        metrics=dict(metrics),
        floors=dict(spec.metrics.floors),
        evidence=read_json_artifact(client, validate_run_id, EVIDENCE_ARTIFACT),
        importance=importance,
        importance_note=note,
        drift_runs=drift_runs(client, spec, tracking_uri),
        links=links,
    )


def log_card(client: Any, facts: CardFacts, *, validate_run_id: str, tracking_uri: str) -> str:
    """Log the card (Markdown and HTML) to the validation run and link it from the version.

    Returns:
        The HTML card's URI (`runs:/<validation run>/model_card/model_card.html`), also the
        version tag `airmlops.model_card`; the version description gets a `Model card:` line.
    """
    client.log_text(validate_run_id, model_card.to_markdown(facts), f"{CARD_DIR}/model_card.md")
    client.log_text(validate_run_id, model_card.to_html(facts), f"{CARD_DIR}/model_card.html")
    uri = f"runs:/{validate_run_id}/{CARD_DIR}/model_card.html"
    client.set_model_version_tag(facts.model, facts.version, CARD_TAG, uri)
    mv = client.get_model_version(facts.model, facts.version)
    if CARD_ERROR_TAG in (mv.tags or {}):
        client.delete_model_version_tag(facts.model, facts.version, CARD_ERROR_TAG)
    lines = [
        ln for ln in (mv.description or "").splitlines() if not ln.startswith(DESCRIPTION_PREFIX)
    ]
    run_link = facts.links.get("validation run", "")
    lines.append(
        f"{DESCRIPTION_PREFIX}{uri} ({run_link})" if run_link else DESCRIPTION_PREFIX + uri
    )
    client.update_model_version(facts.model, facts.version, description="\n".join(lines))
    return uri


def record_failure(client: Any, model: str, version: str, exc: BaseException) -> None:
    """Say on the version that its card is missing and why (best effort: logged if it fails)."""
    try:
        client.set_model_version_tag(
            model, version, CARD_ERROR_TAG, f"{type(exc).__name__}: {exc}"[:5000]
        )
    except Exception:  # the registry itself may be what failed
        log.warning("could not tag %s version %s with its card failure", model, version)
