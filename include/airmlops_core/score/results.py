"""What the score path's steps hand to each other (XCom): plain JSON-able dicts, typed.

Here rather than in `flow` because `stream` and `gate`, below `flow`, build the partition
results.
"""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class ScoreResolved(TypedDict):
    """The champion's version pinned for the run, and the run's MLflow run (`resolve_step`);
    the waiting challenger scored in its shadow, if any (`score.shadow`)."""

    version: str
    mlflow_run_id: str
    shadow: NotRequired[str]


class PartitionCheck(TypedDict):
    """The batch suite's verdict on a scored partition."""

    success: bool
    warnings: int
    summary: str


class PartitionOutcome(TypedDict):
    """One partition, scored (`stream.score_staged`) or quarantined (`gate.score_or_quarantine`).

    `output_uri` and `output_sha256` are None for a quarantined partition.
    """

    status: Literal["scored", "quarantined"]
    partition: str
    input_uri: str
    input_sha256: str
    output_uri: str | None
    output_sha256: str | None
    rows_in: int
    rows_out: int
    quarantined_rows: int
    model_name: str
    model_version: str
    logical_date: str
    seconds: float
    peak_rss_mib: float
    # scored only
    rows_per_second: NotRequired[float]
    check: NotRequired[PartitionCheck]
    # quarantined only
    failed_rules: NotRequired[list[str]]
    message: NotRequired[str]
    quarantine_uri: NotRequired[str]
    quarantined_input: NotRequired[str]


class ShadowOutcome(TypedDict):
    """One partition scored by the shadow version (`shadow.score_shadow`), or why it was not."""

    version: str
    status: Literal["scored", "failed"]
    outcome: NotRequired[PartitionOutcome]
    error: NotRequired[str]


class PartitionResult(PartitionOutcome):
    """A partition's outcome and the task's resource use (`score_step`); with a shadow version,
    its outcome on the same partition (never part of the production outputs or manifest)."""

    usage: dict[str, float]
    shadow: NotRequired[ShadowOutcome]


class ShadowPublished(TypedDict):
    """The run's shadow scoring (`shadow.publish_shadow`): its manifest, whether every scored
    partition was shadow-scored, the version's completed shadow runs, and whether this run
    hands the version back to the gate (`ready`: emit the candidate Asset)."""

    version: str
    status: Literal["complete", "failed"]
    manifest_uri: str | None
    errors: list[str]
    runs: int
    needed: int
    ready: bool


class Published(TypedDict):
    """The run's manifest, totals and metrics (`publish_step`)."""

    summary: str
    manifest_uri: str
    totals: dict[str, int]
    metrics: dict[str, float]
    version: str
    run_url: str
    outputs: list[str | None]
    shadow: NotRequired[ShadowPublished]
