"""Helpers shared by the tests of airmlops_core.score: the test model, its batches and files.

The model is fitted by the train path's own code (training.fit) and logged with the same
log_model call as train_flow.train_step (see tests/unit/score/conftest.py); expected
probabilities come from the registered model loaded independently (mlflow.sklearn) and fed
through training.feature_frame.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from airmlops_core.score import stream
from airmlops_core.score.model import LoadedModel
from airmlops_core.spec import ModelSpec
from airmlops_core.train import estimator as training

MODEL = f"score_test_{secrets.token_hex(3)}"
DATE = "2024-05-01T00:00:00Z"


def make_spec(name: str, c: float) -> ModelSpec:
    """The test model's spec: a churn logistic regression with inverse regularisation `c`."""
    return ModelSpec.model_validate(
        {
            "name": name,
            "task": "binary",
            "source": {"kind": "file", "uri": "x.parquet"},
            "target": "churn",
            "row_key": "customer_id",
            "features": {"numeric": ["tenure", "monthly"], "categorical": ["contract"]},
            "estimator": {
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 500, "C": c},
            },
            "metrics": {"primary": "roc_auc"},
        }
    )


def data_table(df: pd.DataFrame) -> Any:
    """The frame as an Arrow table, without the index."""
    import pyarrow as pa

    return pa.Table.from_pandas(df, preserve_index=False)


def mlflow_sklearn_load(uri: str) -> Any:
    """The test's own genuine model loaded with MLflow's sklearn loader, independently of the
    pack's: the pack turns MLflow's pickle switch off in its process (model_safety), so it is
    turned back on for this one call."""
    import os

    from airmlops_core.tracking.model_safety import PICKLE_SWITCH

    before = os.environ.get(PICKLE_SWITCH)
    os.environ[PICKLE_SWITCH] = "true"
    try:
        return mlflow.sklearn.load_model(uri)
    finally:
        if before is None:
            os.environ.pop(PICKLE_SWITCH, None)
        else:
            os.environ[PICKLE_SWITCH] = before


def expected_proba(registry: dict[str, Any], version: str, df: pd.DataFrame) -> np.ndarray:
    """predict_proba of the registered version, loaded independently of airmlops_core.score."""
    native = mlflow_sklearn_load(f"models:/{MODEL}/{version}")
    return native.predict_proba(training.feature_frame(make_spec(MODEL, 1.0), df))


def sha(path: str | Path) -> str:
    """Hex sha256 of a file's bytes."""
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def score(model: LoadedModel, src: Path | str, out: Path | str, **kw: Any) -> dict:
    """`stream.score_partition` with the tests' row key, logical date and chunk size."""
    kw.setdefault("row_key", "customer_id")
    kw.setdefault("logical_date", DATE)
    kw.setdefault("chunk_rows", 4096)
    return stream.score_partition(model, str(src), str(out), **kw)


def write_csv(df: pd.DataFrame, path: Path, **kw: Any) -> Path:
    """The frame as CSV at `path` (`kw`: to_csv options)."""
    df.to_csv(path, index=False, **kw)
    return path


def write_bytes(path: Path, content: bytes) -> Path:
    """`content` as the file at `path`."""
    path.write_bytes(content)
    return path


def write_parquet(df: pd.DataFrame, d: Path) -> Path:
    """The frame as <d>/x.parquet in row groups of 3,000."""
    pq.write_table(data_table(df), d / "x.parquet", row_group_size=3000)
    return d / "x.parquet"
