"""Champion versus challenger on the same frozen holdout: paired bootstrap intervals and tests.

Targets and outputs follow the conventions of airmlops_core.stats.metrics. An improvement is
challenger minus champion, sign flipped for lower-is-better metrics, so a positive improvement
always means the challenger is better.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from airmlops_core.jsonsafe import jsonable
from airmlops_core.spec import LOWER_IS_BETTER
from airmlops_core.stats import metrics

log = logging.getLogger(__name__)

__all__ = [
    "Comparison",
    "DeLongResult",
    "Interval",
    "McNemarResult",
    "compare",
    "delong_test",
    "mcnemar_exact",
    "paired_bootstrap",
]


# --------------------------------------------------------------------------------------------
# Paired bootstrap
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A paired estimate of the challenger's improvement over the champion with its interval.

    `diff` is challenger - champion, sign flipped for lower-is-better metrics: positive means the
    challenger is better. `low`/`high` bound `diff` at confidence `level`. `p_value` comes from an
    exact or well-known paired test named by `test` (DeLong for ROC AUC, McNemar for accuracy).
    """

    metric: str
    champion: float
    challenger: float
    diff: float
    low: float
    high: float
    level: float
    method: str
    n: int
    n_boot: int | None
    p_value: float | None
    test: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


def paired_differences(
    y_true: Any,
    champion_out: Any,
    challenger_out: Any,
    metric: str,
    *,
    n_boot: int = 2000,
    seed: int = 0,
    stratify: bool | None = None,
) -> np.ndarray:
    """The challenger's improvement on each paired resample (positive: better), the
    distribution `paired_bootstrap` takes its interval from; undefined resamples dropped.

    Same arguments as `paired_bootstrap` (which documents the resampling) without `level`.

    Raises:
        ValueError: unknown metric, mismatched inputs, bad n_boot, or no usable resample.
    """
    y, champ = metrics.metric_inputs(y_true, champion_out, metric)
    _, chall = metrics.metric_inputs(y_true, challenger_out, metric)
    if champ.shape != chall.shape:
        raise ValueError(
            f"champion output {champ.shape} and challenger output {chall.shape} differ"
        )
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    n = len(y)
    if n < 2:
        raise ValueError(f"need at least 2 rows, got {n}")
    classification = metrics.metric_kind(metric) == "classification"
    if stratify is None:
        stratify = classification
    if stratify and not classification:
        raise ValueError(f"'{metric}' is a regression metric: there are no classes to stratify by")

    order, sizes = metrics.strata(y, stratify)
    y_r = y[order]
    f_champ = metrics.BATCHED[metric](y_r, champ[order])
    f_chall = metrics.BATCHED[metric](y_r, chall[order])
    if metric in LOWER_IS_BETTER:  # so that positive always means the challenger is better
        f_champ, f_chall = f_chall, f_champ
    diffs = metrics.resample_values(lambda idx: f_chall(idx) - f_champ(idx), sizes, n_boot, seed)
    finite = np.isfinite(diffs)
    if not finite.any():
        raise ValueError(f"{metric} is undefined on every resample")
    if not finite.all():
        log.warning(
            "%s undefined on %d of %d resamples; they are dropped",
            metric,
            int((~finite).sum()),
            n_boot,
        )
        diffs = diffs[finite]
    return diffs


def paired_bootstrap(
    y_true: Any,
    champion_out: Any,
    challenger_out: Any,
    metric: str,
    *,
    n_boot: int = 2000,
    level: float = 0.95,
    seed: int = 0,
    stratify: bool | None = None,
) -> Interval:
    """Percentile interval of the challenger's improvement, both models on the same resamples.

    Each resample draws rows with replacement and scores both models on those same rows, so the
    interval reflects the paired difference, not two independent uncertainties. Classification
    resamples are stratified by class (each keeps the holdout's class counts, so AUC is always
    defined). Resample r takes, for each class code k in ascending order, the rows
    `rows_k[rng.integers(0, n_k, size=n_k)]` (`rows_k` the rows of class k in ascending order,
    `rng = np.random.default_rng(seed)`, one call per class per resample); without strata the
    whole holdout is the one stratum. Resamples where the metric is undefined are dropped.

    Args:
        y_true: Targets (encoded as airmlops_core.stats.metrics says).
        champion_out: The champion's probabilities or predictions on the same rows.
        challenger_out: The challenger's, same shape.
        metric: A name in metrics.METRIC_FUNCS.
        n_boot: Number of resamples.
        level: Confidence level of the two-sided interval.
        seed: Seed of the resampling.
        stratify: Resample within classes; default True for classification metrics. Regression
            metrics cannot be stratified.

    Returns:
        The Interval, with no p-value (see `compare`).

    Raises:
        ValueError: unknown metric, mismatched inputs, bad n_boot/level, or no usable resample.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    diffs = paired_differences(
        y_true, champion_out, challenger_out, metric, n_boot=n_boot, seed=seed, stratify=stratify
    )
    y, champ = metrics.metric_inputs(y_true, champion_out, metric)
    _, chall = metrics.metric_inputs(y_true, challenger_out, metric)
    n = len(y)
    stratify = metrics.metric_kind(metric) == "classification" if stratify is None else stratify
    low, high = np.percentile(diffs, [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
    champion = metrics.METRIC_FUNCS[metric](y, champ)
    challenger = metrics.METRIC_FUNCS[metric](y, chall)
    method = "paired_stratified_bootstrap_percentile" if stratify else "paired_bootstrap_percentile"
    return Interval(
        metric=metric,
        champion=champion,
        challenger=challenger,
        diff=champion - challenger if metric in LOWER_IS_BETTER else challenger - champion,
        low=float(low),
        high=float(high),
        level=level,
        method=method,
        n=n,
        n_boot=int(diffs.size),
        p_value=None,
    )


# --------------------------------------------------------------------------------------------
# Paired tests
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeLongResult:
    """DeLong's paired test of two correlated ROC AUCs (diff = challenger - champion)."""

    auc_champion: float
    auc_challenger: float
    diff: float
    variance: float
    z: float
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


def _placements(pos: np.ndarray, neg: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """AUC and the DeLong placement values of positives (V10) and negatives (V01), via midranks."""
    from scipy import stats

    m, k = len(pos), len(neg)
    tx = stats.rankdata(pos)
    ty = stats.rankdata(neg)
    tz = stats.rankdata(np.concatenate([pos, neg]))
    v10 = (tz[:m] - tx) / k  # share of negatives below each positive (ties count half)
    v01 = 1.0 - (tz[m:] - ty) / m  # share of positives above each negative
    auc = float((tz[:m].sum() - m * (m + 1) / 2.0) / (m * k))
    return auc, v10, v01


def delong_test(y_true: Any, champion_score: Any, challenger_score: Any) -> DeLongResult:
    """DeLong's test for two paired binary ROC AUCs, with Sun and Xu's O(n log n) covariance.

    Raises:
        ValueError: not binary, or fewer than two positives or negatives.
    """
    from scipy import stats

    y, s0 = metrics.metric_inputs(y_true, champion_score, "roc_auc")
    _, s1 = metrics.metric_inputs(y_true, challenger_score, "roc_auc")
    if s0.ndim != 1 or s1.ndim != 1:
        raise ValueError("DeLong's test applies to binary scores (1-D)")
    is_pos = y == 1
    m, k = int(is_pos.sum()), int((~is_pos).sum())
    if m < 2 or k < 2:
        raise ValueError(f"need at least 2 positives and 2 negatives, got {m} and {k}")
    auc0, v10_0, v01_0 = _placements(s0[is_pos], s0[~is_pos])
    auc1, v10_1, v01_1 = _placements(s1[is_pos], s1[~is_pos])
    s10 = np.cov(np.vstack([v10_0, v10_1]))
    s01 = np.cov(np.vstack([v01_0, v01_1]))
    cov = s10 / m + s01 / k
    variance = float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1])
    diff = auc1 - auc0
    if variance > 0:
        z = diff / math.sqrt(variance)
        p = float(2.0 * stats.norm.sf(abs(z)))
    else:  # identical rankings (or perfect separation by both): no evidence of a difference
        z = 0.0 if diff == 0 else math.copysign(math.inf, diff)
        p = 1.0 if diff == 0 else 0.0
    return DeLongResult(
        auc_champion=auc0,
        auc_challenger=auc1,
        diff=diff,
        variance=max(variance, 0.0),
        z=z,
        p_value=p,
    )


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's exact test on the rows exactly one model classifies correctly."""

    champion_only: int
    challenger_only: int
    p_value: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def mcnemar_exact(y_true: Any, champion_out: Any, challenger_out: Any) -> McNemarResult:
    """Two-sided exact McNemar test: binomial(1/2) on the discordant pairs."""
    from scipy import stats

    y, c0 = metrics.metric_inputs(y_true, champion_out, "accuracy")
    _, c1 = metrics.metric_inputs(y_true, challenger_out, "accuracy")
    ok0, ok1 = metrics.hard_predictions(c0) == y, metrics.hard_predictions(c1) == y
    b = int(np.count_nonzero(ok0 & ~ok1))
    c = int(np.count_nonzero(~ok0 & ok1))
    p = 1.0 if b + c == 0 else float(stats.binomtest(c, b + c, 0.5).pvalue)
    return McNemarResult(champion_only=b, challenger_only=c, p_value=p)


# --------------------------------------------------------------------------------------------
# The comparison the gate decides on
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """The paired comparison, whether the challenger clears the margin, and why in one sentence."""

    interval: Interval
    margin: float
    challenger_better: bool
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "interval": self.interval.to_dict(),
            "margin": self.margin,
            "challenger_better": self.challenger_better,
            "reason": self.reason,
        }


def compare(
    y_true: Any, champion_out: Any, challenger_out: Any, metric: str, *, margin: float, **kw: Any
) -> Comparison:
    """Is the challenger better than the champion by more than `margin`, with confidence?

    The decision is `interval.low > margin` on the paired bootstrap interval of the improvement
    (same units as the metric, positive means better); a tie keeps the champion. The p-value of
    DeLong's test (binary ROC AUC) or McNemar's exact test (accuracy) is reported alongside.

    Args:
        y_true: Targets (encoded as airmlops_core.stats.metrics says).
        champion_out: The champion's output on the holdout.
        challenger_out: The challenger's output on the same holdout.
        metric: A name in metrics.METRIC_FUNCS.
        margin: Required improvement of the interval's lower bound (0: just better).
        **kw: Passed to `paired_bootstrap` (n_boot, level, seed, stratify).

    Returns:
        The Comparison.
    """
    interval = paired_bootstrap(y_true, champion_out, challenger_out, metric, **kw)
    test, p_value = _paired_test(y_true, champion_out, challenger_out, metric)
    if test is not None:
        interval = dataclasses.replace(interval, test=test, p_value=p_value)
    better = interval.low > margin
    return Comparison(
        interval=interval,
        margin=margin,
        challenger_better=better,
        reason=_reason(interval, margin, better),
    )


def _paired_test(
    y_true: Any, champion_out: Any, challenger_out: Any, metric: str
) -> tuple[str | None, float | None]:
    if metric == "accuracy":
        return "mcnemar_exact", mcnemar_exact(y_true, champion_out, challenger_out).p_value
    if metric == "roc_auc":
        _, out = metrics.metric_inputs(y_true, champion_out, metric)
        if out.ndim == 1:
            try:
                return "delong", delong_test(y_true, champion_out, challenger_out).p_value
            except ValueError as exc:
                log.warning("DeLong's test skipped: %s", exc)
    return None, None


def _g(x: float) -> str:
    return f"{x:.4g}"


def _reason(iv: Interval, margin: float, better: bool) -> str:
    pct = f"{100 * iv.level:g}%"
    detail = (
        f"champion {_g(iv.champion)} -> challenger {_g(iv.challenger)}; "
        f"{pct} CI {_g(iv.low)} to {_g(iv.high)}"
    )
    if iv.p_value is not None:
        names = {"delong": "DeLong", "mcnemar_exact": "McNemar"}
        detail += f", {names.get(iv.test or '', iv.test)} p={iv.p_value:.3g}"
    if better:
        return (
            f"{iv.metric} improves by {_g(iv.diff)} ({detail}): the lower bound clears "
            f"the margin {margin:g}"
        )
    if iv.diff == 0 and iv.low == 0 and iv.high == 0:
        return (
            f"{iv.metric} is the same for champion and challenger ({_g(iv.champion)}): "
            "a tie keeps the champion"
        )
    if iv.high < 0:
        return (
            f"{iv.metric} worsens by {_g(-iv.diff)} ({detail}): the challenger is worse "
            "than the champion"
        )
    return (
        f"{iv.metric} changes by {iv.diff:+.4g} ({detail}): the lower bound "
        f"{_g(iv.low)} does not clear the margin {margin:g}; a tie keeps the champion"
    )
