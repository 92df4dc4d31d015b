"""The data gate of the train path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airmlops.operators.base import ModelOperator


class CheckTrainingDataOperator(ModelOperator):
    """Fail closed: the training window must pass the model's expectation suite."""

    template_fields: Sequence[str] = (*ModelOperator.template_fields, "refs")

    def __init__(self, *, refs: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.refs = refs

    def run(self, context: Any) -> dict[str, Any]:
        from airmlops_core.train import flow as train_flow

        return train_flow.check_training_data_step(
            self.spec, self.run_context(context), self.refs, tracking_uri=self.tracking_uri()
        )
