"""Model metrics on a holdout, vectorised over bootstrap resamples, and the resampling itself.

Conventions for every function here (and for the comparisons and drift checks built on them):

- Classification targets are integer class codes. Binary: 0/1 (or bool) and the output is the
  positive-class probability (a two-column probability matrix is accepted; its second column is
  used). Multiclass: codes 0..K-1 indexing the columns of the (n, K) probability matrix. Labels
  such as "yes"/"no" are encoded with `encode_labels` first.
- Hard predictions: binary positive iff the probability is > 0.5, multiclass the arg-max column,
  as scikit-learn's predict does.
- Regression targets and outputs are floats.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from airmlops_core.spec import CLASSIFICATION_METRICS, REGRESSION_METRICS

__all__ = [
    "BATCHED",
    "CHUNK_ELEMENTS",
    "METRIC_FUNCS",
    "Batch",
    "encode_labels",
    "hard_predictions",
    "metric_inputs",
    "metric_kind",
    "resample_values",
    "strata",
]

CHUNK_ELEMENTS = 1 << 15
"""Row indices gathered per chunk of resamples: small enough that the per-chunk arrays stay in
cache, which is several times faster than one large (n_boot, n) matrix."""

Batch = Callable[[np.ndarray], np.ndarray]
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


def metric_kind(metric: str) -> str:
    if metric in REGRESSION_METRICS:
        return "regression"
    if metric in CLASSIFICATION_METRICS:
        return "classification"
    known = sorted(CLASSIFICATION_METRICS | REGRESSION_METRICS)
    raise ValueError(f"unknown metric '{metric}'; choose from {known}")


def metric_inputs(y_true: Any, output: Any, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Validated (y, output): float arrays for regression, int codes and probabilities otherwise."""
    kind = metric_kind(metric)
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


def hard_predictions(out: np.ndarray) -> np.ndarray:
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
) -> Batch:
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


def _roc_auc(y: np.ndarray, out: np.ndarray) -> Batch:
    return _ranking(y, out, _auc_from_counts)


def _pr_auc(y: np.ndarray, out: np.ndarray) -> Batch:
    return _ranking(y, out, _ap_from_counts)


def _accuracy(y: np.ndarray, out: np.ndarray) -> Batch:
    correct = hard_predictions(out) == y
    return lambda idx: np.count_nonzero(correct[idx], axis=1) / idx.shape[1]


def _f1(y: np.ndarray, out: np.ndarray) -> Batch:
    """Binary F1 of class 1, or macro F1 over the classes seen in the truth or the predictions."""
    k = 2 if out.ndim == 1 else out.shape[1]
    code = (y * k + hard_predictions(out)).astype(np.intp)
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


def _log_loss(y: np.ndarray, out: np.ndarray) -> Batch:
    """Mean cross-entropy, probabilities clipped to [eps, 1 - eps] as scikit-learn does."""
    eps = np.finfo(np.float64).eps
    if out.ndim == 1:
        p_true = np.where(y == 1, out, 1.0 - out)
    else:
        p_true = out[np.arange(len(y)), y]
    loss = -np.log(np.clip(p_true, eps, 1 - eps))
    return lambda idx: loss[idx].mean(axis=1)


def _mae(y: np.ndarray, out: np.ndarray) -> Batch:
    err = np.abs(y - out)
    return lambda idx: err[idx].mean(axis=1)


def _rmse(y: np.ndarray, out: np.ndarray) -> Batch:
    sq = (y - out) ** 2
    return lambda idx: np.sqrt(sq[idx].mean(axis=1))


def _r2(y: np.ndarray, out: np.ndarray) -> Batch:
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


BATCHED: dict[str, Callable[[np.ndarray, np.ndarray], Batch]] = {
    "roc_auc": _roc_auc,
    "pr_auc": _pr_auc,
    "log_loss": _log_loss,
    "accuracy": _accuracy,
    "f1": _f1,
    "rmse": _rmse,
    "mae": _mae,
    "r2": _r2,
}
"""Per metric name: (y, output) of validated inputs (`metric_inputs`) -> its Batch."""


def _metric_func(name: str) -> Callable[[Any, Any], float]:
    def metric(y_true: Any, output: Any) -> float:
        y, out = metric_inputs(y_true, output, name)
        if len(y) == 0:
            return math.nan
        return float(BATCHED[name](y, out)(np.arange(len(y))[None, :])[0])

    metric.__name__ = name
    metric.__doc__ = f"{name} of the output on y_true (see the module docstring for conventions)."
    return metric


METRIC_FUNCS: dict[str, Callable[[Any, Any], float]] = {n: _metric_func(n) for n in BATCHED}
"""The metric of each name on (y_true, model output); NaN where undefined (AUC of one class)."""


# --------------------------------------------------------------------------------------------
# Stratified resampling
# --------------------------------------------------------------------------------------------


def strata(y: np.ndarray, stratify: bool) -> tuple[np.ndarray, list[int]]:
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


def resample_values(batch: Batch, sizes: list[int], n_boot: int, seed: int) -> np.ndarray:
    """`batch` on `n_boot` resamples of the stratum-ordered rows (`_resamples`): (n_boot,) values.

    The resamples are drawn in chunks of about CHUNK_ELEMENTS row indices; the values do not
    depend on the chunk size.
    """
    chunk = max(1, CHUNK_ELEMENTS // sum(sizes))
    return np.concatenate([batch(idx) for idx in _resamples(sizes, n_boot, seed, chunk)])
