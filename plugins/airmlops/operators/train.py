"""Operators of the train path: extract -> train -> evaluate -> register."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from airmlops.operators.base import ModelOperator

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from airmlops_core.train.flow import Evaluated, Registered, Trained, TrainRefs


class ExtractTrainingDataOperator(ModelOperator):
    """Extract the spec's training window and freeze a train/holdout split; returns refs."""

    def __init__(self, *, aws_conn_id: str = "aws_default", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.aws_conn_id = aws_conn_id

    def run(self, context: Context) -> TrainRefs:
        from airmlops_core.train import flow as train_flow

        src = self.spec.source
        s3_client = sql_engine = None
        if src.kind == "s3":
            from airflow.providers.amazon.aws.hooks.s3 import S3Hook

            s3_client = S3Hook(aws_conn_id=src.conn_id or self.aws_conn_id).get_conn()
        elif src.kind == "sql":
            from airflow.sdk import BaseHook

            assert src.conn_id is not None  # the spec requires it for kind sql
            sql_engine = BaseHook.get_connection(src.conn_id).get_hook().get_sqlalchemy_engine()
        return train_flow.extract_step(
            self.spec, self.run_context(context), s3_client=s3_client, sql_engine=sql_engine
        )


class ExtractRetrainingDataOperator(ExtractTrainingDataOperator):
    """The window rebuilt with labelled production data; skipped inside the cool-down.

    Says why it runs: the drift Asset event's reason, else "scheduled" or "manual".
    """

    def run(self, context: Context) -> TrainRefs:
        import datetime as dt
        import json

        from airflow.sdk import Variable
        from airflow.sdk.exceptions import AirflowSkipException

        from airmlops_core import retrain

        key = f"airmlops_retrain_{self.model_name}"
        now = dt.datetime.now(dt.UTC)
        previous = json.loads(Variable.get(key, default="{}"))
        last = previous.get("started_at")
        cooldown = dt.timedelta(hours=self.spec.retrain.cooldown_hours)
        retry = previous.get("run_id") == context["ti"].run_id  # this run's own earlier try
        if last and not retry and now - dt.datetime.fromisoformat(last) < cooldown:
            raise AirflowSkipException(
                f"{self.model_name} was retrained at {last}; cool-down "
                f"{self.spec.retrain.cooldown_hours:g} h"
            )
        reason = retrain_reason(context)
        if not retry:
            Variable.set(
                key,
                json.dumps(
                    {
                        "started_at": now.isoformat(timespec="seconds"),
                        "reason": reason,
                        "run_id": context["ti"].run_id,
                    }
                ),
            )
        self.log.info("retraining %s because: %s", self.model_name, reason)
        return retrain.retrain_extract_step(self.spec, self.run_context(context), reason=reason)


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
    run_type = str(getattr(context.get("dag_run"), "run_type", ""))
    return "scheduled" if "scheduled" in run_type else "manual"


class TrainModelOperator(ModelOperator):
    """Fit the spec's pipeline on the train file and log it to MLflow."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "refs")

    def __init__(self, *, refs: TrainRefs | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refs = cast("TrainRefs", refs)  # an XComArg is resolved before run

    def run(self, context: Context) -> Trained:
        from airmlops_core.train import flow as train_flow

        return train_flow.train_step(
            self.spec, self.run_context(context), self.refs, tracking_uri=self.tracking_uri()
        )


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
        )


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
