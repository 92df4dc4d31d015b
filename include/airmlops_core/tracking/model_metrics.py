"""Metrics linked to an MLflow 3 logged model and the dataset they were measured on.

A metric logged with a model id shows on that model's page in the MLflow 3 UI (and in
`MlflowClient.get_logged_model(model_id).metrics`), next to the run it was logged in; with a
dataset name and digest, the page says which data it was measured on. A run that uses a model
(the gate's, the drift check's) also lists the model as an input.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from mlflow import MlflowClient
from mlflow.entities import LoggedModelInput, Metric


@dataclass(frozen=True)
class DatasetKey:
    """How MLflow names a logged dataset: its name and digest (as in `mlflow.log_input`)."""

    name: str
    digest: str


def holdout_dataset(model: str, sha256: str) -> DatasetKey:
    """The frozen holdout as the training run logs it (`train.flow._log_inputs`)."""
    return DatasetKey(f"{model}-holdout", sha256[:16])


LOGGED_MODEL_SOURCE = "models:/m-"  # a version registered from an MLflow 3 logged model


def version_model_id(client: MlflowClient, name: str, version: str | int) -> str | None:
    """The logged model behind a registered version (None for a version made from a run's
    artifact path, as MLflow 2 registered them).

    The server's version record does not return `model_id` (MLflow 3.17): it is read from the
    version's source, ``models:/<model id>``, when the field is empty.
    """
    mv = client.get_model_version(name, str(version))
    if mv.model_id:
        return str(mv.model_id)
    source = str(mv.source or "")
    if source.startswith(LOGGED_MODEL_SOURCE):
        return source.removeprefix("models:/").split("/", 1)[0]
    return None


def log_model_metrics(
    client: MlflowClient,
    run_id: str,
    metrics: Mapping[str, float],
    *,
    model_id: str | None,
    dataset: DatasetKey | None = None,
) -> None:
    """Log `metrics` to `run_id`, linked to `model_id` and `dataset` when given; the model
    becomes an input of the run. Without a model id they are plain run metrics."""
    now = int(time.time() * 1000)
    batch = [
        Metric(
            key,
            float(value),
            now,
            0,
            model_id=model_id,
            dataset_name=dataset.name if dataset else None,
            dataset_digest=dataset.digest if dataset else None,
        )
        for key, value in metrics.items()
    ]
    client.log_batch(run_id, metrics=batch)
    if model_id:
        client.log_inputs(run_id, models=[LoggedModelInput(model_id)])
