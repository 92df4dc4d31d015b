"""The train path, step by step: extract -> check data -> fit -> evaluate -> register.

Each step takes and returns small JSON-able dicts (references, ids, metrics), so any
orchestrator (Airflow tasks, a CLI, a test) can run it, and every step is idempotent.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any, Literal, NotRequired, TypedDict

from airmlops_core import settings
from airmlops_core.errors import DataCheckFailed
from airmlops_core.io import data
from airmlops_core.io.data import DataRefDict
from airmlops_core.io.window import extract, split_frame
from airmlops_core.quality import check, evidence
from airmlops_core.quality.evidence import quarantine_uri
from airmlops_core.quality.report import log_check
from airmlops_core.quality.suite import suite_for
from airmlops_core.spec import ModelSpec
from airmlops_core.tracking import model_digest, model_load, model_metrics, registry, resources
from airmlops_core.tracking import runs as tracking
from airmlops_core.tracking.runs import TAG_PREFIX, RunContext
from airmlops_core.train import estimator as training
from airmlops_core.train import evaluation, importance, reference, search
from airmlops_core.train.example import synthetic_example

log = logging.getLogger(__name__)

TRAIN_PURPOSE = "train"
MODEL_ARTIFACT = "model"
PINNED_PACKAGES = ("scikit-learn", "skops", "pandas", "numpy", "scipy", "pyarrow")


class TrainRefs(TypedDict):
    """The frozen files of a run (`extract_step`); a retrain run adds why and its row counts."""

    extract: DataRefDict
    train: DataRefDict
    holdout: DataRefDict
    reason: NotRequired[str]
    rows: NotRequired[dict[str, int]]


class DataChecked(TypedDict):
    """The training window passed its suite (`check_training_data_step`)."""

    success: bool
    warnings: int
    summary: str


class Trained(TypedDict):
    """The fitted model's MLflow run (`train_step`)."""

    mlflow_run_id: str
    experiment_id: str
    model_uri: str
    run_url: str
    model_id: NotRequired[str]  # the MLflow 3 logged model (older XComs lack it)


class Evaluated(TypedDict):
    """Holdout metrics and the floors they miss (`evaluate_step`)."""

    metrics: dict[str, float]
    floor_failures: list[str]


class Registered(registry.RegisteredDict):
    """The new `challenger` version (`register_step`); the operator adds a `summary`."""

    alias: str
    url: str
    run_url: str
    metrics: dict[str, float]
    summary: NotRequired[str]


def run_dir_uri(work_uri: str, ctx: RunContext) -> str:
    """Where this DAG run's intermediate files go: <work>/<model>/<dag_id>/<safe run id>."""
    safe = data.safe_segment(ctx.run_id)
    return data.join_uri(work_uri, ctx.model, ctx.dag_id, safe)


def extract_step(
    spec: ModelSpec,
    ctx: RunContext,
    *,
    work_uri: str | None = None,
    s3_client: Any = None,
    sql_engine: Any = None,
) -> TrainRefs:
    """Extract the training window and split it into frozen train and holdout files."""
    work = work_uri or settings.work_uri()
    out = run_dir_uri(work, ctx)
    window = None
    if spec.source.window:
        w = spec.source.window
        window = (w.column, w.start, w.end)
    wanted = spec.columns + (
        [spec.source.window.column]
        if spec.source.window and spec.source.window.column not in spec.columns
        else []
    )
    extract_ref = extract(
        kind=spec.source.kind,
        uri=spec.source.uri,
        query=spec.source.query,
        format=spec.source.format,
        columns=wanted,
        dest_uri=data.join_uri(out, "extract.parquet"),
        window=window,
        base_dir=settings.data_dir(),
        s3_client=s3_client,
        sql_engine=sql_engine,
    )
    return freeze_split(spec, extract_ref, out, s3_client=s3_client)


def freeze_split(
    spec: ModelSpec, extract_ref: data.DataRef, out: str, *, s3_client: Any = None
) -> TrainRefs:
    """Split the extracted table into frozen train and holdout files under `out`."""
    frame = data.read_ref(extract_ref, s3_client=s3_client)
    train, holdout = split_frame(
        frame,
        test_size=spec.split.test_size,
        seed=spec.split.seed,
        stratify_on=spec.target if spec.stratify else None,
        key=spec.row_key,
    )
    train_ref = data.write_frame(train, data.join_uri(out, "train.parquet"), s3_client=s3_client)
    holdout_ref = data.write_frame(
        holdout, data.join_uri(out, "holdout.parquet"), s3_client=s3_client
    )
    log.info(
        "extracted %d rows -> train %d, holdout %d",
        extract_ref.rows,
        train_ref.rows,
        holdout_ref.rows,
    )
    return {
        "extract": extract_ref.to_dict(),
        "train": train_ref.to_dict(),
        "holdout": holdout_ref.to_dict(),
    }


def check_training_data_step(
    spec: ModelSpec,
    ctx: RunContext,
    refs: TrainRefs,
    *,
    tracking_uri: str,
    s3_client: Any = None,
) -> DataChecked:
    """Fail closed: the extracted training window must pass the suite before anything trains.

    Raises:
        DataCheckFailed: naming the failed expectations; the batch is quarantined first.
    """
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    ref = data.DataRef.from_dict(refs["extract"])
    frame = data.read_ref(ref, s3_client=s3_client)
    result = check.validate(frame, suite_for(spec))
    run_id = tracking.model_run(MlflowClient(tracking_uri), spec.name, ctx, TRAIN_PURPOSE)
    with tracking.resume(run_id, tracking_uri):
        log_check(result, "training_data", tag_prefix=TAG_PREFIX)
    if not result.success:
        where = evidence.quarantine(
            frame, ref.uri, result, quarantine_uri(spec, ctx), s3_client=s3_client
        )
        MlflowClient(tracking_uri).set_terminated(run_id, status="FAILED")
        raise DataCheckFailed(
            f"{spec.name}: training data failed its checks; quarantined at "
            f"{where['uri']}.\n{result.summary()}"
        )
    return {"success": True, "warnings": len(result.warnings), "summary": result.summary()}


def pip_requirements(spec: ModelSpec | None = None) -> list[str]:
    """Exact pins of what the logged model needs to load: no slow inference by MLflow."""
    from importlib.metadata import version

    import mlflow

    packages = [*PINNED_PACKAGES, *(["imbalanced-learn"] if spec and spec.rebalance else [])]
    return [f"mlflow=={mlflow.__version__}", *(f"{p}=={version(p)}" for p in packages)]


def train_step(
    spec: ModelSpec,
    ctx: RunContext,
    refs: TrainRefs,
    *,
    tracking_uri: str,
    s3_client: Any = None,
) -> Trained:
    """Fit the pipeline on the train file and log it (params, inputs, model) to the run."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    train_ref = data.DataRef.from_dict(refs["train"])
    train = data.read_ref(train_ref, s3_client=s3_client)
    run_id = tracking.model_run(client, spec.name, ctx, TRAIN_PURPOSE)
    found = None
    with resources.measure() as usage:
        if spec.estimator.search is not None:  # the best candidate, refitted on all rows
            found = search.run_search(spec, train)
            pipeline = found.model
        else:
            pipeline = training.fit(spec, train)
    usage.rows = len(train)
    X = training.feature_frame(spec, train)
    with tracking.resume(run_id, tracking_uri):
        mlflow.log_metrics(usage.metrics("train."))
        if refs.get("reason"):  # a retrain run says why it ran
            mlflow.set_tags(
                {
                    f"{TAG_PREFIX}retrain_reason": str(refs["reason"])[:5000],
                    f"{TAG_PREFIX}retrain_rows": json.dumps(refs.get("rows", {})),
                }
            )
        mlflow.log_params(
            {
                "estimator": spec.estimator.class_path,
                **{f"estimator.{k}": v for k, v in spec.estimator.params.items()},
                "test_size": spec.split.test_size,
                "seed": spec.split.seed,
                "n_train_rows": len(train),
                "n_features": X.shape[1],
            }
        )
        _log_inputs(spec, refs, train)
        if found is not None:
            search.log_search(client, run_id, ctx, found)
        if spec.is_classifier:
            balance = training.class_balance(spec, pipeline, train)
            mlflow.log_dict(balance, "class_balance.json")
            mlflow.log_metrics(
                {
                    f"train_class_{stage}.{label}": n
                    for stage, counts in balance.items()
                    for label, n in counts.items()
                }
            )
        # the logged example is synthetic (training rows may be personal data); without one,
        # the signature's types are read from a few training rows, which are not stored
        example = synthetic_example(X)
        sample = example if example is not None else X.head(5)
        output = pipeline.predict_proba(sample) if spec.is_classifier else pipeline.predict(sample)
        info = mlflow.sklearn.log_model(
            pipeline,
            name=MODEL_ARTIFACT,
            signature=infer_signature(sample, output),
            input_example=example,
            pip_requirements=pip_requirements(spec),
            serialization_format="skops",
            skops_trusted_types=training.trusted_types(pipeline),
            pyfunc_predict_fn="predict_proba" if spec.is_classifier else "predict",
        )
    exp_id = tracking.experiment_id(client, tracking.experiment_name(spec.name))
    return {
        "mlflow_run_id": run_id,
        "experiment_id": exp_id,
        "model_uri": info.model_uri,
        "run_url": tracking.run_url(tracking_uri, exp_id, run_id),
        "model_id": info.model_id,
    }


def _log_inputs(spec: ModelSpec, refs: TrainRefs, train: Any) -> None:
    """Record the train and holdout files as MLflow dataset inputs, digests included."""
    import mlflow
    from mlflow.data.pandas_dataset import from_pandas

    inputs: tuple[tuple[str, Literal["train", "holdout"]], ...] = (
        ("training", "train"),
        ("holdout", "holdout"),
    )
    for context, key in inputs:
        ref = data.DataRef.from_dict(refs[key])
        # the holdout has the train file's schema; its digest is the file's own hash
        ds = from_pandas(
            train.head(0) if key != "train" else train,
            source=ref.uri,
            targets=spec.target,
            name=f"{spec.name}-{key}",
            digest=ref.sha256[:16],
        )
        mlflow.log_input(ds, context=context, tags={"sha256": ref.sha256, "rows": str(ref.rows)})


def evaluate_step(
    spec: ModelSpec,
    ctx: RunContext,
    refs: TrainRefs,
    trained: Trained,
    *,
    tracking_uri: str,
    s3_client: Any = None,
) -> Evaluated:
    """Score the holdout, log metrics, plots and the permutation importance table to the
    training run (build-time validation)."""
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    holdout = data.read_ref(data.DataRef.from_dict(refs["holdout"]), s3_client=s3_client)
    model = model_load.load_uri(trained["model_uri"], tracking_uri).native
    metrics = evaluation.evaluate(spec, model, holdout)
    failures = evaluation.floor_failures(spec, metrics)
    with tracking.resume(trained["mlflow_run_id"], tracking_uri):
        # on the logged model's page too, measured on the frozen holdout
        model_metrics.log_model_metrics(
            MlflowClient(tracking_uri),
            trained["mlflow_run_id"],
            {f"holdout_{k}": v for k, v in metrics.items()},
            model_id=trained.get("model_id"),
            dataset=model_metrics.holdout_dataset(spec.name, refs["holdout"]["sha256"]),
        )
        mlflow.set_tag(f"{TAG_PREFIX}floors", "pass" if not failures else "; ".join(failures))
        with tempfile.TemporaryDirectory() as tmp:
            for path in evaluation.plots(spec, model, holdout, Path(tmp)):
                mlflow.log_artifact(str(path), artifact_path="plots")
            table = importance.permutation_table(spec, model, holdout, seed=spec.split.seed)
            mlflow.log_dict(dict(table), importance.IMPORTANCE_ARTIFACT)
            chart = importance.plot(table, spec.name, Path(tmp))
            mlflow.log_artifact(str(chart), artifact_path="plots")
        # the drift reference travels with the version: training data + holdout output
        train = data.read_ref(data.DataRef.from_dict(refs["train"]), s3_client=s3_client)
        reference.log_reference(spec, model, train, holdout)
    return {"metrics": metrics, "floor_failures": failures}


def logged_model_digest(model_uri: str, tracking_uri: str) -> str:
    """The digest of the model files as logged (`model_digest.dir_sha256`): what a deploy to
    another environment verifies."""
    import mlflow.artifacts

    with tempfile.TemporaryDirectory(prefix="airmlops-digest-") as tmp:
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=model_uri, dst_path=tmp, tracking_uri=tracking_uri
        )
        return model_digest.dir_sha256(local)


def register_step(
    spec: ModelSpec,
    ctx: RunContext,
    refs: TrainRefs,
    trained: Trained,
    evaluated: Evaluated,
    *,
    tracking_uri: str,
    spec_sha: str,
) -> Registered:
    """Register the model as a new version with alias `challenger` and lineage tags.

    Idempotent per DAG run: a retry finds the version it made before.
    """
    import mlflow
    from mlflow import MlflowClient

    mlflow.set_tracking_uri(tracking_uri)
    client = MlflowClient(tracking_uri)
    metrics = evaluated["metrics"]
    tags = {
        **ctx.tags(),
        f"{TAG_PREFIX}mlflow_run_id": trained["mlflow_run_id"],
        f"{TAG_PREFIX}data_sha256": refs["extract"]["sha256"],
        f"{TAG_PREFIX}train_sha256": refs["train"]["sha256"],
        f"{TAG_PREFIX}train_uri": refs["train"]["uri"],
        f"{TAG_PREFIX}holdout_sha256": refs["holdout"]["sha256"],
        f"{TAG_PREFIX}holdout_uri": refs["holdout"]["uri"],
        f"{TAG_PREFIX}spec_sha": spec_sha,
        **(
            {f"{TAG_PREFIX}retrain_reason": str(refs["reason"])[:5000]}
            if refs.get("reason")
            else {}
        ),
        f"{TAG_PREFIX}floors": "pass" if not evaluated["floor_failures"] else "fail",
        **{f"metric.{k}": f"{v:.6g}" for k, v in metrics.items()},
        model_digest.DIGEST_TAG: logged_model_digest(trained["model_uri"], tracking_uri),
    }
    reg = registry.register_version(
        client,
        spec.name,
        trained["model_uri"],
        run_id=trained["mlflow_run_id"],
        idempotency_key=f"{ctx.dag_id}/{ctx.run_id}",
        tags=tags,
        description=f"{spec.estimator.class_path} trained by {ctx.dag_id} run {ctx.run_id}",
    )
    client.set_terminated(trained["mlflow_run_id"], status="FINISHED")
    return {
        **reg.to_dict(),
        "alias": registry.CHALLENGER,
        "url": tracking.model_version_url(tracking_uri, spec.name, reg.version),
        "run_url": trained["run_url"],
        "metrics": metrics,
    }
