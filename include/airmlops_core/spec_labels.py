"""The spec's `labels:` section: where labels that land after scoring are read.

Cheap to import (pydantic only); kept apart from spec.py, which is near the module size limit.
"""

from __future__ import annotations

from typing import Literal

from pydantic import model_validator

from airmlops_core.yaml_schema import StrictModel


class Labels(StrictModel):
    """Where labels that land after scoring are read (joined to scored rows on the row key).

    kind=file: `uri` is a .parquet/.csv file or a directory of them, absolute or relative to
    the data directory (default labels/<model>/). kind=s3: `uri` is an s3:// file or prefix,
    read with the AWS connection `conn_id`. kind=sql: `query` returns the row key and target
    columns, run on the Airflow SQL connection `conn_id`.
    """

    kind: Literal["file", "s3", "sql"] = "file"
    uri: str | None = None
    query: str | None = None
    conn_id: str | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> Labels:
        if self.kind == "sql":
            if not (self.query and self.query.strip() and self.conn_id):
                raise ValueError("kind 'sql' needs 'query' and 'conn_id'")
            if self.uri:
                raise ValueError("kind 'sql' reads 'query', not 'uri'")
        elif self.query:
            raise ValueError(f"kind '{self.kind}' reads 'uri'; 'query' needs kind 'sql'")
        if self.kind == "s3" and not (self.uri or "").startswith("s3://"):
            raise ValueError(f"kind 's3' needs an s3:// uri, got {self.uri!r}")
        if self.kind == "file" and (self.uri or "").startswith("s3://"):
            raise ValueError(f"an s3:// uri needs kind 's3', got kind 'file' ({self.uri})")
        return self
