"""Champion versus challenger on the same frozen holdout: paired bootstrap intervals and tests.

Conventions for every function here:

- Classification targets are integer class codes. Binary: 0/1 (or bool) and the output is the
  positive-class probability (a two-column probability matrix is accepted; its second column is
  used). Multiclass: codes 0..K-1 indexing the columns of the (n, K) probability matrix. Labels
  such as "yes"/"no" are encoded with `encode_labels` first.
- Hard predictions: binary positive iff the probability is > 0.5, multiclass the arg-max column,
  as scikit-learn's predict does.
- Regression targets and outputs are floats.
- An improvement is challenger minus champion, sign flipped for lower-is-better metrics, so a
  positive improvement always means the challenger is better.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from airmlops_core.jsonsafe import jsonable
from airmlops_core.spec import CLASSIFICATION_METRICS, LOWER_IS_BETTER, REGRESSION_METRICS

log = logging.getLogger(__name__)

__all__ = [
    "LOWER_IS_BETTER",
    "METRIC_FUNCS",
    "Comparison",
    "DeLongResult",
    "Interval",
    "McNemarResult",
    "compare",
    "delong_test",
    "encode_labels",
    "mcnemar_exact",
    "paired_bootstrap",
]

# Row indices gathered per chunk of resamples: small enough that the per-chunk arrays stay in
# cache, which is several times faster than one large (n_boot, n) matrix.
_CHUNK_ELEMENTS = 1 << 15

_Batch = Callable[[np.ndarray], np.ndarray]
"""Metric values of a (b, n) matrix of row indices: one value per resample, shape (b,)."""


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------


def encode_labels(y: Any, classes: Any) -> np.ndarray:
    """Class labels as codes 0..K-1 in the order of `classes` (a model's `classes_`).

    Raises:
        ValueError: a label is not among `classes`.
    """
    lookup = {c: i for i, c in enumerate(np.asarray(classes).tolist())}
    try:
        return np.array([lookup[v] for v in np.asarray(y).tolist()], dtype=np.int64)
    except KeyError as exc:
        raise ValueError(
            f"label {exc.args[0]!r} is not one of the classes {list(lookup)}"
        ) from None


def _kind(metric: str) -> str:
    if metric in REGRESSION_METRICS:
        return "regression"
    if metric in CLASSIFICATION_METRICS:
        return "classification"
    known = sorted(CLASSIFICATION_METRICS | REGRESSION_METRICS)
    raise ValueError(f"unknown metric '{metric}'; choose from {known}")


def _inputs(y_true: Any, output: Any, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (y, output): float arrays for regression, int codes and probabilities otherwise."""
    kind = _kind(metric)
    out = np.asarray(output, dtype=np.float64)
    y = np.asarray(y_true)
    if out.ndim == 0 or y.ndim != 1 or len(y) != out.shape[0]:
        raise ValueError(f"y_true has shape {y.shape} but the output has shape {out.shape}")
    if not np.isfinite(out).all():
        raise ValueError("the model output holds NaN or infinite values")
    if kind == "regression":
        if out.ndim != 1:
            raise ValueError(f"regression output must be 1-D, got shape {out.shape}")
        y = y.astype(np.float64)
        if not np.isfinite(y).all():
            raise ValueError("y_true holds NaN or infinite values")
        return y, out
    if out.ndim == 2 and out.shape[1] == 2:
        out = out[:, 1]
    if out.ndim not in (1, 2):
        raise ValueError(f"classification output must be 1-D or 2-D, got shape {out.shape}")
    if y.dtype.kind == "b":
        codes = y.astype(np.int64)
    elif y.dtype.kind in "iuf":
        codes = y.astype(np.int64)
        if not np.array_equal(codes, y):
            raise ValueError("y_true must hold integer class codes")
    else:
        raise ValueError(
            f"y_true must hold integer class codes, got dtype {y.dtype}; "
            "encode labels with encode_labels(y, model.classes_)"
        )
    n_classes = 2 if out.ndim == 1 else out.shape[1]
    if len(codes) and (codes.min() < 0 or codes.max() >= n_classes):
        raise ValueError(f"class codes must lie in 0..{n_classes - 1}")
    return codes, out


def _hard(out: np.ndarray) -> np.ndarray:
    """Predicted class codes from probabilities."""
    return (out > 0.5).astype(np.int64) if out.ndim == 1 else np.argmax(out, axis=1)


# --------------------------------------------------------------------------------------------
# Metrics, batched over resamples
# --------------------------------------------------------------------------------------------


def _offset_counts(code: np.ndarray, bins: int, idx: np.ndarray) -> np.ndarray:
    """Per-resample histograms of `code[idx]`, shape (b, bins)."""
    b = idx.shape[0]
    keys = code[idx]
    if b > 1:
        keys += (np.arange(b, dtype=keys.dtype) * bins)[:, None]
    return np.bincount(keys.ravel(), minlength=b * bins).reshape(b, bins)


def _tie_groups(y01: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, int, bool]:
    """Per row the code 2*g + y, g the dense rank of its score (ties share g); 2 * the number of
    groups; and whether any tie group holds both a positive and a negative."""
    uniq, dense = np.unique(score, return_inverse=True)
    code = (dense.astype(np.intp) * 2 + y01).astype(np.intp)
    per_group = np.bincount(code, minlength=2 * len(uniq)).reshape(-1, 2)
    mixed = bool(np.any((per_group[:, 0] > 0) & (per_group[:, 1] > 0)))
    return code, 2 * len(uniq), mixed


def _auc_from_counts(cnt: np.ndarray, mixed: bool) -> np.ndarray:
    """ROC AUC from per-tie-group (negatives, positives) counts in ascending score order, (b, m, 2).

    Mann-Whitney in integers, so the AUC is exact: 2U = sum_g P_g * (2 * N_upto_g - N_g), where
    the last term only matters when a tie group mixes the classes (`mixed`).
    """
    neg, pos = cnt[..., 0], cnt[..., 1]
    cum_neg = np.cumsum(neg, axis=1)
    n_neg = cum_neg[:, -1]
    n_pos = pos.sum(axis=1)
    u2 = 2 * np.einsum("ij,ij->i", pos, cum_neg)
    if mixed:
        u2 -= np.einsum("ij,ij->i", pos, neg)
    denom = 2 * n_pos * n_neg
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, u2 / np.where(denom > 0, denom, 1), np.nan)


def _ap_from_counts(cnt: np.ndarray, _mixed: bool) -> np.ndarray:
    """Average precision (scikit-learn's step-wise definition) from per-tie-group counts."""
    neg, pos = cnt[:, ::-1, 0], cnt[:, ::-1, 1]
    tp = np.cumsum(pos, axis=1)
    called = tp + np.cumsum(neg, axis=1)
    precision = np.divide(tp, called, out=np.zeros(tp.shape), where=called > 0)
    total = tp[:, -1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(total > 0, np.einsum("ij,ij->i", pos, precision) / total, np.nan)


def _ranking(
    y: np.ndarray, out: np.ndarray, stat: Callable[[np.ndarray, bool], np.ndarray]
) -> _Batch:
    """ROC AUC or AP: binary, or one-vs-rest macro over classes present as positive and negative."""
    if out.ndim == 1:
        columns = [(y, out)]
    else:
        columns = [
            ((y == k).astype(np.intp), out[:, k])
            for k in range(out.shape[1])
            if 0 < np.count_nonzero(y == k) < len(y)
        ]
        if not columns:
            return lambda idx: np.full(idx.shape[0], np.nan)
    groups = [_tie_groups(yk.astype(np.intp), sk) for yk, sk in columns]

    def batch(idx: np.ndarray) -> np.ndarray:
        vals = [
            stat(_offset_counts(code, bins, idx).reshape(idx.shape[0], -1, 2), mixed)
            for code, bins, mixed in groups
        ]
        return vals[0] if len(vals) == 1 else np.mean(vals, axis=0)

    return batch


def _roc_auc(y: np.ndarray, out: np.ndarray) -> _Batch:
    return _ranking(y, out, _auc_from_counts)


def _pr_auc(y: np.ndarray, out: np.ndarray) -> _Batch:
    return _ranking(y, out, _ap_from_counts)


def _accuracy(y: np.ndarray, out: np.ndarray) -> _Batch:
    correct = _hard(out) == y
    return lambda idx: np.count_nonzero(correct[idx], axis=1) / idx.shape[1]


def _f1(y: np.ndarray, out: np.ndarray) -> _Batch:
    """Binary F1 of class 1, or macro F1 over the classes seen in the truth or the predictions."""
    k = 2 if out.ndim == 1 else out.shape[1]
    code = (y * k + _hard(out)).astype(np.intp)
    binary = out.ndim == 1

    def batch(idx: np.ndarray) -> np.ndarray:
        cm = _offset_counts(code, k * k, idx).reshape(idx.shape[0], k, k)
        tp = np.diagonal(cm, axis1=1, axis2=2)
        denom = cm.sum(axis=2) + cm.sum(axis=1)  # 2TP + FN + FP
        f1 = np.divide(2 * tp, denom, out=np.zeros(tp.shape), where=denom > 0)
        if binary:
            return f1[:, 1]
        present = np.count_nonzero(denom, axis=1)
        return f1.sum(axis=1) / np.maximum(present, 1)

    return batch


def _log_loss(y: np.ndarray, out: np.ndarray) -> _Batch:
    """Mean cross-entropy, probabilities clipped to [eps, 1 - eps] as scikit-learn does."""
    eps = np.finfo(np.float64).eps
    if out.ndim == 1:
        p_true = np.where(y == 1, out, 1.0 - out)
    else:
        p_true = out[np.arange(len(y)), y]
    loss = -np.log(np.clip(p_true, eps, 1 - eps))
    return lambda idx: loss[idx].mean(axis=1)


def _mae(y: np.ndarray, out: np.ndarray) -> _Batch:
    err = np.abs(y - out)
    return lambda idx: err[idx].mean(axis=1)


def _rmse(y: np.ndarray, out: np.ndarray) -> _Batch:
    sq = (y - out) ** 2
    return lambda idx: np.sqrt(sq[idx].mean(axis=1))


def _r2(y: np.ndarray, out: np.ndarray) -> _Batch:
    """R2 with scikit-learn's finite convention: 1 for a perfect fit, 0 for a constant truth."""
    sq = (y - out) ** 2
    yc = y - y.mean() if len(y) else y  # centred once: the per-resample variance stays accurate
    yc2 = yc**2

    def batch(idx: np.ndarray) -> np.ndarray:
        ss_res = sq[idx].sum(axis=1)
        s1 = yc[idx].sum(axis=1)
        ss_tot = yc2[idx].sum(axis=1) - s1 * s1 / idx.shape[1]
        with np.errstate(invalid="ignore", divide="ignore"):
            r2 = 1.0 - ss_res / ss_tot
        return np.where(ss_tot > 0, r2, np.where(ss_res == 0, 1.0, 0.0))

    return batch


_BATCHED: dict[str, Callable[[np.ndarray, np.ndarray], _Batch]] = {
    "roc_auc": _roc_auc,
    "pr_auc": _pr_auc,
    "log_loss": _log_loss,
    "accuracy": _accuracy,
    "f1": _f1,
    "rmse": _rmse,
    "mae": _mae,
    "r2": _r2,
}


def _metric_func(name: str) -> Callable[[Any, Any], float]:
    def metric(y_true: Any, output: Any) -> float:
        y, out = _inputs(y_true, output, name)
        if len(y) == 0:
            return math.nan
        return float(_BATCHED[name](y, out)(np.arange(len(y))[None, :])[0])

    metric.__name__ = name
    metric.__doc__ = f"{name} of the output on y_true (see the module docstring for conventions)."
    return metric


METRIC_FUNCS: dict[str, Callable[[Any, Any], float]] = {n: _metric_func(n) for n in _BATCHED}
"""The metric of each name on (y_true, model output); NaN where undefined (AUC of one class)."""


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


def _strata(y: np.ndarray, stratify: bool) -> tuple[np.ndarray, list[int]]:
    """Row order grouping each class together (ascending code, rows ascending) and stratum sizes."""
    if not stratify:
        return np.arange(len(y)), [len(y)]
    order = np.argsort(y, kind="stable")
    sizes = [int(c) for c in np.bincount(y) if c > 0]
    return order, sizes


def _resamples(sizes: list[int], n_boot: int, seed: int, chunk: int) -> Iterator[np.ndarray]:
    """Chunks of resampled positions into the stratum-ordered rows, shape (b, n) each.

    For resample after resample, and for each stratum in turn, one call
    `rng.integers(0, n_k, size=n_k)` with `rng = np.random.default_rng(seed)` picks positions
    within the stratum. The stream does not depend on the chunk size.
    """
    rng = np.random.default_rng(seed)
    starts = np.cumsum([0, *sizes[:-1]]).tolist()
    n = sum(sizes)
    done = 0
    while done < n_boot:
        b = min(chunk, n_boot - done)
        idx = np.empty((b, n), dtype=np.intp)
        for r in range(b):
            for start, size in zip(starts, sizes, strict=True):
                np.add(rng.integers(0, size, size=size), start, out=idx[r, start : start + size])
        done += b
        yield idx


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
        y_true: Targets (see the module docstring for the encoding).
        champion_out: The champion's probabilities or predictions on the same rows.
        challenger_out: The challenger's, same shape.
        metric: A name in METRIC_FUNCS.
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
    y, champ = _inputs(y_true, champion_out, metric)
    _, chall = _inputs(y_true, challenger_out, metric)
    if champ.shape != chall.shape:
        raise ValueError(
            f"champion output {champ.shape} and challenger output {chall.shape} differ"
        )
    if n_boot < 1:
        raise ValueError(f"n_boot must be positive, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    n = len(y)
    if n < 2:
        raise ValueError(f"need at least 2 rows, got {n}")
    classification = _kind(metric) == "classification"
    if stratify is None:
        stratify = classification
    if stratify and not classification:
        raise ValueError(f"'{metric}' is a regression metric: there are no classes to stratify by")

    order, sizes = _strata(y, stratify)
    y_r = y[order]
    f_champ = _BATCHED[metric](y_r, champ[order])
    f_chall = _BATCHED[metric](y_r, chall[order])
    if metric in LOWER_IS_BETTER:  # so that positive always means the challenger is better
        f_champ, f_chall = f_chall, f_champ
    chunk = max(1, _CHUNK_ELEMENTS // n)
    diffs = np.concatenate(
        [f_chall(idx) - f_champ(idx) for idx in _resamples(sizes, n_boot, seed, chunk)]
    )
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
    low, high = np.percentile(diffs, [50.0 * (1.0 - level), 50.0 * (1.0 + level)])
    champion = METRIC_FUNCS[metric](y, champ)
    challenger = METRIC_FUNCS[metric](y, chall)
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

    y, s0 = _inputs(y_true, champion_score, "roc_auc")
    _, s1 = _inputs(y_true, challenger_score, "roc_auc")
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

    y, c0 = _inputs(y_true, champion_out, "accuracy")
    _, c1 = _inputs(y_true, challenger_out, "accuracy")
    ok0, ok1 = _hard(c0) == y, _hard(c1) == y
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
        y_true: Targets (see the module docstring).
        champion_out: The champion's output on the holdout.
        challenger_out: The challenger's output on the same holdout.
        metric: A name in METRIC_FUNCS.
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
        _, out = _inputs(y_true, champion_out, metric)
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
