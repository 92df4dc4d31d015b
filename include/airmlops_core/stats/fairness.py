"""Group fairness metrics (fairlearn) and the fairness gate of the promotion decision."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

MISSING_GROUP = "(missing)"
"""The group name given to rows whose sensitive value is missing."""

COUNT = "count"
TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class GroupReport:
    """Per-group metrics for one sensitive feature and the spread of each metric across groups.

    `by_group` maps group -> metric -> value, with the group's row count under "count"; a metric
    undefined for a group (a true positive rate without positives) is NaN. `gaps` maps metric ->
    max - min over groups with at least `min_group_size` rows and a defined value; `gap_between`
    names those two groups (lowest, highest). Smaller groups are in `by_group` and `small_groups`
    but never in a gap. A metric defined for fewer than two eligible groups has no gap.
    """

    feature: str
    by_group: dict[str, dict[str, float]]
    gaps: dict[str, float]
    gap_between: dict[str, tuple[str, str]] = field(default_factory=dict)
    small_groups: list[str] = field(default_factory=list)
    min_group_size: int = 30

    def worst(self) -> tuple[str, float] | None:
        """(metric, gap) of the largest gap, or None without gaps."""
        if not self.gaps:
            return None
        metric = max(self.gaps, key=lambda m: self.gaps[m])
        return metric, self.gaps[metric]

    def to_dict(self) -> dict[str, Any]:
        return {
            "feature": self.feature,
            "by_group": {
                g: {m: _num(v) for m, v in vals.items()} for g, vals in self.by_group.items()
            },
            "gaps": {m: _num(v) for m, v in self.gaps.items()},
            "gap_between": {m: list(pair) for m, pair in self.gap_between.items()},
            "small_groups": list(self.small_groups),
            "min_group_size": self.min_group_size,
        }


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def _group_keys(sensitive: pd.Series) -> pd.Series:
    """Group names as strings on a fresh positional index; missing values get their own group."""
    values = [MISSING_GROUP if pd.isna(v) else str(v) for v in sensitive.tolist()]
    return pd.Series(
        values, name=str(sensitive.name) if sensitive.name is not None else None, dtype=object
    )


def group_metrics(
    y_true: Any,
    y_pred: Any,
    sensitive: pd.Series,
    *,
    task: str,
    min_group_size: int = 30,
    pos_label: Any = 1,
    feature: str | None = None,
) -> GroupReport:
    """Metrics per group of one sensitive feature, computed with fairlearn's MetricFrame.

    Binary: selection_rate, true_positive_rate and false_positive_rate of hard predictions
    (a group without positives has no true positive rate, one without negatives no false positive
    rate). Multiclass: accuracy. Regression: mean_absolute_error and mean_prediction.

    Args:
        y_true: Targets, aligned by position with `y_pred` and `sensitive`.
        y_pred: Hard predictions (labels), or predicted values for regression.
        sensitive: The sensitive feature; missing values form the group "(missing)".
        task: "binary", "multiclass" or "regression" (the spec's task).
        min_group_size: Groups with fewer rows are reported but left out of the gaps.
        pos_label: The positive label of a binary task.
        feature: Name of the feature in the report; default the Series name.

    Returns:
        The GroupReport.

    Raises:
        ValueError: an unknown task or inputs of different lengths.
    """
    from fairlearn.metrics import (
        MetricFrame,
        count,
        false_positive_rate,
        mean_prediction,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score, mean_absolute_error

    if task not in TASKS:
        raise ValueError(f"unknown task '{task}'; choose from {list(TASKS)}")
    yt, yp = np.asarray(y_true), np.asarray(y_pred)
    if not len(yt) == len(yp) == len(sensitive):
        raise ValueError(
            f"y_true, y_pred and sensitive have lengths {len(yt)}, {len(yp)}, {len(sensitive)}"
        )
    name = feature or (str(sensitive.name) if sensitive.name is not None else "sensitive")
    keys = _group_keys(sensitive).rename(name)
    metrics: dict[str, Any] = {COUNT: count}
    if task == "binary":
        labels = set(yt.tolist()) | set(yp.tolist())
        if pos_label not in labels and not labels <= {0, 1}:
            raise ValueError(
                f"pos_label {pos_label!r} is not among the labels "
                f"{sorted(map(str, labels))}; pass pos_label"
            )
        # Binarise first: fairlearn's rates infer the positive label from the values otherwise.
        yt = (yt == pos_label).astype(int)
        yp = (yp == pos_label).astype(int)
        metrics |= {
            "selection_rate": selection_rate,
            "true_positive_rate": true_positive_rate,
            "false_positive_rate": false_positive_rate,
            "_positives": _positives,
        }
    elif task == "multiclass":
        metrics["accuracy"] = accuracy_score
    else:
        yt, yp = yt.astype(np.float64), yp.astype(np.float64)
        metrics |= {"mean_absolute_error": mean_absolute_error, "mean_prediction": mean_prediction}
    frame = MetricFrame(metrics=metrics, y_true=yt, y_pred=yp, sensitive_features=keys).by_group
    by_group: dict[str, dict[str, float]] = {}
    for group, row in frame.iterrows():
        values = {str(m): float(v) for m, v in row.items()}
        if task == "binary":
            positives = values.pop("_positives")
            if positives == 0:  # fairlearn reports 0.0 where the rate is undefined
                values["true_positive_rate"] = math.nan
            if positives == values[COUNT]:
                values["false_positive_rate"] = math.nan
        by_group[str(group)] = values
    small = sorted(g for g, v in by_group.items() if v[COUNT] < min_group_size)
    gaps, between = _gaps(by_group, set(small))
    return GroupReport(
        feature=name,
        by_group=by_group,
        gaps=gaps,
        gap_between=between,
        small_groups=small,
        min_group_size=min_group_size,
    )


def _positives(y_true: Any, y_pred: Any) -> float:
    return float(np.count_nonzero(np.asarray(y_true) == 1))


def _gaps(
    by_group: dict[str, dict[str, float]], small: set[str]
) -> tuple[dict[str, float], dict[str, tuple[str, str]]]:
    metrics = sorted({m for v in by_group.values() for m in v} - {COUNT})
    gaps: dict[str, float] = {}
    between: dict[str, tuple[str, str]] = {}
    for metric in metrics:
        vals = {
            g: v[metric]
            for g, v in by_group.items()
            if g not in small and math.isfinite(v.get(metric, math.nan))
        }
        if len(vals) < 2:
            continue
        lo, hi = min(vals, key=lambda g: vals[g]), max(vals, key=lambda g: vals[g])
        gaps[metric] = vals[hi] - vals[lo]
        between[metric] = (lo, hi)
    return gaps, between


@dataclass(frozen=True)
class FairnessResult:
    """The fairness gate's verdict: the worst gaps of both models and the reports behind them."""

    passed: bool
    worst_gap_challenger: float
    worst_gap_champion: float | None
    reasons: list[str]
    reports: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "worst_gap_challenger": self.worst_gap_challenger,
            "worst_gap_champion": self.worst_gap_champion,
            "reasons": list(self.reasons),
            "reports": self.reports,
        }

    def summary(self) -> dict[str, Any]:
        """to_dict without the per-group values: small enough for a registry tag."""
        out = self.to_dict()
        out["reports"] = {
            who: None if reports is None else {r["feature"]: r["gaps"] for r in reports}
            for who, reports in self.reports.items()
        }
        return out


def _worst(reports: list[GroupReport]) -> tuple[float, str]:
    """The largest gap over features and metrics, and where it is."""
    best: tuple[float, str] | None = None
    for report in reports:
        w = report.worst()
        if w is not None and (best is None or w[1] > best[0]):
            lo, hi = report.gap_between[w[0]]
            best = (w[1], f"{w[0]} by {report.feature}: {hi} vs {lo}")
    return best or (0.0, "no gap: fewer than two groups large enough")


def fairness_gate(
    champion: list[GroupReport] | None,
    challenger: list[GroupReport],
    *,
    tolerance: float,
    max_gap: float | None = None,
) -> FairnessResult:
    """Block a challenger whose worst group gap is more than `tolerance` above the champion's.

    The worst gap is the largest max - min across groups over every sensitive feature and metric.
    Without a champion the gate passes and reports the challenger's gaps, unless `max_gap` (an
    absolute ceiling that applies with or without a champion) is exceeded.

    Args:
        champion: The champion's reports on the same holdout, or None when there is no champion.
        challenger: The challenger's reports.
        tolerance: How much worse than the champion the challenger's worst gap may be.
        max_gap: Optional absolute ceiling on the challenger's worst gap.

    Returns:
        The FairnessResult; its reasons say why it blocks, or what it checked when it passes.
    """
    reports: dict[str, Any] = {
        "challenger": [r.to_dict() for r in challenger],
        "champion": None if champion is None else [r.to_dict() for r in champion],
    }
    if not challenger:
        return FairnessResult(
            passed=True,
            worst_gap_challenger=0.0,
            worst_gap_champion=None,
            reasons=["fairness: no sensitive features to check"],
            reports=reports,
        )
    gap, where = _worst(challenger)
    champ_gap, champ_where = _worst(champion) if champion is not None else (None, "")
    blocks: list[str] = []
    if max_gap is not None and gap > max_gap:
        blocks.append(
            f"fairness: the challenger's worst gap {gap:.4g} ({where}) exceeds "
            f"the maximum {max_gap:g}"
        )
    if champ_gap is not None and gap > champ_gap + tolerance:
        blocks.append(
            f"fairness: the challenger's worst gap {gap:.4g} ({where}) exceeds the "
            f"champion's {champ_gap:.4g} ({champ_where}) by more than the tolerance "
            f"{tolerance:g}"
        )
    if blocks:
        reasons = blocks
    elif champ_gap is None:
        reasons = [
            f"fairness: no champion to compare with; the challenger's worst gap is "
            f"{gap:.4g} ({where})"
        ]
    else:
        reasons = [
            f"fairness: the challenger's worst gap {gap:.4g} ({where}) is within "
            f"{tolerance:g} of the champion's {champ_gap:.4g}"
        ]
    log.info("fairness gate %s: %s", "blocks" if blocks else "passes", "; ".join(reasons))
    return FairnessResult(
        passed=not blocks,
        worst_gap_challenger=gap,
        worst_gap_champion=champ_gap,
        reasons=reasons,
        reports=reports,
    )
