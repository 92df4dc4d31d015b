"""Operators of the deploy DAG: a model version from the source environment's registry into
this one's, verified, approved, then champion (airmlops_core.deploy)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk.exceptions import AirflowSkipException

from airmlops.hooks.mlflow_hook import MlflowHook
from airmlops.operators.approval import DECISION_KEY, PromotionApprovalOperator
from airmlops.operators.base import ModelOperator
from airmlops.operators.validate import human_approved, reviewer

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from airmlops_core.deploy.environments import Route
    from airmlops_core.deploy.flow import Deployed, Pushed, Refused, Resolved, Verified

ENVIRONMENT_VARIABLE = "airmlops_environment"
NO_APPROVAL = "no approval required"
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def own_environment() -> str | None:
    """This deployment's environment: AIRMLOPS_ENVIRONMENT, else the Variable
    `airmlops_environment` (read at run time only), else None."""
    from airflow.sdk import Variable

    from airmlops_core import settings

    return settings.current().environment or Variable.get(ENVIRONMENT_VARIABLE, default=None)


@contextmanager
def mlflow_connection(conn_id: str) -> Iterator[str]:
    """Point this process's MLflow client at connection `conn_id` for the block (credentials
    included), then restore what was set before: one task talks to two registries."""
    saved = {k: os.environ.get(k) for k in _MLFLOW_ENV}
    try:
        yield MlflowHook(mlflow_conn_id=conn_id).configure()
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class DeployOperator(ModelOperator):
    """A deploy step: knows the route (source and target environments) of this run."""

    def route(self, requested: str | None) -> Route:
        from airmlops_core.deploy import environments

        return environments.route(environments.load(), own_environment(), requested)


class ResolveDeployOperator(DeployOperator):
    """Pin the source version (champion, or a number) and refuse one that failed its gate."""

    template_fields: Sequence[str] = (
        *ModelOperator.template_fields,
        "source_version",
        "target_environment",
        "requested_by",
    )

    def __init__(
        self, *, source_version: str, target_environment: str, requested_by: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.source_version = source_version
        self.target_environment = target_environment
        self.requested_by = requested_by

    def run(self, context: Context) -> Resolved:
        from mlflow import MlflowClient

        from airmlops_core.deploy import flow as deploy_flow

        route = self.route(self.target_environment)
        who = (
            str(self.requested_by or "").strip()
            or getattr(context.get("dag_run"), "triggering_user_name", None)
            or "unknown"
        )
        with mlflow_connection(route.source.mlflow_conn_id) as uri:
            return deploy_flow.resolve_step(
                self.spec,
                route,
                source_client=MlflowClient(uri),
                source_version=str(self.source_version or ""),
                requested_by=str(who),
            )


class TransferOperator(DeployOperator):
    """Pull the source version (digest, model-safety check, golden answer), push it into the
    target registry with provenance tags, and check the target's copy. One task: the files
    never leave the worker's temporary directory."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "resolved")

    def __init__(self, *, resolved: Resolved | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.resolved = cast("Resolved", resolved)  # an XComArg is resolved before run

    def run(self, context: Context) -> Pushed:
        from mlflow import MlflowClient

        from airmlops_core.deploy import flow as deploy_flow

        route = self.route(self.resolved["target_environment"])
        with tempfile.TemporaryDirectory(prefix="airmlops-deploy-") as tmp:
            with mlflow_connection(route.source.mlflow_conn_id) as uri:
                pulled = deploy_flow.pull_step(
                    self.spec, self.resolved, source_client=MlflowClient(uri), dst=Path(tmp)
                )
            with mlflow_connection(route.target.mlflow_conn_id) as uri:
                return deploy_flow.push_step(
                    self.spec, self.run_context(context), self.resolved, pulled, tracking_uri=uri
                )


class VerifyDeployOperator(DeployOperator):
    """The golden request, the target's latest batch (data check, shadow score next to the
    champion): the evidence the reviewer sees."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "resolved", "pushed")

    def __init__(
        self, *, resolved: Resolved | XComArg, pushed: Pushed | XComArg, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.resolved = cast("Resolved", resolved)
        self.pushed = cast("Pushed", pushed)

    def run(self, context: Context) -> Verified:
        from airmlops_core.deploy import flow as deploy_flow

        route = self.route(self.resolved["target_environment"])
        with mlflow_connection(route.target.mlflow_conn_id) as uri:
            return deploy_flow.verify_step(
                self.spec, self.run_context(context), self.resolved, self.pushed, tracking_uri=uri
            )


class DeployApprovalOperator(PromotionApprovalOperator):
    """The promotion review, with the target environment's reviewers and timeout, read when
    it runs. An environment without `approval` approves at once (recorded as such); the one
    who asked for the deploy may not approve it."""

    def execute(self, context: Context) -> Any:
        verified = cast("Verified", self.gated)
        if verified["promote"] and not verified["approval"]:
            decided = {"approved": True, "reviewer": NO_APPROVAL, "reason": None}
            self._record(context, decided)  # type: ignore[arg-type]
            return {"chosen_options": ["Approve"], "responded_by_user": None}
        self.reviewers = list(verified["reviewers"])
        self.timeout_hours = float(verified["approval_timeout_hours"])
        self.response_timeout = timedelta(hours=self.timeout_hours)
        return super().execute(context)


class DeployPromoteOperator(DeployOperator):
    """Move the target's `champion` to the deployed version once verified and approved
    (skipped otherwise), under the champion lease every writer of `champion` takes."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "verified", "approval")

    def __init__(
        self,
        *,
        verified: Verified | XComArg,
        approval: dict[str, Any] | XComArg,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.verified = cast("Verified", verified)
        self.approval = cast("dict[str, Any]", approval)

    def run(self, context: Context) -> Deployed:
        from airmlops_core.deploy import flow as deploy_flow

        if not self.verified["promote"]:
            raise AirflowSkipException("the verification in the target failed")
        if not human_approved(self.approval):
            raise AirflowSkipException("the deploy was not approved")
        user = self.approval.get("responded_by_user")
        approved_by = (
            f"{reviewer(self.approval)} (human approval)"
            if user
            else f"{NO_APPROVAL} in {self.verified['target_environment']}"
        )
        route = self.route(self.verified["target_environment"])
        with mlflow_connection(route.target.mlflow_conn_id) as uri:
            return deploy_flow.promote_step(
                self.spec,
                self.run_context(context),
                self.verified,
                tracking_uri=uri,
                approved_by=approved_by,
            )


class DeployRejectOperator(DeployOperator):
    """Tag the deployed version `rejected` in the target when verification failed or the
    reviewer rejected it (skipped when it became champion); the champion stays."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "verified")

    def __init__(
        self, *, verified: Verified | XComArg, approval_task_id: str, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.verified = cast("Verified", verified)
        self.approval_task_id = approval_task_id

    def run(self, context: Context) -> Refused:
        from airmlops_core.deploy import flow as deploy_flow

        extra: list[str] = []
        if self.verified["promote"]:
            approval = context["ti"].xcom_pull(task_ids=self.approval_task_id, key=DECISION_KEY)
            if not isinstance(approval, dict) or human_approved(approval):
                raise AirflowSkipException("the deploy was approved")
            extra = [
                str(approval.get("reason") or f"rejected in human review by {reviewer(approval)}")
            ]
        route = self.route(self.verified["target_environment"])
        with mlflow_connection(route.target.mlflow_conn_id) as uri:
            return deploy_flow.reject_step(
                self.spec, self.verified, tracking_uri=uri, extra_reasons=extra
            )
