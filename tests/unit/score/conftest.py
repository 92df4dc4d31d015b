"""Fixtures of the score tests: two versions of the test model on a real MLflow server.

The model is fitted by the train path's own code (training.fit) and logged with the same
log_model call as train_flow.train_step. The fixtures are built once for all the score test
modules (they were module-scoped when these tests were one module).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature

from airmlops_core.score.model import LoadedModel, load_model
from airmlops_core.spec import ModelSpec
from airmlops_core.tracking.runs import experiment_name
from airmlops_core.train import estimator as training
from airmlops_core.train import flow as train_flow
from churn_batches import frame
from score_helpers import MODEL, data_table, make_spec


def log_version(spec: ModelSpec, train: pd.DataFrame) -> str:
    """Fit and register one version exactly as train_flow.train_step logs it."""
    pipeline = training.fit(spec, train)
    sample = training.feature_frame(spec, train).head(5)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name=train_flow.MODEL_ARTIFACT,
            signature=infer_signature(sample, pipeline.predict_proba(sample)),
            input_example=sample,
            pip_requirements=train_flow.pip_requirements(),
            serialization_format="skops",
            skops_trusted_types=training.trusted_types(pipeline),
            pyfunc_predict_fn="predict_proba",
        )
    return str(mlflow.register_model(info.model_uri, spec.name).version)


@pytest.fixture(scope="session")
def registry(mlflow_url: str) -> dict[str, Any]:
    """Two versions of MODEL (different C and training rows) on the session's server."""
    mlflow.set_tracking_uri(mlflow_url)
    mlflow.set_experiment(experiment_name(MODEL))
    v1 = log_version(make_spec(MODEL, 1.0), frame(3000, seed=1))
    v2 = log_version(make_spec(MODEL, 0.001), frame(500, seed=2))
    client = MlflowClient(mlflow_url)
    return {"client": client, "v1": v1, "v2": v2, "url": mlflow_url}


@pytest.fixture(scope="session")
def model_v1(registry: dict[str, Any]) -> LoadedModel:
    """Version 1 of MODEL, loaded once for the score tests."""
    return load_model(registry["client"], MODEL, registry["v1"])


@pytest.fixture(scope="session")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """20,000 rows as Parquet in row groups of 3,000 (chunks of 4,096 straddle them)."""
    df = frame(20_000, seed=7, start=1_000_000)
    path = tmp_path_factory.mktemp("in") / "batch-0001.parquet"
    pq.write_table(data_table(df), path, row_group_size=3000)
    return df, path
