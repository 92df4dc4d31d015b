"""Operators of the train path: extract -> train -> evaluate -> register."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from airmlops.operators.base import ModelOperator

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from airmlops.lineage import TaskLineage
    from airmlops_core.retrain import RetrainRecord
    from airmlops_core.train.flow import Evaluated, Registered, Trained, TrainRefs


class ExtractTrainingDataOperator(ModelOperator):
    """Extract the spec's training window and freeze a train/holdout split; returns refs."""

    def __init__(self, *, aws_conn_id: str = "aws_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id

    def run(self, context: Context) -> TrainRefs:
        from airmlops_core.train import flow as train_flow

        src = self.spec.source
        # the extract is written under the work URI, which may be on S3 even when the source
        # is not: the model's data layer, or the source's own AWS connection for an S3 source
        s3_client, sql_engine = self.data_store().s3_client, None
        if src.kind == "s3":
            from airmlops.hooks.data_store import store_for

            s3_client = store_for(src.conn_id or self.aws_conn_id).s3_client
        elif src.kind == "sql":
            from airflow.sdk import BaseHook

            assert src.conn_id is not None  # the spec requires it for kind sql
            sql_engine = BaseHook.get_connection(src.conn_id).get_hook().get_sqlalchemy_engine()
        return train_flow.extract_step(
            self.spec, self.run_context(context), s3_client=s3_client, sql_engine=sql_engine
        )

    def lineage(self, result: TrainRefs) -> TaskLineage:
        """Read: the spec's source file or object (a SQL source is a query, not named here);
        wrote: the frozen extract and its train and holdout splits, with their hashes."""
        from airmlops import lineage
        from airmlops_core import settings
        from airmlops_core.io import data

        src, inputs = self.spec.source, []
        if src.kind in ("file", "s3") and src.uri:
            inputs.append(lineage.file_dataset(data.resolve_uri(src.uri, settings.data_dir())))
        outputs = [lineage.data_ref_dataset(result[k]) for k in ("extract", "train", "holdout")]
        return lineage.TaskLineage.of(inputs, outputs)


class ExtractRetrainingDataOperator(ExtractTrainingDataOperator):
    """The window rebuilt with labelled production data; an automatic run (drift event or
    schedule) is skipped inside the cool-down after the last successful retrain, a manual one
    never is.

    Says why it runs: the drift Asset event's reason, else "scheduled" or "manual".
    """

    def run(self, context: Context) -> TrainRefs:
        import datetime as dt
        import json

        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowSkipException

        from airmlops_core import retrain

        previous = json.loads(Variable.get(retrain_variable(self.model_name), default="{}"))
        skip = retrain.cooldown_skip(
            self.spec,
            previous,
            now=dt.datetime.now(dt.UTC),
            run_id=context["ti"].run_id,
            started_by=started_by(context),
        )
        if skip:
            raise AirflowSkipException(skip)
        reason = retrain_reason(context)
        self.log.info("retraining %s because: %s", self.model_name, reason)
        store = self.data_store()
        return retrain.retrain_extract_step(
            self.spec,
            self.run_context(context),
            reason=reason,
            s3_client=store.s3_client,
            store=store,
            labels_engine=self.labels_engine(),
        )


class RecordRetrainOperator(ModelOperator):
    """The retrain DAG's last task: records the successful retrain, which starts the
    cool-down (Variable `airmlops_retrain_<model>`). A run that fails before it records
    nothing."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "refs", "registered")

    def __init__(
        self, *, refs: TrainRefs | XComArg, registered: Registered | XComArg, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        # XComArgs are resolved before run
        self.refs = cast("TrainRefs", refs)
        self.registered = cast("Registered", registered)

    def run(self, context: Context) -> RetrainRecord:
        import datetime as dt
        import json

        from airflow.sdk import Variable

        from airmlops_core import retrain

        record = retrain.retrain_record(
            now=dt.datetime.now(dt.UTC),
            run_id=context["ti"].run_id,
            reason=str(self.refs.get("reason") or retrain_reason(context)),
            version=str(self.registered["version"]),
        )
        Variable.set(retrain_variable(self.model_name), json.dumps(record))
        self.log.info("recorded the retrain of %s: %s", self.model_name, record)
        return record


def retrain_variable(model_name: str) -> str:
    """The Airflow Variable holding a model's last successful retrain (a RetrainRecord)."""
    return f"airmlops_retrain_{model_name}"


def run_type(context: Context) -> str:
    """The DagRunType value of this run ("manual", "scheduled", "asset_triggered", ...)."""
    value = getattr(context.get("dag_run"), "run_type", "")
    return str(getattr(value, "value", value))


def started_by(context: Context) -> str | None:
    """Who started this run by hand (the triggering user, or "manual" for a manual run without
    one); None for a run the schedule or an Asset event started."""
    user = getattr(context.get("dag_run"), "triggering_user_name", None)
    if user:
        return str(user)
    return "manual" if run_type(context) == "manual" else None


def retrain_reason(context: Context) -> str:
    """Why this retrain run exists: the drift event's reason, the schedule, or a person."""
    reasons = [
        str((event.extra or {}).get("reason"))
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        if (event.extra or {}).get("reason")
    ]
    if reasons:
        return "drift: " + "; ".join(reasons)
    if run_type(context) == "scheduled":
        return "scheduled"
    user = started_by(context)
    return f"manual ({user})" if user and user != "manual" else "manual"


class TrainModelOperator(ModelOperator):
    """Fit the spec's pipeline on the train file and log it to MLflow."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "refs")

    def __init__(self, *, refs: TrainRefs | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refs = cast("TrainRefs", refs)  # an XComArg is resolved before run

    def run(self, context: Context) -> Trained:
        from airmlops_core.train import flow as train_flow

        return train_flow.train_step(
            self.spec,
            self.run_context(context),
            self.refs,
            tracking_uri=self.tracking_uri(),
            s3_client=self.data_store().s3_client,  # the work files may be on S3
        )

    def lineage(self, result: Trained) -> TaskLineage:
        """Read: the frozen train split (with its hash)."""
        from airmlops import lineage

        return lineage.TaskLineage.of([lineage.data_ref_dataset(self.refs["train"])])


class EvaluateModelOperator(ModelOperator):
    """Compute build-time metrics and plots on the frozen holdout."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "refs", "trained")

    def __init__(
        self, *, refs: TrainRefs | XComArg, trained: Trained | XComArg, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        # XComArgs are resolved before run
        self.refs = cast("TrainRefs", refs)
        self.trained = cast("Trained", trained)

    def run(self, context: Context) -> Evaluated:
        from airmlops_core.train import flow as train_flow

        return train_flow.evaluate_step(
            self.spec,
            self.run_context(context),
            self.refs,
            self.trained,
            tracking_uri=self.tracking_uri(),
            s3_client=self.data_store().s3_client,
        )

    def lineage(self, result: Evaluated) -> TaskLineage:
        """Read: the frozen holdout (with its hash)."""
        from airmlops import lineage

        return lineage.TaskLineage.of([lineage.data_ref_dataset(self.refs["holdout"])])


class RegisterModelOperator(ModelOperator):
    """Register the model version (alias `challenger`) once per DAG run; emits the candidate."""

    template_fields: Sequence[str] = (
        *ModelOperator.template_fields,
        "refs",
        "trained",
        "evaluated",
    )

    def __init__(
        self,
        *,
        refs: TrainRefs | XComArg,
        trained: Trained | XComArg,
        evaluated: Evaluated | XComArg,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # XComArgs are resolved before run
        self.refs = cast("TrainRefs", refs)
        self.trained = cast("Trained", trained)
        self.evaluated = cast("Evaluated", evaluated)

    def run(self, context: Context) -> Registered:
        from airmlops_core.train import flow as train_flow

        out = train_flow.register_step(
            self.spec,
            self.run_context(context),
            self.refs,
            self.trained,
            self.evaluated,
            tracking_uri=self.tracking_uri(),
            spec_sha=self.spec_sha(),
        )
        metrics = ", ".join(f"{k}={v:.4f}" for k, v in sorted(out["metrics"].items()))
        out["summary"] = (
            f"{self.model_name} version {out['version']} registered as `challenger`: {metrics}"
        )
        return out

    def lineage(self, result: Registered) -> TaskLineage:
        """Read: the train and holdout splits (with their hashes); wrote: the model version."""
        from airmlops import lineage

        return lineage.TaskLineage.of(
            [lineage.data_ref_dataset(self.refs[k]) for k in ("train", "holdout")],
            [
                lineage.model_version_dataset(
                    self.mlflow_namespace_uri(), result["name"], result["version"]
                )
            ],
        )
