"""The spec's monitoring sections: drift checks, live-traffic recording, retraining.

Cheap to import (pydantic only); kept apart from spec.py, which is near the module size limit.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from airmlops_core.yaml_schema import (
    Hours,
    NonNegative,
    OpenShare,
    Share,
    StrictModel,
    in_range,
)

__all__ = ["LiveRecording", "Monitoring", "Retrain"]


class LiveRecording(StrictModel):
    """Recording of the model API's traffic for the online drift window (serve.recording).

    A share `sample_rate` of requests is recorded (inputs, outputs, model version, time, the
    row key when the request has one) as small Parquet files under
    <AIRMLOPS_WORK_URI>/live/<model>/; each API worker's recorder process flushes every
    `flush_rows` rows or `flush_seconds` seconds and at shutdown, and a worker drops (and
    counts) records beyond `queue_rows` not yet written. Files older than `retention_days`
    are removed. The online drift check reads the last `window_hours` of records of the
    champion version.
    """

    sample_rate: Share = 0.1
    retention_days: Annotated[int, in_range(1, 3650)] = 30
    window_hours: Annotated[float, in_range(0, 24 * 365, lo_open=True)] = 24.0
    flush_rows: Annotated[int, in_range(1, 1_000_000)] = 1000
    flush_seconds: Annotated[float, in_range(0, 3600, lo_open=True)] = 30.0
    queue_rows: Annotated[int, in_range(1, 10_000_000)] = 100_000


class Monitoring(StrictModel):
    """Drift checks of the champion on scored data (see airmlops_core.stats.drift).

    A column drifts when its p-value survives Benjamini-Hochberg at `fdr` AND an effect size
    reaches its minimum; below `min_rows` the verdict is "not enough data".

    Before labels land, classifiers get a confidence-based performance estimate (see
    airmlops_core.stats.estimate): only when the champion's holdout calibration error is at
    most `calibration_max_ece`; it alerts below a metric floor or, with `estimated_drop_max`,
    more than that below the holdout's realised value.
    """

    fdr: OpenShare = 0.05
    min_rows: Annotated[int, in_range(2)] = 500
    min_wasserstein: NonNegative = 0.1  # in reference standard deviations
    min_psi: NonNegative = 0.1
    min_js: Share = 0.07
    window_runs: Annotated[int, in_range(1, 100)] = 3  # the last N scoring runs
    max_metric_drop: NonNegative = 0.02  # performance decay tolerated
    calibration_max_ece: Annotated[float, in_range(0, 1, lo_open=True)] = 0.05
    estimated_drop_max: Share | None = None  # None: the estimate alerts on floors only
    cooldown_hours: Hours = 24.0  # identical alerts suppressed
    retrain_on: list[Literal["drift", "label_drift", "performance"]] = Field(
        default_factory=lambda: ["performance"]  # type: ignore[arg-type]
    )
    live: LiveRecording | None = None  # None: the model API records no traffic
    sources: list[Literal["batch", "online"]] = Field(
        default_factory=lambda: ["batch"]  # type: ignore[arg-type]
    )

    @field_validator("sources")
    @classmethod
    def _some_sources(cls, v: list[str]) -> list[str]:
        if not v or len(set(v)) != len(v):
            raise ValueError(f"must name batch and/or online, each once (got {v})")
        return v

    @model_validator(mode="after")
    def _online_needs_live(self) -> Monitoring:
        if "online" in self.sources and self.live is None:
            raise ValueError(
                "sources includes online: set live (e.g. live: {sample_rate: 0.1}) so the "
                "model API records traffic"
            )
        return self


class Retrain(StrictModel):
    """How `<model>__retrain` rebuilds its training window, and how often it may run.

    `cooldown_hours` holds back automatic retrains (drift events, `schedules.retrain`) for that
    long after the last successful one; a manual run is never held back.
    """

    window: Literal["expanding", "sliding"] = "expanding"
    max_rows: Annotated[int, in_range(100)] | None = None  # sliding: keep the newest rows
    cooldown_hours: Hours = 24.0  # no retrain storms

    @model_validator(mode="after")
    def _sliding(self) -> Retrain:
        if self.window == "sliding" and not self.max_rows:
            raise ValueError("a sliding window needs max_rows")
        return self
