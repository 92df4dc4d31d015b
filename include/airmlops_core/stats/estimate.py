"""Performance before labels: a confidence-based performance estimate (CBPE) of a classifier.

With calibrated probabilities the labels are, in expectation, drawn from them: a row scored
p = 0.8 is positive with probability 0.8. The expected confusion matrix of a batch then follows
from its probabilities alone (NannyML's CBPE), so accuracy, F1 and ROC AUC can be estimated
the day a batch is scored, long before its labels land:

- hard predictions as `metrics.hard_predictions` makes them (binary: positive iff p > 0.5);
- expected TP = sum of p over rows predicted positive, FP = sum of 1 - p over them, FN = sum
  of p over rows predicted negative; accuracy = mean of p or 1 - p, whichever was predicted;
  F1 = 2 TP / (2 TP + FP + FN);
- ROC AUC = E[Mann-Whitney U] / E[n_pos * n_neg] in closed form over the score-sorted rows (the
  expected ROC curve's area; pairs of a row with itself excluded, ties counted half).

Multiclass: one-vs-rest per class column (accuracy of the arg-max, macro F1 and macro ROC AUC,
as `metrics` computes them on labels). The estimate is only as good as the calibration: it is
reported only when the champion's expected calibration error on its holdout is small enough
(`Calibration`, computed at training time), and it assumes the relation between features and
label has not changed (covariate shift only; concept drift is invisible without labels).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from airmlops_core.jsonsafe import jsonable
from airmlops_core.stats import metrics

__all__ = [
    "CALIBRATION_ARTIFACT",
    "ESTIMATED",
    "Calibration",
    "Estimate",
    "calibration",
    "estimate",
    "expected_metrics",
]

ESTIMATED = ("accuracy", "roc_auc", "f1")
"""The metrics the estimate covers (MLflow metrics `estimated_<name>`)."""
CALIBRATION_ARTIFACT = "calibration.json"
"""The holdout calibration, logged with every trained or onboarded version (monitoring/)."""
BINS = 10


def _columns(proba: np.ndarray) -> list[np.ndarray]:
    """The probability column of each one-vs-rest problem: one (binary) or one per class."""
    return [proba] if proba.ndim == 1 else [proba[:, k] for k in range(proba.shape[1])]


def _probabilities(output: Any) -> np.ndarray:
    """Validated probabilities: 1-D positive-class (a two-column matrix gives its second) or
    (n, K) rows summing to 1."""
    out = np.asarray(output, dtype=np.float64)
    if out.ndim == 2 and out.shape[1] == 2:
        out = out[:, 1]
    if out.ndim not in (1, 2) or (out.ndim == 2 and out.shape[1] < 2):
        raise ValueError(f"probabilities must be 1-D or (n, K >= 2), got shape {out.shape}")
    if not np.isfinite(out).all() or (out < 0).any() or (out > 1).any():
        raise ValueError("probabilities must be finite and in [0, 1]")
    if out.ndim == 2 and len(out) and not np.allclose(out.sum(axis=1), 1.0, atol=1e-6):
        raise ValueError("class probabilities must sum to 1 per row")
    return out


# --------------------------------------------------------------------------------------------
# Expected metrics


def _expected_auc(score: np.ndarray, p: np.ndarray) -> float:
    """E[U] / E[n_pos * n_neg] for labels ~ Bernoulli(p) ranked by `score` (ties count half)."""
    uniq, group = np.unique(score, return_inverse=True)
    pos = np.bincount(group, weights=p, minlength=len(uniq))
    neg = np.bincount(group, weights=1.0 - p, minlength=len(uniq))
    self_pairs = np.bincount(group, weights=p * (1.0 - p), minlength=len(uniq))
    below = np.cumsum(neg) - neg  # expected negatives scored lower than each group
    u = float(pos @ below + 0.5 * (pos @ neg - self_pairs.sum()))
    pairs = float(p.sum() * (1.0 - p).sum() - self_pairs.sum())
    return u / pairs if pairs > 0 else math.nan


def expected_metrics(output: Any) -> dict[str, float]:
    """Expected accuracy, ROC AUC and F1 of a batch if its labels follow its probabilities.

    Args:
        output: Binary: the positive-class probability (or the (n, 2) matrix); multiclass: the
            (n, K) probability matrix, columns in class-code order.

    Returns:
        {metric: value} for each of ESTIMATED, NaN on an empty batch.
    """
    proba = _probabilities(output)
    if len(proba) == 0:
        return dict.fromkeys(ESTIMATED, math.nan)
    pred = metrics.hard_predictions(proba)
    if proba.ndim == 1:
        accuracy = float(np.where(pred == 1, proba, 1.0 - proba).mean())
        cells = [(pred == 1, proba)]
    else:
        accuracy = float(proba[np.arange(len(proba)), pred].mean())
        cells = [(pred == k, proba[:, k]) for k in range(proba.shape[1])]
    f1s = []
    for called, p in cells:
        tp, fp, fn = p[called].sum(), (1.0 - p[called]).sum(), p[~called].sum()
        denom = 2 * tp + fp + fn
        if denom > 0:
            f1s.append(2 * tp / denom)
    aucs = [a for p in _columns(proba) if math.isfinite(a := _expected_auc(p, p))]
    return {
        "accuracy": accuracy,
        "roc_auc": float(np.mean(aucs)) if aucs else math.nan,
        "f1": float(np.mean(f1s)) if f1s else math.nan,
    }


# --------------------------------------------------------------------------------------------
# Calibration on the holdout


@dataclass(frozen=True)
class Calibration:
    """How well a model's probabilities match the frequencies on its holdout.

    `ece`: expected calibration error, sum over `BINS` equal-count bins of the predicted
    probability of (bin share) * |mean probability - observed frequency|; multiclass: the mean
    over classes of each one-vs-rest column's ECE (each column must be calibrated for the
    one-vs-rest estimate). `brier`: mean squared error of the probabilities (multiclass: summed
    over classes). `reliability`: per column, the bins (rows, mean probability, frequency).
    `realised`: the holdout's accuracy, ROC AUC and F1 from its labels; `estimated`: the
    estimate on the same rows (their gap is a second view of the calibration).
    """

    n: int
    ece: float
    brier: float
    reliability: list[list[dict[str, float]]]
    realised: dict[str, float]
    estimated: dict[str, float]

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        def num(v: Any) -> float:
            return math.nan if v is None else float(v)

        return cls(
            n=int(d["n"]),
            ece=num(d["ece"]),
            brier=num(d["brier"]),
            reliability=[list(col) for col in d.get("reliability", [])],
            realised={k: num(v) for k, v in d["realised"].items()},
            estimated={k: num(v) for k, v in d["estimated"].items()},
        )


def _reliability(p: np.ndarray, y: np.ndarray, bins: int) -> tuple[float, list[dict[str, float]]]:
    """ECE of one column over equal-count bins of `p` (ties kept in one bin), and the bins."""
    order = np.argsort(p, kind="stable")
    edges = np.unique(p[order][(len(p) * np.arange(1, bins)) // bins])
    which = np.searchsorted(edges, p, side="left")  # bin i: (edges[i-1], edges[i]]
    all_counts = np.bincount(which, minlength=len(edges) + 1)
    kept = all_counts > 0
    count = all_counts[kept]
    mean_p = np.bincount(which, weights=p, minlength=len(kept))[kept] / count
    freq = np.bincount(which, weights=y, minlength=len(kept))[kept] / count
    ece = float(np.sum(count * np.abs(mean_p - freq)) / len(p))
    rows = [
        {"rows": float(c), "mean_probability": float(m), "frequency": float(f)}
        for c, m, f in zip(count, mean_p, freq, strict=True)
    ]
    return ece, rows


def calibration(y_true: Any, output: Any, *, bins: int = BINS) -> Calibration:
    """The calibration of `output` on labelled rows (the holdout).

    Args:
        y_true: Class codes (see airmlops_core.stats.metrics).
        output: The model's probabilities on those rows (as in `expected_metrics`).
        bins: Equal-count bins of the reliability diagram.

    Raises:
        ValueError: no rows, mismatched shapes, or labels that are not class codes.
    """
    proba = _probabilities(output)
    y, proba = metrics.metric_inputs(y_true, proba, "accuracy")
    if len(y) == 0:
        raise ValueError("calibration needs labelled rows, got none")
    onehot = [y == 1] if proba.ndim == 1 else [y == k for k in range(proba.shape[1])]
    parts = [
        _reliability(p, t.astype(np.float64), bins)
        for p, t in zip(_columns(proba), onehot, strict=True)
    ]
    brier = sum(float(np.mean((p - t) ** 2)) for p, t in zip(_columns(proba), onehot, strict=True))
    return Calibration(
        n=len(y),
        ece=float(np.mean([e for e, _ in parts])),
        brier=brier,
        reliability=[rows for _, rows in parts],
        realised={m: metrics.METRIC_FUNCS[m](y, proba) for m in ESTIMATED},
        estimated=expected_metrics(proba),
    )


# --------------------------------------------------------------------------------------------
# The estimate and its verdict


@dataclass(frozen=True)
class Estimate:
    """The estimated metrics of a scored batch and whether they show decay.

    `status`: "ok"; "decayed" (an estimate below its floor in the spec, or more than
    `max_drop` below the holdout's realised value); "not_calibrated" (holdout ECE above
    `max_ece`: no estimate); "no_calibration" (the version has no stored calibration);
    "not_enough_data" (fewer than `min_rows` rows).
    """

    status: str
    n: int
    estimated: dict[str, float]
    reference: dict[str, float]
    ece: float | None
    max_ece: float
    floors: dict[str, float]
    max_drop: float | None
    reasons: list[str] = field(default_factory=list)

    @property
    def decayed(self) -> bool:
        return self.status == "decayed"

    def summary(self) -> str:
        shown = ", ".join(
            f"{m} {v:.4g}" + (f" (holdout {self.reference[m]:.4g})" if m in self.reference else "")
            for m, v in self.estimated.items()
        )
        head = f"estimated on {self.n:,} unlabelled rows: {shown}" if shown else self.status
        return "; ".join([head, *self.reasons])

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))


def estimate(
    output: Any,
    calib: Calibration | None,
    *,
    max_ece: float,
    floors: Mapping[str, float] | None = None,
    max_drop: float | None = None,
    drop_metrics: tuple[str, ...] = ESTIMATED,
    min_rows: int = 1,
) -> Estimate:
    """Estimate a batch's metrics from its probabilities, if the holdout says they can be trusted.

    Args:
        output: The champion's probabilities on the batch.
        calib: The champion's holdout calibration (None: not stored with the version).
        max_ece: The largest holdout ECE at which the estimate is reported.
        floors: Metric floors (the spec's `metrics.floors`); those of ESTIMATED apply.
        max_drop: Decay beyond this below the holdout's realised value alerts (None: off).
        drop_metrics: The metrics the `max_drop` rule watches.
        min_rows: Fewer rows in the batch: "not_enough_data".
    """
    proba = _probabilities(output)
    n = len(proba)
    floors = {m: float(v) for m, v in (floors or {}).items() if m in ESTIMATED}
    reference = {m: v for m, v in (calib.realised if calib else {}).items() if math.isfinite(v)}

    def result(status: str, estimated: dict[str, float], reasons: list[str]) -> Estimate:
        return Estimate(
            status=status,
            n=n,
            estimated=estimated,
            reference=reference,
            ece=calib.ece if calib else None,
            max_ece=max_ece,
            floors=floors,
            max_drop=max_drop,
            reasons=reasons,
        )

    if calib is None:
        return result("no_calibration", {}, ["the version stores no holdout calibration"])
    if not calib.ece <= max_ece:
        return result(
            "not_calibrated",
            {},
            [
                f"not calibrated: holdout ECE {calib.ece:.3g} on {calib.n:,} rows exceeds "
                f"calibration_max_ece {max_ece:g}"
            ],
        )
    if n < min_rows:
        return result("not_enough_data", {}, [f"{n:,} rows, fewer than min_rows {min_rows:,}"])
    estimated = {m: v for m, v in expected_metrics(proba).items() if math.isfinite(v)}
    reasons = [
        f"estimated {m} {estimated[m]:.4g} below its floor {floor:g}"
        for m, floor in floors.items()
        if m in estimated and estimated[m] < floor
    ]
    if max_drop is not None:
        reasons += [
            f"estimated {m} {estimated[m]:.4g} is more than {max_drop:g} below the holdout's "
            f"{reference[m]:.4g}"
            for m in drop_metrics
            if m in estimated and m in reference and estimated[m] < reference[m] - max_drop
        ]
    return result("decayed" if reasons else "ok", estimated, reasons)
