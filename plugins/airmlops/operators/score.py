"""Operators of the score path: resolve champion -> partitions -> score (mapped) -> publish."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk.exceptions import AirflowSkipException

from airmlops.operators.base import ModelOperator

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from airmlops.lineage import TaskLineage
    from airmlops_core.score.results import (
        PartitionResult,
        Published,
        ScoreResolved,
        ShadowPublished,
    )


class ScoringOperator(ModelOperator):
    """A score-path operator: knows how to reach S3 (spec.scoring.conn_id) when URIs need it."""

    def s3_client(self) -> Any:
        """The boto3 client of the model's data layer (`data_store`): None when none of its
        state (work files, scoring input and output, quarantine, labels) is on S3."""
        return self.data_store().s3_client

    @staticmethod
    def sql_engine(conn_id: str) -> Any:
        """A SQLAlchemy engine for an Airflow SQL connection."""
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(conn_id).get_hook().get_sqlalchemy_engine()


class ResolveChampionOperator(ScoringOperator):
    """Pin the champion's version for the whole run; fail at once if there is none yet."""

    def run(self, context: Context) -> ScoreResolved:
        from airmlops_core.score import flow as score_flow

        return score_flow.resolve_step(
            self.spec, self.run_context(context), tracking_uri=self.tracking_uri()
        )


def landed_inputs(context: Context) -> list[str]:
    """The `input` URIs announced by the landing Asset events that triggered this run."""
    return [
        str(event.extra["input"])
        for events in (context.get("triggering_asset_events") or {}).values()
        for event in events
        if (event.extra or {}).get("input")
    ]


class ListPartitionsOperator(ScoringOperator):
    """The partitions to score: DAG param `input`, else the landing events' `input`, else
    the spec's input; skips when there are none."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "input_uri")

    def __init__(self, *, input_uri: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.input_uri = input_uri

    def run(self, context: Context) -> list[str]:
        from airmlops_core.errors import NoPartitions
        from airmlops_core.score import flow as score_flow

        engine, landed = None, landed_inputs(context)
        if self.spec.scoring.query and self.spec.scoring.conn_id and not (self.input_uri or landed):
            engine = self.sql_engine(self.spec.scoring.conn_id)
        try:
            found = score_flow.partitions_step(
                self.spec,
                self.run_context(context),
                override=self.input_uri or None,
                landed=landed,
                s3_client=self.s3_client(),
                sql_engine=engine,
            )
        except NoPartitions as exc:  # nothing landed: nothing to do
            raise AirflowSkipException(str(exc)) from exc
        self.log.info("%d partition(s) to score: %s", len(found), found)
        return found


class ScorePartitionOperator(ScoringOperator):
    """Gate and score one partition (mapped: one task per partition), or quarantine it."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "partition", "resolved")

    def __init__(self, *, partition: str, resolved: ScoreResolved, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.partition = partition
        self.resolved = resolved

    def run(self, context: Context) -> PartitionResult:
        from airmlops_core.score import flow as score_flow

        return score_flow.score_step(
            self.spec,
            self.run_context(context),
            self.partition,
            self.resolved,
            tracking_uri=self.tracking_uri(),
            s3_client=self.s3_client(),
        )

    def lineage(self, result: PartitionResult) -> TaskLineage:
        """Read: the partition (with its hash) and the model version; wrote: its scores (with
        their hash), unless the partition was quarantined."""
        from airmlops import lineage

        inputs = [
            lineage.model_version_dataset(
                self.mlflow_namespace_uri(), result["model_name"], result["model_version"]
            )
        ]
        if result["input_uri"].startswith(("s3://", "/", "file:")):  # a SQL partition: no file
            inputs.append(
                lineage.file_dataset(
                    result["input_uri"], sha256=result["input_sha256"], rows=result["rows_in"]
                )
            )
        outputs = []
        if result["status"] == "scored" and result["output_uri"]:
            outputs.append(
                lineage.file_dataset(
                    result["output_uri"],
                    sha256=result["output_sha256"],
                    rows=result["rows_out"],
                )
            )
        return lineage.TaskLineage.of(inputs, outputs)


class PublishScoresOperator(ScoringOperator):
    """Manifest + MLflow lineage; emits the scored Asset; fails if a partition was quarantined."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "resolved", "results")

    def __init__(
        self,
        *,
        resolved: ScoreResolved | XComArg,
        results: Iterable[PartitionResult] | XComArg,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        # XComArgs are resolved before run (`results`: the mapped task's lazy sequence)
        self.resolved = cast("ScoreResolved", resolved)
        self.results = cast("Iterable[PartitionResult]", results)

    def run(self, context: Context) -> Published:
        from airmlops_core.score import flow as score_flow

        sink = self.spec.scoring.sink
        return score_flow.publish_step(
            self.spec,
            self.run_context(context),
            self.resolved,
            list(self.results),
            tracking_uri=self.tracking_uri(),
            s3_client=self.s3_client(),
            sql_engine=self.sql_engine(sink.conn_id) if sink else None,
        )

    def lineage(self, result: Published) -> TaskLineage:
        """Read: the model version; wrote: the run's manifest and the spec's sink table."""
        from airflow.sdk import BaseHook

        from airmlops import lineage

        outputs = [lineage.file_dataset(result["manifest_uri"])]
        sink = self.spec.scoring.sink
        if sink is not None:
            conn = BaseHook.get_connection(sink.conn_id)
            outputs.append(
                lineage.table_dataset(
                    conn.conn_type or "sql",
                    conn.host,
                    conn.port,
                    sink.table,
                    rows=int(result["totals"].get("rows_out", 0)),
                )
            )
        version = lineage.model_version_dataset(
            self.mlflow_namespace_uri(), self.model_name, result["version"]
        )
        return lineage.TaskLineage.of([version], outputs)


class ShadowHandoffOperator(ModelOperator):
    """Hand a shadowed challenger back to the gate: emits the candidate Asset when this run
    completed the `promotion.shadow_runs` the gate waits for; skipped otherwise (a skipped
    task emits no Asset event)."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "published")

    def __init__(self, *, published: Published | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.published = cast("Published", published)  # an XComArg is resolved before run

    def run(self, context: Context) -> ShadowPublished:
        shadow = self.published.get("shadow")
        if shadow is None:
            raise AirflowSkipException("no challenger is waiting in the shadow")
        if not shadow["ready"]:
            raise AirflowSkipException(
                f"version {shadow['version']}: {shadow['runs']} of {shadow['needed']} shadow "
                f"run(s) done ({shadow['status']} this run)"
            )
        self.log.info(
            "version %s completed %d shadow run(s): the gate decides again",
            shadow["version"],
            shadow["runs"],
        )
        return shadow
