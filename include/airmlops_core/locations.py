"""Where a model's shared state lives (all through the data layer, `io.store`), and which AWS
connection reaches it when any of it is on S3."""

from __future__ import annotations

from airmlops_core import settings
from airmlops_core.io import data
from airmlops_core.io.labels import labels_uri
from airmlops_core.io.live import live_base
from airmlops_core.quality.evidence import quarantine_base
from airmlops_core.score.flow import input_uri, output_base
from airmlops_core.spec import ModelSpec

DEFAULT_AWS_CONN = "aws_default"


def state_uris(spec: ModelSpec) -> dict[str, str]:
    """Each place the model's DAGs hand state to each other, by what it holds."""
    out = {
        "work": settings.work_uri(),
        "scoring input": input_uri(spec),
        "scored outputs": output_base(spec),
        "quarantine": quarantine_base(spec),
    }
    if spec.labels.kind != "sql":
        out["labels"] = labels_uri(spec)
    if spec.monitoring.live is not None:
        out["live records"] = live_base(spec.name)
    return out


def uses_s3(spec: ModelSpec) -> bool:
    """Whether any of the model's state is on S3."""
    return any(data.is_s3(u) for u in state_uris(spec).values())


def aws_conn_id(spec: ModelSpec) -> str:
    """The AWS connection of the model's S3 state: `labels.conn_id` (kind s3), else
    `scoring.conn_id` (when scoring reads files, not a query), else aws_default."""
    if spec.labels.kind == "s3" and spec.labels.conn_id:
        return spec.labels.conn_id
    if spec.scoring.conn_id and not spec.scoring.query:
        return spec.scoring.conn_id
    return DEFAULT_AWS_CONN
