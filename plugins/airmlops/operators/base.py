"""The base class shared by the pack's model operators."""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airmlops.extra_links import MlflowModelVersionLink, MlflowRunLink
from airmlops.hooks.mlflow_hook import MlflowHook

if TYPE_CHECKING:
    from airflow.sdk import Context

    from airmlops.lineage import TaskLineage
    from airmlops_core.io.store import Store
    from airmlops_core.spec import ModelSpec
    from airmlops_core.tracking.runs import RunContext


class ModelOperator(BaseOperator):
    """Works on one model spec; knows the MLflow connection and how to build a RunContext.

    Bad input (an invalid spec, unreadable or wrong data) fails the task at once, without
    retries: retrying cannot fix it. Anything else (a server down) retries as configured.
    """

    template_fields: Sequence[str] = ("model_name",)
    ui_color = "#e8f4fd"
    # buttons to the task's MLflow run and model version (read from its XCom value)
    operator_extra_links = (MlflowRunLink(), MlflowModelVersionLink())

    def __init__(
        self, *, model_name: str, mlflow_conn_id: str = MlflowHook.default_conn_name, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.model_name = model_name
        self.mlflow_conn_id = mlflow_conn_id

    @cached_property
    def spec(self) -> ModelSpec:
        from airmlops_core import settings, spec

        return spec.load_spec(settings.models_dir() / f"{self.model_name}.yaml")

    def spec_sha(self) -> str:
        from airmlops_core import settings, spec

        raw = (settings.models_dir() / f"{self.model_name}.yaml").read_bytes()
        return spec.spec_hash(raw)

    def tracking_uri(self) -> str:
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id).configure()

    def run_context(self, context: Context) -> RunContext:
        from airmlops_core.tracking.runs import RunContext

        ti = context["ti"]
        # manual and Asset-triggered runs have no logical date in Airflow 3: use run_after
        logical = context.get("logical_date") or getattr(context.get("dag_run"), "run_after", None)
        return RunContext(
            model=self.model_name,
            dag_id=ti.dag_id,
            run_id=ti.run_id,
            task_id=ti.task_id,
            try_number=int(ti.try_number or 1),
            logical_date=logical.isoformat() if logical else None,
            triggered_by=getattr(context.get("dag_run"), "triggering_user_name", None) or None,
        )

    def execute(self, context: Context) -> object:
        """Run, failing at once on a PermanentError (bad input, a conflict): retrying cannot
        fix those. Anything else propagates and retries as the task is configured."""
        from airmlops_core.errors import PermanentError

        try:
            self.result = self.run(context)  # kept for the OpenLineage hook below
        except PermanentError as exc:
            raise AirflowFailException(str(exc)) from exc
        return self.result

    def run(self, context: Context) -> object:
        """Do the work and return its XCom value; subclasses implement this."""
        raise NotImplementedError

    def data_store(self) -> Store:
        """The data layer for this model's shared state (airmlops_core.io.store): with S3
        settings from the model's AWS connection (`locations.aws_conn_id`) when any of its
        state is on S3, else local only. Credentials stay in the connection; the store's repr
        never shows them."""
        from airmlops.hooks.data_store import store_for
        from airmlops_core import locations

        return store_for(locations.aws_conn_id(self.spec), needs_s3=locations.uses_s3(self.spec))

    def labels_engine(self) -> Any:
        """A SQLAlchemy engine of `labels.conn_id` for labels from a query (None otherwise)."""
        labels = self.spec.labels
        if labels.kind != "sql" or not labels.conn_id:
            return None
        from airflow.sdk import BaseHook

        return BaseHook.get_connection(labels.conn_id).get_hook().get_sqlalchemy_engine()

    def lineage(self, result: Any) -> TaskLineage | None:
        """What this task read and wrote, from its XCom value `result` (None: nothing to say).

        Subclasses that touch data or model versions override this (airmlops.lineage names).
        """
        return None

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """The OpenLineage provider's hook after success: the datasets of `lineage()`."""
        result = getattr(self, "result", None)
        found = self.lineage(result) if result is not None else None
        return found.operator_lineage() if found is not None else None

    def mlflow_namespace_uri(self) -> str:
        """The MLflow server's URL (no credentials), for model version datasets."""
        return MlflowHook(mlflow_conn_id=self.mlflow_conn_id).tracking_uri
