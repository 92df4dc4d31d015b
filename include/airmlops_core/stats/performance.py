"""Performance drift: the champion's metric on a labelled window against its holdout value."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from airmlops_core.jsonsafe import jsonable
from airmlops_core.spec import LOWER_IS_BETTER
from airmlops_core.stats import metrics

__all__ = ["PerformanceDrift", "performance_drift"]


@dataclass(frozen=True)
class PerformanceDrift:
    """The window's metric vs the champion's holdout metric.

    `status` is "degraded" when the whole bootstrap interval of the window's metric is worse
    than `reference` by more than `max_drop` (metric units), "ok" otherwise, and
    "not_enough_data" below `min_rows` labelled rows or when the metric is undefined there.
    The holdout metric is taken as a fixed number.
    """

    metric: str
    status: str
    reference: float
    current: float | None
    low: float | None
    high: float | None
    level: float
    n: int
    n_boot: int
    max_drop: float
    reason: str

    @property
    def degraded(self) -> bool:
        return self.status == "degraded"

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PerformanceDrift:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def performance_drift(
    y_true: Any,
    output: Any,
    metric: str,
    *,
    reference: float,
    max_drop: float = 0.0,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    min_rows: int = 500,
) -> PerformanceDrift:
    """Has the champion's `metric` on a labelled window fallen below its holdout value?

    The interval is a percentile bootstrap of the window's metric (stratified by class for
    classification), with airmlops_core.stats.metrics' vectorised metrics and resampling.

    Args:
        y_true: Labels of the window, encoded as in airmlops_core.stats.metrics (class codes).
        output: The champion's output on those rows (probabilities or predictions).
        metric: A name in metrics.METRIC_FUNCS.
        reference: The champion's holdout value of `metric`.
        max_drop: Tolerated decay in metric units.
        level: Confidence level of the interval.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.
        min_rows: Fewer labelled rows: "not_enough_data".
    """
    if not 0.0 < level < 1.0 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got {level} and {n_boot}")
    y, out = metrics.metric_inputs(y_true, output, metric)  # also rejects unknown metrics
    n = len(y)
    lower_better = metric in LOWER_IS_BETTER

    def result(
        status: str, current: float | None, low: float | None, high: float | None, reason: str
    ) -> PerformanceDrift:
        return PerformanceDrift(
            metric=metric,
            status=status,
            reference=float(reference),
            current=current,
            low=low,
            high=high,
            level=level,
            n=n,
            n_boot=n_boot,
            max_drop=max_drop,
            reason=reason,
        )

    if n < min_rows:
        return result(
            "not_enough_data",
            None,
            None,
            None,
            f"{n:,} labelled rows, fewer than min_rows {min_rows:,}",
        )
    current = metrics.METRIC_FUNCS[metric](y, out)
    if not math.isfinite(current):
        return result(
            "not_enough_data",
            None,
            None,
            None,
            f"{metric} is undefined on the window (a single class?)",
        )
    classification = metrics.metric_kind(metric) == "classification"
    order, sizes = metrics.strata(y, classification)
    vals = metrics.resample_values(
        metrics.BATCHED[metric](y[order], out[order]), sizes, n_boot, seed
    )
    vals = vals[np.isfinite(vals)]
    low, high = (float(v) for v in np.percentile(vals, [50.0 * (1 - level), 50.0 * (1 + level)]))
    pct = f"{100 * level:g}% CI"
    detail = (
        f"{metric} {current:.4g} on {n:,} labelled rows ({pct} {low:.4g} to {high:.4g}) "
        f"vs holdout {reference:.4g}"
    )
    if lower_better:
        degraded = low > reference + max_drop
    else:
        degraded = high < reference - max_drop
    if degraded:
        return result(
            "degraded",
            current,
            low,
            high,
            f"{detail}: worse by more than {max_drop:g} with confidence",
        )
    return result("ok", current, low, high, f"{detail}: no decay beyond {max_drop:g} shown")
