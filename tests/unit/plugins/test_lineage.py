"""OpenLineage dataset names and facets (airmlops.lineage) and the operators' hook."""

from __future__ import annotations

from typing import Any

import pytest
from airflow.providers.openlineage.extractors import OperatorLineage
from openlineage.client.serde import Serde

from airmlops import lineage
from airmlops.operators.base import ModelOperator


def test_s3_object_is_named_by_bucket_and_key() -> None:
    ds = lineage.file_dataset("s3://lake/scored/churn/p=1.parquet", sha256="ab", rows=3)
    assert (ds.namespace, ds.name, ds.version, ds.rows) == (
        "s3://lake",
        "scored/churn/p=1.parquet",
        "ab",
        3,
    )


@pytest.mark.parametrize("uri", ["/data/x/../train.parquet", "file:///data/train.parquet"])
def test_local_file_is_named_by_host_and_absolute_path(uri: str) -> None:
    ds = lineage.file_dataset(uri, host="worker-1")
    assert (ds.namespace, ds.name) == ("file://worker-1", "/data/train.parquet")


@pytest.mark.parametrize("uri", ["data/train.parquet", "https://example.org/x.csv"])
def test_relative_paths_and_other_schemes_are_refused_by_name(uri: str) -> None:
    with pytest.raises(ValueError, match="x.csv|absolute path"):
        lineage.file_dataset(uri)


def test_model_version_namespace_drops_credentials() -> None:
    ds = lineage.model_version_dataset("http://admin:secret@127.0.0.1:5000/", "churn", 7)
    assert (ds.namespace, ds.name) == ("http://127.0.0.1:5000", "models/churn/7")
    assert "secret" not in ds.namespace


def test_table_namespace_by_connection_type() -> None:
    pg = lineage.table_dataset("postgresql", "db.internal", 5432, "ml.scores", rows=9)
    assert (pg.namespace, pg.name, pg.rows) == ("postgres://db.internal:5432", "ml.scores", 9)
    lite = lineage.table_dataset("sqlite", "/tmp/s.db", None, "churn_scores")
    assert (lite.namespace, lite.name) == ("sqlite:///tmp/s.db", "churn_scores")


def test_data_ref_keeps_hash_and_rows() -> None:
    ds = lineage.data_ref_dataset(
        {"uri": "s3://b/k.parquet", "sha256": "f00", "rows": 12, "format": "parquet"}
    )
    assert (ds.version, ds.rows) == ("f00", 12)


def test_operator_lineage_carries_version_and_statistics_facets() -> None:
    data = lineage.file_dataset("s3://b/train.parquet", sha256="cafe", rows=5)
    model = lineage.model_version_dataset("http://127.0.0.1:5000", "churn", "2")
    found = lineage.TaskLineage.of([data, data], [model]).operator_lineage()
    assert isinstance(found, OperatorLineage)
    assert len(found.inputs) == 1  # repeats dropped
    event = Serde.to_dict(found.inputs[0])
    assert event["facets"]["version"]["datasetVersion"] == "cafe"
    assert event["inputFacets"]["inputStatistics"]["rowCount"] == 5
    assert Serde.to_dict(found.outputs[0])["name"] == "models/churn/2"


class _Recorded(ModelOperator):
    def run(self, context: Any) -> dict[str, str]:
        return {"uri": "s3://b/out.parquet"}

    def lineage(self, result: dict[str, str]) -> lineage.TaskLineage:
        return lineage.TaskLineage.of(outputs=[lineage.file_dataset(result["uri"])])


def test_hook_reports_what_the_run_returned_and_nothing_before_it() -> None:
    op = _Recorded(task_id="t", model_name="m")
    assert op.get_openlineage_facets_on_complete(None) is None  # never ran (or skipped)
    op.execute({})  # type: ignore[arg-type]
    found = op.get_openlineage_facets_on_complete(None)
    assert [(d.namespace, d.name) for d in found.outputs] == [("s3://b", "out.parquet")]
