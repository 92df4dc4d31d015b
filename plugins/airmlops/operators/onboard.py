"""The onboarding operator: a model built elsewhere becomes the champion of an external spec."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airmlops.operators.base import ModelOperator

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airmlops.lineage import TaskLineage
    from airmlops_core.onboard import Onboarded


class OnboardModelOperator(ModelOperator):
    """Check a model built elsewhere on the spec's reference data, register it with its origin
    and make it champion (airmlops_core.onboard.onboard); returns the version and its metrics.

    `model_file` is a skops file on the worker inside the data directory (relative paths are
    relative to it); `model_uri` runs:/, models:/, or an MLflow model directory inside the data
    directory. A refused or unusable model fails the task at once, without retries, and
    registers nothing.
    """

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "model_uri", "model_file")

    def __init__(
        self,
        *,
        model_uri: str = "",
        model_file: str = "",
        aws_conn_id: str = "aws_default",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.model_uri = model_uri
        self.model_file = model_file
        self.aws_conn_id = aws_conn_id

    def run(self, context: Context) -> Onboarded:
        from airmlops_core import onboard

        uri = (self.model_uri or "").strip() or None
        # relative to the data directory; onboard refuses anything outside it (named)
        file = (self.model_file or "").strip() or None
        ref = self.spec.external.reference if self.spec.external else None
        s3_client = sql_engine = None
        if ref is not None and ref.kind == "s3":
            from airmlops.hooks.data_store import store_for

            s3_client = store_for(ref.conn_id or self.aws_conn_id).s3_client
        elif ref is not None and ref.kind == "sql":
            from airflow.sdk import BaseHook

            assert ref.conn_id is not None  # the spec requires it for kind sql
            sql_engine = BaseHook.get_connection(ref.conn_id).get_hook().get_sqlalchemy_engine()
        return onboard.onboard(
            self.spec,
            model_uri=uri,
            model_file=file,
            tracking_uri=self.tracking_uri(),
            ctx=self.run_context(context),
            spec_sha=self.spec_sha(),
            s3_client=s3_client,
            sql_engine=sql_engine,
        )

    def lineage(self, result: Onboarded) -> TaskLineage:
        """Wrote: the onboarded model version (now champion)."""
        from airmlops import lineage

        version = lineage.model_version_dataset(
            self.mlflow_namespace_uri(), result["name"], result["version"]
        )
        return lineage.TaskLineage.of(outputs=[version])
