"""Onboarding of a model built elsewhere, for monitoring only (a spec with `external:`).

`onboard` takes either a scikit-learn model file saved with skops (`model_file`) or an MLflow
model URI of a flavor the safety check accepts (`model_uri`: runs:/, models:/ of another
registered model, or an MLflow model directory under the data directory), and:

1. refuses anything that would run code when loaded (airmlops_core.tracking.model_safety, the
   check every load of the pack runs): pickles in any protocol or wrapper, skops files asking
   for a type outside the pack's exact allow-list, MLflow models whose flavor deserializes
   with pickle/cloudpickle or imports custom code; and anything from outside the data
   directory or the registry (`tracking.model_source`: `..`, symlinks, other URI schemes);
2. stages the model as an MLflow model directory (a skops file becomes an sklearn-flavor model
   with skops serialization, like the pack's own training logs it; a model without a
   signature gets one inferred from the reference data);
3. checks it on the spec's reference dataset exactly as the score DAG will run it
   (`score.model.load_local` + the signature checks): every column it reads is present, it
   predicts, a classifier gives class probabilities (binary: two classes) and knows every
   label value, a regressor gives numbers;
4. only then logs it to an `onboard` MLflow run of the model's experiment with the reference
   profile (features, labels and the model's predictions on the reference, exactly what the
   drift DAG reads) and the reference metrics (`metric.*`, what performance drift compares
   with), registers it as a version of the spec's model with origin tags, retry-safe (one
   version per idempotency key), and moves `champion` to it (compare-and-set).

A model built elsewhere has no promotion gate: the checks above are its only gate. Nothing is
registered when any check fails.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airmlops_core import errors, settings
from airmlops_core.errors import OnboardError
from airmlops_core.io import data, scored
from airmlops_core.io.window import extract
from airmlops_core.score.model import load_local
from airmlops_core.spec import ModelSpec
from airmlops_core.stats.profile import PROFILE_ARTIFACT
from airmlops_core.tracking import (
    model_digest,
    model_load,
    model_metrics,
    model_safety,
    model_source,
    registry,
)
from airmlops_core.tracking import runs as tracking
from airmlops_core.tracking.runs import TAG_PREFIX, RunContext
from airmlops_core.train import estimator as training
from airmlops_core.train import evaluation
from airmlops_core.train import flow as train_flow
from airmlops_core.train.example import synthetic_example
from airmlops_core.train.flow import run_dir_uri
from airmlops_core.train.reference import build_profile

log = logging.getLogger(__name__)

ONBOARD_PURPOSE = "onboard"
ORIGIN_TAG = f"{TAG_PREFIX}origin"
ORIGIN_DETAIL_TAG = f"{TAG_PREFIX}origin_detail"
SOURCE_URI_TAG = f"{TAG_PREFIX}source_uri"
EXTERNAL = "external"
REASON = "onboarded external model"


class Onboarded(registry.RegisteredDict):
    """The onboarded version, now champion, and what it came from (`onboard`)."""

    champion: str
    previous_champion: str | None
    url: str
    run_url: str
    metrics: dict[str, float]
    source: str
    sha256: str
    summary: str


@dataclass(frozen=True)
class Staged:
    """A model ready to log: a local MLflow model directory and what it came from."""

    path: Path
    source: str  # the URI or file path given
    sha256: str  # of the file, or of the staged directory's files
    detail: dict[str, str]  # extra version tags (flavors, trusted types, signature origin)


# --------------------------------------------------------------------------------------------
# Staging


def stage_file(spec: ModelSpec, model_file: str | Path, reference: Any, dest: Path) -> Staged:
    """A skops file as an sklearn-flavor MLflow model (skops serialization) in `dest`."""
    import mlflow.sklearn

    path = Path(model_file)
    where = str(path)
    if not path.is_file():
        raise OnboardError(f"{where}: no such model file")
    estimator, trusted = model_load.load_skops(path, where)
    if not hasattr(estimator, "predict"):
        raise OnboardError(f"{where}: {type(estimator).__name__} has no predict method")
    mismatch = training.task_mismatch(spec, estimator)
    if mismatch:
        raise OnboardError(f"{where}: {type(estimator).__name__} {mismatch}")
    if spec.is_classifier and not hasattr(estimator, "predict_proba"):
        raise OnboardError(
            f"{where}: {type(estimator).__name__} has no predict_proba: a "
            f"'{spec.task}' model must give class probabilities (drift of the "
            "predicted probabilities and ROC AUC need them)"
        )
    features = training.feature_frame(spec, reference)
    example = synthetic_example(features)  # never a row of the reference data
    signature = _signature(spec, estimator, features.head(5) if example is None else example, where)
    mlflow.sklearn.save_model(
        estimator,
        str(dest),
        signature=signature,
        input_example=example,
        pip_requirements=train_flow.pip_requirements(),
        serialization_format="skops",
        skops_trusted_types=trusted,
        pyfunc_predict_fn="predict_proba" if spec.is_classifier else "predict",
    )
    return Staged(
        dest,
        where,
        data.file_sha256(str(path)),
        {
            f"{TAG_PREFIX}flavors": "python_function,sklearn",
            f"{TAG_PREFIX}skops_trusted_types": ",".join(trusted)[:5000],
            f"{TAG_PREFIX}signature": "inferred from the reference dataset",
        },
    )


def _signature(spec: ModelSpec, estimator: Any, sample: Any, where: str) -> Any:
    from mlflow.models import infer_signature

    try:
        output = (
            estimator.predict_proba(sample) if spec.is_classifier else estimator.predict(sample)
        )
    except Exception as exc:  # noqa: BLE001 - the model's own error, named
        raise OnboardError(
            f"{where}: the model fails to predict on the reference dataset's "
            f"features {list(sample.columns)}: {type(exc).__name__}: "
            f"{exc}"
        ) from exc
    return infer_signature(sample, output)


def stage_uri(
    spec: ModelSpec, model_uri: str, reference: Any, dest: Path, *, tracking_uri: str
) -> Staged:
    """An MLflow model (any safe flavor) downloaded to `dest`; a missing signature is inferred
    from the reference data."""
    import mlflow.artifacts
    from mlflow.models import Model

    where = model_uri
    if not model_source.registry_uri(model_uri):
        local = model_source.confined_path(model_uri, settings.data_dir(), "model_uri")
        if not local.is_dir():
            raise OnboardError(
                f"{where}: neither an MLflow model directory nor a runs:/ or models:/ URI"
            )
        list(model_safety.plain_files(local, where))  # no symlink inside
        shutil.copytree(local, dest, symlinks=True)
    else:
        download = dest.parent / "download"
        try:
            got = mlflow.artifacts.download_artifacts(
                artifact_uri=model_uri, dst_path=str(download), tracking_uri=tracking_uri
            )
        except Exception as exc:  # noqa: BLE001 - not found, no access: named
            raise OnboardError(f"{where}: cannot download the model: {exc}") from exc
        if not Path(got).is_dir():
            raise OnboardError(f"{where}: is a single file, not an MLflow model directory")
        shutil.copytree(got, dest, symlinks=True)
    checked = model_safety.check_model_dir(dest, where)
    detail = {f"{TAG_PREFIX}flavors": ",".join(checked.flavors)[:5000]}
    meta = Model.load(str(dest))
    if meta.signature is None:
        from mlflow.models import infer_signature

        sample = training.feature_frame(spec, reference).head(5)
        meta.signature = infer_signature(sample)
        meta.save(str(dest / "MLmodel"))
        detail[f"{TAG_PREFIX}signature"] = "inferred from the reference dataset"
    else:
        detail[f"{TAG_PREFIX}signature"] = "logged with the model"
    return Staged(dest, where, model_digest.dir_sha256(dest), detail)


# --------------------------------------------------------------------------------------------
# Checking on the reference data


def reference_location(spec: ModelSpec) -> str:
    """Where the spec's reference dataset is: its uri, or its SQL query's first line."""
    assert spec.external is not None
    ref = spec.external.reference
    return ref.uri or f"sql ({ref.conn_id}): {(ref.query or '').strip().splitlines()[0][:200]}"


def read_reference(
    spec: ModelSpec, dest_uri: str, *, s3_client: Any = None, sql_engine: Any = None
) -> Any:
    """The reference dataset (row key, features, label, sensitive columns), extracted to
    `dest_uri` (a scratch file) and read back."""
    assert spec.external is not None
    ref = spec.external.reference
    window = (ref.window.column, ref.window.start, ref.window.end) if ref.window else None
    where = reference_location(spec)
    try:
        frozen = extract(
            kind=ref.kind,
            uri=ref.uri,
            query=ref.query,
            format=ref.format,
            columns=spec.columns,
            dest_uri=dest_uri,
            window=window,
            base_dir=settings.data_dir(),
            s3_client=s3_client,
            sql_engine=sql_engine,
        )
        frame = data.read_ref(frozen, s3_client=s3_client)
    except errors.DataError as exc:
        raise OnboardError(f"reference dataset {where}: {exc}") from exc
    if frame[spec.target].isna().any():
        raise OnboardError(
            f"reference dataset {where}: label '{spec.target}' has "
            f"{int(frame[spec.target].isna().sum())} missing value(s); the "
            "reference must be labelled (performance drift compares with it)"
        )
    return frame


def check_on_reference(
    spec: ModelSpec, staged: Staged, reference: Any
) -> tuple[Any, dict[str, float]]:
    """Run the staged model on the reference exactly as the score DAG will.

    Returns:
        (prediction frame as the score DAG writes it, reference metrics).
    """
    import numpy as np
    import pandas as pd
    import pyarrow as pa

    where = staged.source
    try:
        model = load_local(staged.path, spec.name, "onboarding")
    except errors.ModelLoadError as exc:
        raise OnboardError(f"{where}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the flavor's own loading error
        raise OnboardError(f"{where}: cannot be loaded: {type(exc).__name__}: {exc}") from exc
    features = set(spec.features.all)
    outside = [c.name for c in model.inputs if c.name not in features]
    if outside:
        raise OnboardError(
            f"{where}: the model reads column(s) {outside} that the spec does "
            "not list as features; add them to features (drift and the batch "
            "checks watch the spec's features)"
        )
    table = pa.Table.from_pandas(reference, preserve_index=False)
    source = f"reference dataset for {where}"
    try:
        X = model.features(table, source)
        pred, proba = model.predict(X)
    except errors.ScoringError as exc:
        raise OnboardError(str(exc)) from exc
    except Exception as exc:  # noqa: BLE001 - the model's own error, named
        raise OnboardError(
            f"{where}: the model fails to predict on the reference dataset: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    y = reference[spec.target].to_numpy()
    if spec.is_classifier:
        if proba is None or model.classes is None:
            raise OnboardError(
                f"{where}: gives no class probabilities: a '{spec.task}' model "
                "must (sklearn: predict_proba; other flavors: one output "
                "column per class)"
            )
        classes = np.asarray(model.classes)
        if spec.task == "binary" and len(classes) != 2:
            raise OnboardError(
                f"{where}: has {len(classes)} classes {classes.tolist()}, task 'binary' needs 2"
            )
        unknown = sorted({str(v) for v in np.unique(y)} - {str(c) for c in classes})
        if unknown:
            raise OnboardError(
                f"{where}: label values {unknown} of '{spec.target}' in the "
                f"reference dataset are not classes of the model "
                f"({classes.tolist()})"
            )
        by_str = {str(c): c for c in classes}
        y_model = np.asarray([by_str[str(v)] for v in y])
        metrics = evaluation.classification_metrics(y_model, proba, classes)
        out = pd.DataFrame(proba, columns=model.proba_columns)
        out[scored.PREDICTION] = pred
    else:
        if model.is_classifier:
            raise OnboardError(f"{where}: gives class probabilities, task is 'regression'")
        if not np.isfinite(pred).all():
            raise OnboardError(f"{where}: predicts non-finite values on the reference dataset")
        metrics = evaluation.regression_metrics(y, pred)
        out = pd.DataFrame({scored.PREDICTION: pred})
    return out, metrics


# --------------------------------------------------------------------------------------------
# Onboarding


def default_context(spec: ModelSpec, key: str) -> RunContext:
    """The run context of an onboarding outside Airflow (the CLI): one per model content, so
    onboarding the same model again finds its earlier run and version."""
    return RunContext(
        model=spec.name, dag_id="airmlops-cli", run_id=f"onboard-{key[:16]}", task_id="onboard"
    )


def logged_model(client: Any, spec: ModelSpec, run_id: str, model_dir: Path) -> str:
    """The onboarding run's logged model holding the checked files of `model_dir`; a retried
    task finds the one its run already made (READY) instead of making another."""
    from mlflow.entities import LoggedModelStatus

    exp_id = tracking.experiment_id(client, tracking.experiment_name(spec.name))
    for found in client.search_logged_models([exp_id], filter_string=f"source_run_id = '{run_id}'"):
        if found.status == LoggedModelStatus.READY:
            return str(found.model_id)
    made = client.create_logged_model(
        exp_id, name="model", source_run_id=run_id, tags={ORIGIN_TAG: EXTERNAL}
    )
    client.log_model_artifacts(made.model_id, str(model_dir))
    client.finalize_logged_model(made.model_id, LoggedModelStatus.READY)
    return str(made.model_id)


def onboard(
    spec: ModelSpec,
    *,
    model_uri: str | None = None,
    model_file: str | Path | None = None,
    tracking_uri: str,
    ctx: RunContext | None = None,
    spec_sha: str = "",
    s3_client: Any = None,
    sql_engine: Any = None,
) -> Onboarded:
    """Check, log, register and crown a model built elsewhere (see the module docstring).

    Args:
        spec: a spec with an `external:` section.
        model_uri: an MLflow model: runs:/..., models:/<other>/<version or @alias>, or a
            local MLflow model directory under the data directory. Exactly one of model_uri
            and model_file.
        model_file: a scikit-learn model saved with skops (.skops), inside the data directory
            (relative paths are relative to it).
        tracking_uri: the MLflow server.
        ctx: the Airflow task's context (its dag_id/run_id make the idempotency key); None:
            the CLI's, keyed on the model's content.
        spec_sha: the spec file's hash, recorded on the version.

    Returns:
        The registered version, now champion, with its metrics and source (`Onboarded`).

    Raises:
        OnboardError: bad input, naming the file or URI; nothing was registered.
        UnsafeModel: refused by the model-safety check or the source rules, named; nothing
            was deserialized or registered.
    """
    import mlflow
    from mlflow import MlflowClient

    if not spec.is_external or spec.external is None:
        raise OnboardError(
            f"{spec.name}: the spec has no `external:` section; onboarding is "
            "for models built elsewhere (see docs/external-models.md)"
        )
    model_uri = model_uri or None
    model_file = model_file or None
    if (model_uri is None) == (model_file is None):
        raise OnboardError(f"{spec.name}: give exactly one of model_uri and model_file")
    if model_file is not None:
        model_file = model_source.confined_path(model_file, settings.data_dir())
    with tempfile.TemporaryDirectory(prefix="airmlops-onboard-") as scratch_dir:
        tmp = Path(scratch_dir)
        scratch = data.join_uri(str(tmp), "reference.parquet")
        reference = read_reference(spec, scratch, s3_client=s3_client, sql_engine=sql_engine)
        dest = tmp / "model"
        staged = (
            stage_file(spec, model_file, reference, dest)
            if model_file
            else stage_uri(spec, str(model_uri), reference, dest, tracking_uri=tracking_uri)
        )
        predictions, metrics = check_on_reference(spec, staged, reference)
        profile = build_profile(spec, reference, predictions)
        # every check passed: from here on, log and register
        ctx = ctx or default_context(spec, staged.sha256)
        key = f"{ctx.dag_id}/{ctx.run_id}"
        client = MlflowClient(tracking_uri)
        mlflow.set_tracking_uri(tracking_uri)
        run_id = tracking.model_run(client, spec.name, ctx, ONBOARD_PURPOSE)
        ref_copy = data.write_frame(
            reference,
            data.join_uri(run_dir_uri(settings.work_uri(), ctx), "reference.parquet"),
            s3_client=s3_client,
        )
        source_tag = f"{staged.source} sha256:{staged.sha256}" if model_file else staged.source
        # an MLflow 3 logged model: the checked files are uploaded as they are (never loaded
        # here), and the reference metrics show on its model page
        model_id = logged_model(client, spec, run_id, staged.path)
        with tracking.resume(run_id, tracking_uri):
            path = profile.save(tmp / PROFILE_ARTIFACT)
            mlflow.log_artifact(str(path), artifact_path="monitoring")
            model_metrics.log_model_metrics(
                client,
                run_id,
                {f"reference_{k}": v for k, v in metrics.items()},
                model_id=model_id,
                dataset=model_metrics.DatasetKey(f"{spec.name}-reference", ref_copy.sha256[:16]),
            )
            mlflow.log_params(
                {
                    "origin": spec.external.origin[:500],
                    "source": staged.source[:500],
                    "reference_rows": len(reference),
                    "reference_sha256": ref_copy.sha256,
                }
            )
            mlflow.log_dict(
                {
                    "source": staged.source,
                    "sha256": staged.sha256,
                    "reference": {
                        "uri": ref_copy.uri,
                        "sha256": ref_copy.sha256,
                        "source": reference_location(spec),
                        "rows": len(reference),
                    },
                    "metrics": metrics,
                    **staged.detail,
                },
                "onboarding.json",
            )
        tags = {
            **ctx.tags(),
            **staged.detail,
            ORIGIN_TAG: EXTERNAL,
            ORIGIN_DETAIL_TAG: spec.external.origin[:5000],
            SOURCE_URI_TAG: source_tag[:5000],
            f"{TAG_PREFIX}source_sha256": staged.sha256,
            f"{TAG_PREFIX}mlflow_run_id": run_id,
            f"{TAG_PREFIX}reference_uri": ref_copy.uri,
            f"{TAG_PREFIX}reference_sha256": ref_copy.sha256,
            f"{TAG_PREFIX}spec_sha": spec_sha,
            f"{TAG_PREFIX}gate": "none: monitoring only (signature and reference checks)",
            **{f"metric.{k}": f"{v:.6g}" for k, v in metrics.items()},
        }
        reg = registry.register_version(
            client,
            spec.name,
            f"models:/{model_id}",
            run_id=run_id,
            idempotency_key=key,
            tags=tags,
            alias=None,
            description=f"Built elsewhere ({spec.external.origin}); onboarded from "
            f"{staged.source} by {ctx.dag_id} run {ctx.run_id}",
        )
    expected = registry.alias_version(client, spec.name, registry.CHAMPION)
    moved = registry.move_champion(
        client,
        spec.name,
        reg.version,
        expected_champion=expected,
        owner=f"{ctx.dag_id}/{ctx.run_id} (onboarding)",
        tags={
            f"{TAG_PREFIX}promoted_by": f"{ctx.dag_id}/{ctx.run_id}",
            f"{TAG_PREFIX}approved_by": f"no gate ({REASON}: monitoring only)",
            f"{TAG_PREFIX}promotion_reason": REASON,
        },
    )
    client.set_terminated(run_id, status="FINISHED")
    exp_id = tracking.experiment_id(client, tracking.experiment_name(spec.name))
    log.info(
        "onboarded %s from %s as version %s (champion; previous %s)",
        spec.name,
        staged.source,
        reg.version,
        moved.previous_champion,
    )
    return {
        **reg.to_dict(),
        "champion": moved.champion,
        "previous_champion": moved.previous_champion,
        "url": tracking.model_version_url(tracking_uri, spec.name, reg.version),
        "run_url": tracking.run_url(tracking_uri, exp_id, run_id),
        "metrics": metrics,
        "source": staged.source,
        "sha256": staged.sha256,
        "summary": f"*{spec.name}* version {reg.version} onboarded from {staged.source} "
        f"({spec.external.origin}) and made champion; reference "
        + ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())),
    }
