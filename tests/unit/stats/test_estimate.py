"""Tests of airmlops_core.stats.estimate: the confidence-based performance estimate (CBPE).

The estimate is checked against independent computations: exact expectations by enumerating
every labelling of a small batch, and scikit-learn's metrics on labels drawn from the
probabilities (y ~ Bernoulli(p)), within tolerances derived from the sampling error.
"""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, brier_score_loss, f1_score, roc_auc_score

from airmlops_core.stats.estimate import (
    ESTIMATED,
    Calibration,
    calibration,
    estimate,
    expected_metrics,
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _calibrated(n: int, seed: int) -> np.ndarray:
    """Probabilities of a reasonable binary model: logits ~ N(-1, 1.5)."""
    return _sigmoid(np.random.default_rng(seed).normal(-1.0, 1.5, n))


def _realised(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    """scikit-learn's metrics of a binary batch (decision threshold 0.5, as predict)."""
    pred = (p > 0.5).astype(int)
    return {
        "accuracy": accuracy_score(y, pred),
        "roc_auc": roc_auc_score(y, p),
        "f1": f1_score(y, pred, zero_division=0.0),
    }


def test_expected_metrics_equal_exact_expectations_over_every_labelling() -> None:
    """On 9 rows (with ties) every one of the 512 labellings is weighed by its probability:
    accuracy is E[accuracy]; F1 and ROC AUC are the ratio of the expected cells (E[2TP] /
    E[2TP + FP + FN], E[U] / E[n_pos n_neg])."""
    p = np.array([0.05, 0.2, 0.2, 0.35, 0.5, 0.6, 0.6, 0.8, 0.95])
    pred = p > 0.5
    acc = tp2 = f1_denom = u = pairs = 0.0
    for bits in itertools.product((0, 1), repeat=len(p)):
        y = np.array(bits)
        w = float(np.prod(np.where(y == 1, p, 1 - p)))
        acc += w * np.mean(pred == y)
        tp, fp, fn = np.sum(pred & (y == 1)), np.sum(pred & (y == 0)), np.sum(~pred & (y == 1))
        tp2 += w * 2 * tp
        f1_denom += w * (2 * tp + fp + fn)
        pos, neg = p[y == 1], p[y == 0]
        u += w * sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
        pairs += w * len(pos) * len(neg)
    got = expected_metrics(p)
    assert got["accuracy"] == pytest.approx(acc, abs=1e-12)
    assert got["f1"] == pytest.approx(tp2 / f1_denom, abs=1e-12)
    assert got["roc_auc"] == pytest.approx(u / pairs, abs=1e-12)


def test_estimate_matches_realised_metrics_of_labels_drawn_from_the_probabilities() -> None:
    """y ~ Bernoulli(p) on 20,000 rows.

    Accuracy: the realised value is a mean of independent Bernoulli(max(p, 1-p)) (the
    threshold is 0.5), so its standard deviation is exactly sqrt(sum a(1-a)) / n: one draw
    lies within 4 of them. F1 and ROC AUC are ratios: over R = 40 draws their mean lies within
    4 standard errors (the draws' sd / sqrt(R)) of the estimate, plus 10/n for the O(1/n) gap
    between a ratio's expectation and the ratio of expectations.
    """
    n, draws = 20_000, 40
    p = _calibrated(n, seed=1)
    est = expected_metrics(p)
    a = np.maximum(p, 1 - p)
    rng = np.random.default_rng(2)
    values = {m: [] for m in ESTIMATED}  # type: dict[str, list[float]]
    for _ in range(draws):
        y = (rng.random(n) < p).astype(int)
        for m, v in _realised(y, p).items():
            values[m].append(v)
    sd_acc = math.sqrt(float(np.sum(a * (1 - a)))) / n
    assert abs(values["accuracy"][0] - est["accuracy"]) <= 4 * sd_acc
    for m in ("roc_auc", "f1"):
        v = np.asarray(values[m])
        tol = 4 * v.std(ddof=1) / math.sqrt(draws) + 10 / n
        assert abs(v.mean() - est[m]) <= tol, (m, v.mean(), est[m], tol)


def test_multiclass_estimate_matches_realised_one_vs_rest_metrics() -> None:
    """Labels drawn from a 3-class softmax: accuracy of the arg-max, macro F1 and one-vs-rest
    macro ROC AUC (scikit-learn) agree with the estimate within 4 standard errors over 30
    draws (accuracy: the exact sd of one draw, as in the binary case)."""
    n, draws = 15_000, 30
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(n, 3)) * 1.5
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    est = expected_metrics(proba)
    pred = proba.argmax(axis=1)
    a = proba[np.arange(n), pred]
    cum = proba.cumsum(axis=1)
    values = {m: [] for m in ESTIMATED}  # type: dict[str, list[float]]
    for _ in range(draws):
        y = (rng.random(n)[:, None] > cum).sum(axis=1)
        values["accuracy"].append(accuracy_score(y, pred))
        values["f1"].append(f1_score(y, pred, average="macro"))
        values["roc_auc"].append(roc_auc_score(y, proba, multi_class="ovr"))
    sd_acc = math.sqrt(float(np.sum(a * (1 - a)))) / n
    assert abs(values["accuracy"][0] - est["accuracy"]) <= 4 * sd_acc
    for m in ("roc_auc", "f1"):
        v = np.asarray(values[m])
        assert abs(v.mean() - est[m]) <= 4 * v.std(ddof=1) / math.sqrt(draws) + 10 / n, m


def test_calibration_of_calibrated_probabilities_agrees_with_scikit_learn() -> None:
    n = 20_000
    p = _calibrated(n, seed=3)
    y = (np.random.default_rng(4).random(n) < p).astype(int)
    cal = calibration(y, p)
    # 10 bins of 2,000 rows: each bin's frequency is off by about sqrt(0.25 / 2000) = 0.011
    assert cal.ece < 0.02
    assert cal.brier == pytest.approx(brier_score_loss(y, p))
    assert sum(b["rows"] for b in cal.reliability[0]) == n
    for m, v in _realised(y, p).items():
        assert cal.realised[m] == pytest.approx(v)
    assert cal.estimated == expected_metrics(p)
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal


def test_miscalibrated_probabilities_are_reported_not_calibrated() -> None:
    """An overconfident model (logits tripled) ranks as well as a calibrated one, but its
    probabilities are not frequencies: the holdout says so, and the estimate is withheld (it
    would be badly wrong: the distorted probabilities promise a much higher accuracy)."""
    n = 20_000
    true_p = _calibrated(n, seed=6)
    reported = _sigmoid(3 * np.log(true_p / (1 - true_p)))
    y = (np.random.default_rng(7).random(n) < true_p).astype(int)
    cal = calibration(y, reported)
    assert cal.ece > 0.05
    batch = _sigmoid(3 * np.log((p := _calibrated(5000, seed=8)) / (1 - p)))
    result = estimate(batch, cal, max_ece=0.05)
    assert result.status == "not_calibrated"
    assert result.estimated == {}
    assert f"ECE {cal.ece:.3g}" in result.summary()
    assert expected_metrics(batch)["accuracy"] - cal.realised["accuracy"] > 0.05


def _calibration(realised: dict[str, float], ece: float = 0.01) -> Calibration:
    return Calibration(
        n=5000, ece=ece, brier=0.15, reliability=[], realised=realised, estimated=realised
    )


def test_estimate_alerts_below_a_floor_and_beyond_the_drop_from_the_holdout() -> None:
    p = _calibrated(4000, seed=9)
    est = expected_metrics(p)
    holdout = {m: v + 0.03 for m, v in est.items()}
    ok = estimate(p, _calibration(holdout), max_ece=0.05, floors={"roc_auc": 0.5}, max_drop=0.05)
    assert ok.status == "ok"
    assert ok.estimated == est
    assert ok.reference == holdout
    floor = estimate(
        p, _calibration(holdout), max_ece=0.05, floors={"roc_auc": est["roc_auc"] + 0.01}
    )
    assert floor.decayed
    assert floor.reasons == [
        f"estimated roc_auc {est['roc_auc']:.4g} below its floor {est['roc_auc'] + 0.01:g}"
    ]
    drop = estimate(
        p, _calibration(holdout), max_ece=0.05, max_drop=0.02, drop_metrics=("accuracy",)
    )
    assert drop.decayed
    assert len(drop.reasons) == 1
    assert "accuracy" in drop.reasons[0]
    assert "more than 0.02 below" in drop.reasons[0]
    log_loss_floor = estimate(p, _calibration(holdout), max_ece=0.05, floors={"log_loss": 0.0})
    assert log_loss_floor.status == "ok"  # not an estimated metric: no rule


def test_estimate_without_calibration_or_rows_says_why() -> None:
    p = _calibrated(100, seed=10)
    assert estimate(p, None, max_ece=0.05).status == "no_calibration"
    few = estimate(p, _calibration({"accuracy": 0.8}), max_ece=0.05, min_rows=500)
    assert few.status == "not_enough_data"
    assert "100 rows, fewer than min_rows 500" in few.summary()
    nan_ece = estimate(p, _calibration({}, ece=math.nan), max_ece=0.05)
    assert nan_ece.status == "not_calibrated"
    assert json.loads(json.dumps(few.to_dict()))["status"] == "not_enough_data"


def test_probabilities_are_checked() -> None:
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        expected_metrics(np.array([0.2, 1.3]))
    with pytest.raises(ValueError, match="sum to 1"):
        expected_metrics(np.array([[0.2, 0.2, 0.2]]))
    with pytest.raises(ValueError, match="labelled rows"):
        calibration(np.array([], dtype=int), np.array([]))
    assert all(math.isnan(v) for v in expected_metrics(np.array([])).values())


def test_estimate_tracks_realised_metrics_on_a_shifted_churn_batch() -> None:
    """Real data: a LogisticRegression (the pack's pipeline) on wa_churn, calibrated on a
    holdout, estimating a batch drawn with covariate shift (month-to-month contracts 3x as
    likely). Tolerance per metric: 3 sampling sds of the metric (from labels drawn from the
    batch's probabilities, 200 draws) plus the holdout ECE (the calibration error the check
    accepted)."""
    from airmlops_core.spec import ModelSpec
    from airmlops_core.train.estimator import feature_frame, fit
    from airmlops_dev import demo_data

    spec = ModelSpec.model_validate(
        {
            "name": "churn_cbpe",
            "task": "binary",
            "source": {"uri": "churn.parquet"},
            "target": "churn",
            "features": {
                "numeric": ["tenure", "monthly_charges", "total_charges", "partner"],
                "categorical": ["contract", "internet_service", "payment_method"],
            },
            "estimator": {
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 1000},
            },
            "metrics": {"primary": "roc_auc"},
        }
    )
    df = demo_data.churn()
    rng = np.random.default_rng(0)
    idx = rng.permutation(len(df))
    train, holdout, rest = df.iloc[idx[:3500]], df.iloc[idx[3500:5000]], df.iloc[idx[5000:]]
    model = fit(spec, train)

    def proba(frame: object) -> np.ndarray:
        return model.predict_proba(feature_frame(spec, frame))[:, 1]  # type: ignore[arg-type]

    cal = calibration(holdout["churn"].to_numpy(), proba(holdout))
    weights = np.where(rest["contract"] == "Month-to-month", 3.0, 1.0)
    batch = rest.iloc[rng.choice(len(rest), size=1200, replace=False, p=weights / weights.sum())]
    assert batch["churn"].mean() > df["churn"].mean() + 0.02  # the shift is real
    p = proba(batch)
    result = estimate(p, cal, max_ece=0.05)
    assert result.status == "ok", result.summary()
    realised = _realised(batch["churn"].to_numpy(), p)
    simulated = np.array(
        [list(_realised((rng.random(len(p)) < p).astype(int), p).values()) for _ in range(200)]
    )
    for i, m in enumerate(("accuracy", "roc_auc", "f1")):
        tol = 3 * simulated[:, i].std(ddof=1) + cal.ece
        assert abs(result.estimated[m] - realised[m]) <= tol, (m, result.estimated[m], realised)
