"""The data gate of the train path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from airmlops.operators.base import ModelOperator

if TYPE_CHECKING:
    from airflow.sdk import Context, XComArg

    from airmlops_core.train.flow import DataChecked, TrainRefs


class CheckTrainingDataOperator(ModelOperator):
    """Fail closed: the training window must pass the model's expectation suite."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "refs")

    def __init__(self, *, refs: TrainRefs | XComArg, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refs = cast("TrainRefs", refs)  # an XComArg is resolved before run

    def run(self, context: Context) -> DataChecked:
        from airmlops_core.train import flow as train_flow

        return train_flow.check_training_data_step(
            self.spec,
            self.run_context(context),
            self.refs,
            tracking_uri=self.tracking_uri(),
            s3_client=self.data_store().s3_client,  # the work files may be on S3
        )
