"""The spec's `alerts:` section: the Slack connection alerts go to, and run deadlines.

Cheap to import (pydantic only); kept apart from spec.py, which is near the module size limit.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from airmlops_core.yaml_schema import StrictModel, in_range

DeadlinePipeline = Literal["train", "validate", "score", "drift", "retrain"]


class Alerts(StrictModel):
    """Where alerts go, and run deadlines: minutes after a run is queued by which it must have
    finished (per pipeline, e.g. {train: 90}); a late run sends one alert.

    `conn_id` is a Slack incoming-webhook connection; the webhook fixes the channel (Slack
    ignores a channel sent with the message), so one channel is one connection. There is no
    `channel` field.
    """

    @model_validator(mode="before")
    @classmethod
    def _no_channel(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and "channel" in raw:
            raise ValueError(
                "'channel' is not read: the Slack webhook of connection 'conn_id' fixes the "
                "channel; remove 'channel' and use one connection per channel"
            )
        return raw

    conn_id: str = "slack_alerts"
    deadlines: dict[DeadlinePipeline, Annotated[float, in_range(0, 7 * 24 * 60, lo_open=True)]] = (
        Field(default_factory=dict)
    )
