"""Landed labels from the spec's `labels:` section: a local folder, an S3 prefix or file, or an
SQL query through an Airflow connection."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from airmlops_core.errors import DataError
from airmlops_core.io import data
from airmlops_core.io.labels import read_labels
from airmlops_core.io.store import Store
from airmlops_core.spec import ModelSpec

BASE = {
    "name": "lab",
    "task": "binary",
    "target": "churn",
    "row_key": "customer_id",
    "features": {"numeric": ["tenure"]},
    "source": {"kind": "file", "uri": "train.parquet"},
    "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
    "metrics": {"primary": "roc_auc"},
}


def spec_with(labels: dict[str, Any] | None = None) -> ModelSpec:
    return ModelSpec.model_validate({**BASE, **({"labels": labels} if labels else {})})


def label_batches() -> list[pd.DataFrame]:
    """Two label files; key 5 is in both (the first file's label wins), plus an extra column."""
    rng = np.random.default_rng(3)
    a = pd.DataFrame({"customer_id": np.arange(0, 10), "churn": rng.integers(0, 2, 10)})
    b = pd.DataFrame({"customer_id": np.arange(5, 15), "churn": rng.integers(0, 2, 10)})
    return [a.assign(note="x"), b.assign(note="y")]


def expected(batches: list[pd.DataFrame]) -> pd.DataFrame:
    """Independently: concatenate whole files, keep each key's first label."""
    whole = pd.concat(batches, ignore_index=True)
    return whole.drop_duplicates("customer_id")[["customer_id", "churn"]].reset_index(drop=True)


def test_default_folder_under_the_data_dir(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path))
    spec = spec_with()
    none_yet = read_labels(spec, Store())
    assert none_yet.frame.empty
    assert list(none_yet.frame.columns) == ["customer_id", "churn"]
    assert none_yet.note == f"{tmp_path / 'labels' / 'lab'}: no label files yet"
    batches = label_batches()
    for i, b in enumerate(batches):
        data.write_frame(b, str(tmp_path / "labels" / "lab" / f"{i}.parquet"))
    got = read_labels(spec, Store())
    assert got.note == ""
    pd.testing.assert_frame_equal(got.frame, expected(batches), check_dtype=False)


def test_s3_prefix_and_single_file(s3_store: Store, s3: Any, s3_prefix: str) -> None:
    batches = label_batches()
    for i, b in enumerate(batches):
        data.write_frame(b, f"{s3_prefix}labels/{i}.parquet", s3_client=s3.client)
    got = read_labels(spec_with({"kind": "s3", "uri": f"{s3_prefix}labels/"}), s3_store)
    pd.testing.assert_frame_equal(got.frame, expected(batches), check_dtype=False)
    assert got.source == f"{s3_prefix}labels/"
    one = read_labels(spec_with({"kind": "s3", "uri": f"{s3_prefix}labels/1.parquet"}), s3_store)
    pd.testing.assert_frame_equal(one.frame, expected(batches[1:]), check_dtype=False)


def test_s3_misconfiguration_is_an_error_naming_the_place(
    s3_store: Store, s3: Any, s3_prefix: str
) -> None:
    with pytest.raises(DataError, match="s3://no-such-labels-bucket/.*bucket does not exist"):
        read_labels(spec_with({"kind": "s3", "uri": "s3://no-such-labels-bucket/l/"}), s3_store)
    uri = f"{s3_prefix}bad/l.parquet"
    data.write_frame(pd.DataFrame({"customer_id": [1], "label": [0]}), uri, s3_client=s3.client)
    with pytest.raises(DataError, match=r"l\.parquet.*missing columns \['churn'\]"):
        read_labels(spec_with({"kind": "s3", "uri": f"{s3_prefix}bad/"}), s3_store)
    # an empty prefix in an existing bucket: labels have not landed, said so, not an error
    empty = read_labels(spec_with({"kind": "s3", "uri": f"{s3_prefix}later/"}), s3_store)
    assert empty.frame.empty
    assert "no label files yet" in empty.note


def test_sql_query_through_an_airflow_connection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airmlops.operators.base import ModelOperator

    batches = label_batches()
    db = tmp_path / "labels.db"
    with sqlite3.connect(db) as conn:
        pd.concat(batches, ignore_index=True).reset_index(names="landed").to_sql(
            "outcomes", conn, index=False
        )
    monkeypatch.setenv("AIRFLOW_CONN_LABELS_DB", f"sqlite:///{db}")
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("AIRMLOPS_MODELS_DIR", str(models))
    labels = {
        "kind": "sql",
        "conn_id": "labels_db",
        "query": "SELECT customer_id, churn FROM outcomes ORDER BY landed",
    }
    (models / "lab.yaml").write_text(yaml.safe_dump({**BASE, "labels": labels}))
    op = ModelOperator(task_id="t", model_name="lab")
    got = read_labels(op.spec, op.data_store(), sql_engine=op.labels_engine())
    pd.testing.assert_frame_equal(got.frame, expected(batches), check_dtype=False)
    assert "labels_db" in got.source

    wrong = spec_with({**labels, "query": "SELECT customer_id FROM outcomes"})
    with pytest.raises(DataError, match=r"labels query 'SELECT customer_id.*missing columns"):
        read_labels(wrong, Store(), sql_engine=op.labels_engine())
    with pytest.raises(DataError, match="engine of connection 'labels_db' is needed"):
        read_labels(spec_with(labels), Store())


def test_operator_store_reaches_s3_through_the_aws_connection(
    s3: Any, s3_server: Any, s3_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from airmlops.operators.base import ModelOperator

    monkeypatch.setenv(
        "AIRFLOW_CONN_S3_LABELS",
        json.dumps(
            {
                "conn_type": "aws",
                "login": s3_server.access_key,
                "password": s3_server.secret_key,
                "extra": {"endpoint_url": s3.endpoint_url, "region_name": "us-east-1"},
            }
        ),
    )
    models = tmp_path / "models"
    models.mkdir()
    monkeypatch.setenv("AIRMLOPS_MODELS_DIR", str(models))
    labels = {"kind": "s3", "uri": f"{s3_prefix}l/", "conn_id": "s3_labels"}
    (models / "lab.yaml").write_text(yaml.safe_dump({**BASE, "labels": labels}))
    batches = label_batches()
    data.write_frame(batches[0], f"{s3_prefix}l/a.csv", format="csv", s3_client=s3.client)
    op = ModelOperator(task_id="t", model_name="lab")
    store = op.data_store()
    assert s3_server.secret_key not in repr(store)
    got = read_labels(op.spec, store)
    pd.testing.assert_frame_equal(got.frame, expected(batches[:1]), check_dtype=False)


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"kind": "sql", "query": "select 1"}, "kind 'sql' needs 'query' and 'conn_id'"),
        ({"kind": "sql", "query": "q", "conn_id": "c", "uri": "x/"}, "reads 'query', not 'uri'"),
        ({"kind": "s3", "uri": "labels/"}, "kind 's3' needs an s3:// uri"),
        ({"uri": "s3://b/l/"}, "an s3:// uri needs kind 's3'"),
        ({"kind": "file", "query": "q"}, "'query' needs kind 'sql'"),
    ],
)
def test_bad_labels_sections_are_refused(labels: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        spec_with(labels)


def test_labels_section_needs_a_row_key() -> None:
    raw = {**BASE, "labels": {"uri": "l/"}}
    del raw["row_key"]
    with pytest.raises(ValueError, match="joined to scored rows on the row key"):
        ModelSpec.model_validate(raw)
