"""OpenLineage datasets for what the pack's tasks read and write.

Names follow the OpenLineage naming spec (openlineage.io/docs/spec/naming): an object
``s3://bucket/key`` is namespace ``s3://bucket``, name ``key``; a local file is namespace
``file://<host>``, name its absolute path; a table is namespace ``<scheme>://<host>[:<port>]``,
name ``[schema.]table``. A registered model version is a dataset too: namespace the MLflow
tracking URI (without credentials), name ``models/<name>/<version>``, so a catalogue links the
training data to the version and the version to its scored outputs. A file's sha256 is its
dataset version; row counts go to the input or output statistics facet.

Imported only by the operators' OpenLineage hooks (the provider calls them after a task
succeeds), never at DAG parse time.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from openlineage.client.event_v2 import InputDataset, OutputDataset
from openlineage.client.facet_v2 import (
    DatasetFacet,
    InputDatasetFacet,
    OutputDatasetFacet,
    dataset_version_dataset,
    input_statistics_input_dataset,
    output_statistics_output_dataset,
)


@dataclass(frozen=True)
class DatasetId:
    """An OpenLineage dataset identity: `namespace` (the data source) and `name` (within it).

    `version` is the content hash when known; `rows` the row count when known.
    """

    namespace: str
    name: str
    version: str | None = None
    rows: int | None = None


def file_dataset(
    uri: str, *, sha256: str | None = None, rows: int | None = None, host: str | None = None
) -> DatasetId:
    """A file or object: ``s3://bucket/key`` or a local path (``file://`` URIs too).

    Args:
        uri: s3://bucket/key, an absolute local path or a file:// URI.
        sha256: the file's content hash (the dataset version), if known.
        rows: its row count, if known.
        host: the host a local path lives on (default: this machine's name).

    Raises:
        ValueError: a relative local path, or a URI with another scheme.
    """
    parts = urlsplit(uri)
    if parts.scheme in ("s3", "s3a", "gs"):
        return DatasetId(f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/"), sha256, rows)
    if parts.scheme == "file":
        path = parts.path
    elif parts.scheme == "":
        path = uri
    else:
        raise ValueError(f"{uri}: no OpenLineage file naming for scheme {parts.scheme!r}")
    if not os.path.isabs(path):
        raise ValueError(f"{uri}: a lineage dataset needs an absolute path")
    return DatasetId(f"file://{host or socket.gethostname()}", os.path.normpath(path), sha256, rows)


def data_ref_dataset(ref: Mapping[str, Any]) -> DatasetId:
    """A frozen file as XCom carries it (a DataRefDict: uri, sha256, rows)."""
    rows = ref.get("rows")
    return file_dataset(
        str(ref["uri"]), sha256=ref.get("sha256") or None, rows=int(rows) if rows else None
    )


def table_dataset(
    conn_type: str, host: str | None, port: int | None, table: str, *, rows: int | None = None
) -> DatasetId:
    """A table behind an Airflow SQL connection: namespace ``<conn_type>://<host>[:<port>]``.

    For SQLite the host is the database file's path, so the namespace is ``sqlite://<path>``.
    """
    scheme = {"postgresql": "postgres"}.get(conn_type, conn_type)
    authority = f"{host or 'localhost'}:{port}" if port else (host or "localhost")
    return DatasetId(f"{scheme}://{authority}", table, None, rows)


def tracking_namespace(tracking_uri: str) -> str:
    """The MLflow tracking URI as a namespace: scheme, host and port, never credentials."""
    parts = urlsplit(tracking_uri)
    if not parts.scheme or not parts.hostname:
        return tracking_uri.rstrip("/")
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{parts.hostname}{port}{parts.path.rstrip('/')}"


def model_version_dataset(tracking_uri: str, name: str, version: str | int) -> DatasetId:
    """A registered model version: namespace the tracking server, name models/<name>/<version>."""
    return DatasetId(tracking_namespace(tracking_uri), f"models/{name}/{version}")


def _facets(ds: DatasetId) -> dict[str, DatasetFacet]:
    if ds.version is None:
        return {}
    return {
        "version": dataset_version_dataset.DatasetVersionDatasetFacet(datasetVersion=ds.version)
    }


def as_input(ds: DatasetId) -> InputDataset:
    """The OpenLineage input dataset, with its version and row count facets."""
    stats: dict[str, InputDatasetFacet] = {}
    if ds.rows is not None:
        stats["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
            rowCount=ds.rows
        )
    return InputDataset(namespace=ds.namespace, name=ds.name, facets=_facets(ds), inputFacets=stats)


def as_output(ds: DatasetId) -> OutputDataset:
    """The OpenLineage output dataset, with its version and row count facets."""
    stats: dict[str, OutputDatasetFacet] = {}
    if ds.rows is not None:
        stats["outputStatistics"] = (
            output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(rowCount=ds.rows)
        )
    return OutputDataset(
        namespace=ds.namespace, name=ds.name, facets=_facets(ds), outputFacets=stats
    )


@dataclass(frozen=True)
class TaskLineage:
    """What one task read and wrote; `operator_lineage()` turns it into the provider's type."""

    inputs: tuple[DatasetId, ...] = ()
    outputs: tuple[DatasetId, ...] = ()

    @classmethod
    def of(cls, inputs: Iterable[DatasetId] = (), outputs: Iterable[DatasetId] = ()) -> TaskLineage:
        """Build from any iterables, dropping repeats (first occurrence wins)."""
        return cls(_unique(inputs), _unique(outputs))

    def operator_lineage(self) -> object:
        """The provider's OperatorLineage (typed loosely: the provider is optional at parse)."""
        from airflow.providers.openlineage.extractors import OperatorLineage

        inputs: list[Any] = [as_input(d) for d in self.inputs]
        outputs: list[Any] = [as_output(d) for d in self.outputs]
        return OperatorLineage(inputs=inputs, outputs=outputs)


def _unique(items: Iterable[DatasetId]) -> tuple[DatasetId, ...]:
    seen: dict[tuple[str, str], DatasetId] = {}
    for item in items:
        seen.setdefault((item.namespace, item.name), item)
    return tuple(seen.values())
