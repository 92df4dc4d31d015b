"""Fixtures of the serve tests: a registry with four versions of MODEL, the API serving it."""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from model_api_process import FEATURES, MODEL, Api, Registry, frame


def _spec(c: float) -> Any:
    from airmlops_core.spec import ModelSpec

    return ModelSpec.model_validate(
        {
            "name": MODEL,
            "task": "binary",
            "source": {"kind": "file", "uri": "x.parquet"},
            "target": "y",
            "features": {"numeric": ["a", "b", "n"], "categorical": ["c"]},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"C": c}},
            "metrics": {"primary": "roc_auc"},
        }
    )


def _log(pipeline: Any, spec: Any, example: pd.DataFrame) -> str:
    """Log exactly as train_flow.train_step does; returns the model URI."""
    import mlflow
    from mlflow.models import infer_signature

    from airmlops_core.train import estimator as training
    from airmlops_core.train import flow as train_flow

    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name=train_flow.MODEL_ARTIFACT,
            signature=infer_signature(
                example,
                pipeline.predict_proba(example) if set(example.columns) == set(FEATURES) else None,
            ),
            input_example=example,
            pip_requirements=train_flow.pip_requirements(spec),
            serialization_format="skops",
            skops_trusted_types=training.trusted_types(pipeline),
            pyfunc_predict_fn="predict_proba",
        )
    return str(info.model_uri)


@pytest.fixture(scope="session")
def registry(mlflow_url: str) -> Registry:
    """MODEL registered on the session's MLflow server (once: the versions are asserted)."""
    import mlflow
    from mlflow import MlflowClient

    from airmlops_core.train import estimator as training

    mlflow.set_tracking_uri(mlflow_url)
    mlflow.set_experiment("model_api_test")
    client = MlflowClient(mlflow_url)
    train = frame(0, 300)
    pipelines: dict[str, Any] = {}
    uris = []
    for c in (1.0, 0.01):
        spec = _spec(c)
        pipe = training.fit(spec, train)
        uris.append(_log(pipe, spec, training.feature_frame(spec, train).head(5)))
        pipelines[str(len(uris))] = pipe
    versions = [mlflow.register_model(uri, MODEL).version for uri in uris]
    assert versions == ["1", "2"]
    # v3: a sklearn MLmodel whose model.skops is garbage: download works, load fails
    with tempfile.TemporaryDirectory() as tmp:
        good = Path(mlflow.artifacts.download_artifacts(uris[0], dst_path=tmp))
        (good / "model.skops").write_bytes(b"not a skops archive")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(good), artifact_path="broken")
        mv3 = client.create_model_version(
            MODEL, f"{run.info.artifact_uri}/broken", run_id=run.info.run_id
        )
    # v4: loads, but its logged example lacks column "a": the golden request fails in predict
    spec = _spec(1.0)
    example = training.feature_frame(spec, train).head(5).rename(columns={"a": "zz"})
    mv4 = mlflow.register_model(_log(pipelines["1"], spec, example), MODEL)
    assert (mv3.version, mv4.version) == ("3", "4")
    client.set_registered_model_alias(MODEL, "champion", "1")
    return Registry(url=mlflow_url, pipelines=pipelines, v1_uri=uris[0])


@pytest.fixture(scope="module")
def api(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API serving MODEL only (so plain /invocations works), one per test module."""
    server = Api(registry.url, MODEL, tmp_path_factory.mktemp("api") / "api.log")
    try:
        server.wait(lambda: server.status()[0] == 200, "the first champion loaded")
        yield server
    finally:
        server.stop()
    server.assert_clean_exit()


@pytest.fixture
def rows() -> pd.DataFrame:
    """Seven rows of the model's features."""
    return frame(42, 7)[FEATURES]
