"""The SQL sink of scoring: real outputs upserted into a real SQLite file and a real
PostgreSQL server."""

from __future__ import annotations

import os
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import mlflow.sklearn
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow.models import infer_signature
from sklearn.linear_model import LogisticRegression

from airmlops_core import errors
from airmlops_core.errors import SinkError
from airmlops_core.io import data
from airmlops_core.io import sql_sink as score_sink
from airmlops_core.score.model import LoadedModel, load_local
from airmlops_core.score.stream import score_partition
from airmlops_core.spec import ModelSpec
from airmlops_core.train.flow import pip_requirements
from pgserver import PostgresServer

DATE = "2024-05-01T00:00:00Z"


def batch(n: int, seed: int, start: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": np.arange(start, start + n, dtype="int64"),
            "tenure": rng.integers(0, 73, n).astype("int64"),
            "monthly": np.round(rng.uniform(18, 120, n), 2),
        }
    )


def model(tmp: Path, name: str, version: str, c: float) -> LoadedModel:
    """A real MLflow sklearn model directory, loaded as the score DAG loads a version."""
    x = batch(400, seed=1)[["tenure", "monthly"]]
    y = (x["tenure"] < 30).astype("int64")
    est = LogisticRegression(C=c).fit(x, y)
    path = tmp / f"{name}-{version}"
    mlflow.sklearn.save_model(
        est,
        str(path),
        serialization_format="skops",
        skops_trusted_types=[],
        signature=infer_signature(x, y),
        pip_requirements=pip_requirements(),  # inferring them runs a subprocess for seconds
    )
    return load_local(path, name, version)


def outputs(
    tmp: Path, loaded: LoadedModel, parts: list[pd.DataFrame], date: str = DATE
) -> list[str]:
    uris = []
    for i, frame in enumerate(parts):
        src = data.write_frame(frame, str(tmp / "in" / f"part-{i}.parquet")).uri
        dst = str(tmp / "out" / loaded.name / loaded.version / f"part-{i}.parquet")
        score_partition(loaded, src, dst, row_key="customer_id", logical_date=date)
        uris.append(dst)
    return uris


@pytest.fixture(scope="module")
def postgres() -> Iterator[str]:
    """A real server and a login role for the sink: its SQLAlchemy URL."""
    password = secrets.token_urlsafe(12)
    with PostgresServer() as pg:
        subprocess.run(
            [
                "psql",
                "-U",
                "postgres",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                f"CREATE ROLE sink LOGIN PASSWORD '{password}'",
                "-c",
                "CREATE DATABASE sink OWNER sink",
            ],
            env={**os.environ, **pg.env},
            check=True,
            capture_output=True,
        )
        yield pg.url("sink", password, "sink")


# The PostgreSQL case starts a server (requested at run time, so the conftest hook cannot see it)
@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    if request.param == "sqlite":
        eng = sa.create_engine(f"sqlite:///{tmp_path / 'scores.db'}")
    else:
        eng = sa.create_engine(request.getfixturevalue("postgres"))
        with eng.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS scores"))
    yield eng
    eng.dispose()


def table(engine: Any) -> pd.DataFrame:
    with engine.connect() as conn:
        return pd.read_sql(sa.text("SELECT * FROM scores ORDER BY model_name, customer_id"), conn)


def test_rerun_and_new_version_upsert_without_duplicates(engine, tmp_path: Path) -> None:
    parts = [batch(300, seed=2), batch(200, seed=3, start=300)]
    v1 = outputs(tmp_path / "v1", model(tmp_path, "churn", "1", 1.0), parts)
    assert score_sink.upsert(engine, "scores", "customer_id", v1) == 500
    first = table(engine)
    assert len(first) == 500
    assert first["customer_id"].is_unique
    expected = pd.concat([data.read_frame(u) for u in v1], ignore_index=True)
    np.testing.assert_allclose(first["proba_1"], expected["proba_1"], rtol=0, atol=1e-12)
    assert set(first["model_version"]) == {"1"}

    assert score_sink.upsert(engine, "scores", "customer_id", v1) == 500  # a retry
    pd.testing.assert_frame_equal(table(engine), first)

    # the next run scores the same customers with version 2: rows updated, not added
    v2 = outputs(tmp_path / "v2", model(tmp_path, "churn", "2", 0.01), parts)
    score_sink.upsert(engine, "scores", "customer_id", v2)
    second = table(engine)
    assert len(second) == 500
    assert set(second["model_version"]) == {"2"}
    assert not np.allclose(second["proba_1"], first["proba_1"])
    # another model's scores of the same customers live beside them
    other = outputs(tmp_path / "other", model(tmp_path, "upsell", "1", 1.0), parts[:1])
    score_sink.upsert(engine, "scores", "customer_id", other)
    both = table(engine)
    assert len(both) == 800
    assert both.groupby("model_name").size().to_dict() == {"churn": 500, "upsell": 300}


def test_rerunning_an_older_run_leaves_newer_scores_in_place(engine, tmp_path: Path) -> None:
    """Last week's run re-run after this week's: this week's rows stay; keys only the old run
    scored are still added; the same week re-run writes the same table again."""
    this_week = "2024-05-08T00:00:00Z"
    parts = [batch(200, seed=7)]
    new = outputs(tmp_path / "new", model(tmp_path, "churn", "2", 0.01), parts, this_week)
    assert score_sink.upsert(engine, "scores", "customer_id", new) == 200
    current = table(engine)
    assert set(current["model_version"]) == {"2"}

    old_parts = [batch(200, seed=7), batch(30, seed=8, start=200)]  # 30 customers not in new
    old = outputs(tmp_path / "old", model(tmp_path, "churn", "1", 1.0), old_parts, DATE)
    assert score_sink.upsert(engine, "scores", "customer_id", old) == 30  # only the new keys
    after = table(engine)
    assert len(after) == 230
    pd.testing.assert_frame_equal(after[after["customer_id"] < 200], current)
    assert set(after.loc[after["customer_id"] >= 200, "model_version"]) == {"1"}
    stored = pd.to_datetime(after.loc[after["customer_id"] < 200, "logical_date"], utc=True)
    assert (stored == pd.Timestamp(this_week)).all()

    # the same logical date re-run (a retry, or a fix re-scored for that date) rewrites its rows
    assert score_sink.upsert(engine, "scores", "customer_id", new) == 200
    pd.testing.assert_frame_equal(table(engine), after)
    redo = outputs(tmp_path / "redo", model(tmp_path, "churn", "3", 1.0), parts, this_week)
    assert score_sink.upsert(engine, "scores", "customer_id", redo) == 200
    assert set(table(engine).query("customer_id < 200")["model_version"]) == {"3"}


def test_a_row_without_a_stored_date_is_replaced(engine, tmp_path: Path) -> None:
    out = outputs(tmp_path, model(tmp_path, "churn", "1", 1.0), [batch(20, seed=9)])
    score_sink.upsert(engine, "scores", "customer_id", out)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE scores SET logical_date = NULL, model_version = 'x'"))
    assert score_sink.upsert(engine, "scores", "customer_id", out) == 20
    assert set(table(engine)["model_version"]) == {"1"}


def test_a_failing_partition_rolls_back_the_whole_run(engine, tmp_path: Path) -> None:
    good = outputs(tmp_path, model(tmp_path, "churn", "1", 1.0), [batch(100, seed=4)])
    score_sink.upsert(engine, "scores", "customer_id", good)
    before = table(engine)
    later = outputs(
        tmp_path / "later",
        model(tmp_path, "churn", "2", 0.01),
        [batch(100, seed=4), batch(50, seed=5, start=100)],
    )
    Path(later[1]).write_bytes(Path(later[1]).read_bytes()[:200])  # truncated
    with pytest.raises(errors.DataError, match="part-1.parquet"):
        score_sink.upsert(engine, "scores", "customer_id", later)
    pd.testing.assert_frame_equal(table(engine), before)  # nothing of the run written


def test_incompatible_tables_and_databases_are_named(engine, tmp_path: Path) -> None:
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE scores (customer_id BIGINT, model_name TEXT)"))
    out = outputs(tmp_path, model(tmp_path, "churn", "1", 1.0), [batch(50, seed=6)])
    with pytest.raises(
        SinkError,
        match=r"sink table scores: missing column\(s\) "
        r"\['prediction', 'proba_0'",
    ):
        score_sink.upsert(engine, "scores", "customer_id", out)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE scores"))
        conn.execute(
            sa.text(
                "CREATE TABLE scores (customer_id BIGINT, prediction BIGINT, proba_0 FLOAT, "
                "proba_1 FLOAT, model_name TEXT, model_version TEXT, input_sha256 TEXT, "
                "logical_date TIMESTAMP)"
            )
        )  # no unique key to upsert on
    with pytest.raises(SinkError, match=r"scores.*(unique|constraint|ON CONFLICT)"):
        score_sink.upsert(engine, "scores", "customer_id", out)
    assert table(engine).empty


def test_unsupported_database_and_spec_without_row_key() -> None:
    class Fake:
        class dialect:  # noqa: N801 - mimics Engine.dialect
            name = "mssql"

    with pytest.raises(SinkError, match=r"needs one of \['postgresql', 'sqlite'\].*mssql"):
        score_sink.upsert(Fake(), "scores", "id", ["x.parquet"])
    raw = {
        "name": "m",
        "task": "binary",
        "target": "y",
        "source": {"kind": "file", "uri": "t.parquet"},
        "features": {"numeric": ["x"]},
        "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
        "metrics": {"primary": "roc_auc"},
        "scoring": {"sink": {"conn_id": "warehouse", "table": "scores"}},
    }
    with pytest.raises(ValueError, match="scoring.sink upserts on .* set row_key"):
        ModelSpec.model_validate(raw)
    with pytest.raises(ValueError, match="table"):
        ModelSpec.model_validate(
            {
                **raw,
                "row_key": "id",
                "scoring": {"sink": {"conn_id": "w", "table": "scores; DROP TABLE x"}},
            }
        )
