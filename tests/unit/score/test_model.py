"""The model a run scores with: the pinned version, its kinds, its signature checks."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.models import infer_signature

from airmlops_core import errors
from airmlops_core.errors import ChampionNotFound
from airmlops_core.io import scored as layout
from airmlops_core.score.model import LoadedModel, load_model, resolve_champion
from churn_batches import frame
from score_helpers import MODEL, expected_proba, score, write_parquet


def test_load_uses_the_clients_server_not_the_process_wide_one(registry, tmp_path: Path) -> None:
    """A task may hold a client for one server while mlflow's global URIs name another (an
    earlier set_tracking_uri): the version must still come from the client's server."""
    other = f"sqlite:///{tmp_path / 'other.db'}"  # an empty tracking + registry store
    mlflow.set_tracking_uri(other)
    mlflow.set_registry_uri(other)  # also exported as MLFLOW_REGISTRY_URI to child processes
    try:
        loaded = load_model(registry["client"], MODEL, registry["v1"])
    finally:
        mlflow.set_tracking_uri(registry["url"])
        mlflow.set_registry_uri("")  # back to "same as tracking"
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    assert loaded.version == registry["v1"]
    assert loaded.proba_columns


def test_no_champion_is_a_clear_error(registry: dict[str, Any]) -> None:
    client = registry["client"]
    if "champion" in client.get_registered_model(MODEL).aliases:
        client.delete_registered_model_alias(MODEL, "champion")
    with pytest.raises(ChampionNotFound, match=rf"'{MODEL}' has no 'champion' version yet"):
        resolve_champion(client, MODEL)
    with pytest.raises(ChampionNotFound, match="never_registered"):
        resolve_champion(client, "never_registered")
    with pytest.raises(errors.ModelLoadError, match="version 999 is not in the registry"):
        load_model(client, MODEL, "999")


def test_run_keeps_the_version_it_resolved(registry: dict[str, Any], batch, tmp_path: Path) -> None:
    client, v1, v2 = registry["client"], registry["v1"], registry["v2"]
    df, src = batch
    client.set_registered_model_alias(MODEL, "champion", v1)
    pinned = resolve_champion(client, MODEL)
    model = load_model(client, MODEL, pinned)
    client.set_registered_model_alias(MODEL, "champion", v2)  # promoted mid-run
    assert resolve_champion(client, MODEL) == v2
    # the rest of the run loads by the pinned version, never by the alias
    again = load_model(client, MODEL, pinned)
    out = tmp_path / "out.parquet"
    score(again, src, out)
    scored = pd.read_parquet(out)
    assert pinned == v1
    assert model.version == again.version == v1
    assert set(scored["model_version"]) == {v1}
    np.testing.assert_allclose(
        scored[["proba_0", "proba_1"]].to_numpy(),
        expected_proba(registry, v1, df),
        rtol=0,
        atol=1e-12,
    )
    assert not np.allclose(scored["proba_1"], expected_proba(registry, v2, df)[:, 1], atol=1e-3)


def test_regressor_and_multiclass_outputs(tmp_path: Path) -> None:
    """Model kinds other than the binary champion: columns and values from the estimator."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    df = frame(3000, seed=3)
    X = df[["tenure", "monthly"]].astype("float64")
    src = write_parquet(df, tmp_path)
    reg = LinearRegression().fit(X, df["monthly"] * 2)
    model = LoadedModel.from_estimator("r", "4", reg, infer_signature(X, reg.predict(X)))
    score(model, src, tmp_path / "r.parquet", chunk_rows=1000)
    out = pd.read_parquet(tmp_path / "r.parquet")
    assert list(out.columns) == [
        "customer_id",
        "prediction",
        "model_name",
        "model_version",
        "input_sha256",
        "logical_date",
    ]
    np.testing.assert_allclose(out["prediction"], reg.predict(X), rtol=0, atol=1e-9)

    labels = df["contract"].map({"month": "m-1", "year1": "y 1", "year2": "y/2"})
    clf = LogisticRegression(max_iter=500).fit(X, labels)
    model = LoadedModel.from_estimator("c", "1", clf, infer_signature(X, clf.predict_proba(X)))
    score(model, src, tmp_path / "c.parquet", chunk_rows=1000)
    out = pd.read_parquet(tmp_path / "c.parquet")
    assert model.proba_columns == ["proba_m_1", "proba_y_1", "proba_y_2"]
    np.testing.assert_allclose(
        out[model.proba_columns].to_numpy(), clf.predict_proba(X), rtol=0, atol=1e-12
    )
    assert (out["prediction"].to_numpy() == clf.predict(X)).all()
    assert layout.proba_names(["a-b", "a_b"]) == ["proba_0", "proba_1"]


def test_extra_columns_are_ignored_and_ints_feed_double_features(
    model_v1, registry, batch, tmp_path: Path
) -> None:
    df, _ = batch
    src = write_parquet(df.assign(extra=1.5, tenure=df["tenure"].astype("int32")), tmp_path)
    out = tmp_path / "o.parquet"
    score(model_v1, src, out)
    np.testing.assert_allclose(
        pd.read_parquet(out)[["proba_0", "proba_1"]].to_numpy(),
        expected_proba(registry, registry["v1"], df),
        rtol=0,
        atol=1e-12,
    )
