"""Tests of airmlops_core.stats.metrics: each metric against scikit-learn, input validation and
the stratified resampling the bootstrap intervals use.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn import metrics as skm

from airmlops_core.stats import metrics
from airmlops_core.stats.metrics import METRIC_FUNCS, encode_labels, resample_values, strata

# ---------------------------------------------------------------- metrics vs scikit-learn


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "log_loss", "accuracy", "f1"])
def test_binary_metrics_equal_sklearn(binary, metric: str) -> None:
    y, p, _ = binary
    expected = {
        "roc_auc": skm.roc_auc_score(y, p),
        "pr_auc": skm.average_precision_score(y, p),
        "log_loss": skm.log_loss(y, p),
        "accuracy": skm.accuracy_score(y, p > 0.5),
        "f1": skm.f1_score(y, p > 0.5),
    }[metric]
    assert METRIC_FUNCS[metric](y, p) == pytest.approx(expected, abs=1e-12, rel=1e-12)


def test_fast_auc_handles_heavy_ties_and_extreme_probabilities() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, size=500)
    p = rng.choice([0.0, 0.2, 0.5, 0.8, 1.0], size=500)  # 5 distinct scores, 0 and 1 included
    assert METRIC_FUNCS["roc_auc"](y, p) == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert METRIC_FUNCS["pr_auc"](y, p) == pytest.approx(
        skm.average_precision_score(y, p), abs=1e-12
    )
    assert METRIC_FUNCS["log_loss"](y, p) == pytest.approx(skm.log_loss(y, p), rel=1e-12)


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "log_loss", "accuracy", "f1"])
def test_multiclass_metrics_equal_sklearn(multiclass, metric: str) -> None:
    y, proba = multiclass()
    pred = proba.argmax(axis=1)
    onehot = (y[:, None] == np.arange(3)[None, :]).astype(int)
    expected = {
        "roc_auc": skm.roc_auc_score(y, proba, multi_class="ovr"),
        "pr_auc": skm.average_precision_score(onehot, proba, average="macro"),
        "log_loss": skm.log_loss(y, proba),
        "accuracy": skm.accuracy_score(y, pred),
        "f1": skm.f1_score(y, pred, average="macro"),
    }[metric]
    assert METRIC_FUNCS[metric](y, proba) == pytest.approx(expected, abs=1e-12, rel=1e-12)


def test_macro_f1_counts_only_classes_seen_like_sklearn() -> None:
    y = np.array([0, 0, 1, 1, 2, 2, 0, 1])
    proba = np.zeros((8, 4))  # class 3 is never true nor predicted
    proba[np.arange(8), [0, 1, 1, 1, 2, 0, 0, 2]] = 1.0
    expected = skm.f1_score(y, proba.argmax(axis=1), average="macro")
    assert METRIC_FUNCS["f1"](y, proba) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("metric", ["rmse", "mae", "r2"])
def test_regression_metrics_equal_sklearn(metric: str) -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(1000.0, 50.0, size=2000)  # a large mean tests the variance computation
    pred = y + rng.normal(0, 20.0, size=2000)
    expected = {
        "rmse": skm.root_mean_squared_error(y, pred),
        "mae": skm.mean_absolute_error(y, pred),
        "r2": skm.r2_score(y, pred),
    }[metric]
    assert METRIC_FUNCS[metric](y, pred) == pytest.approx(expected, abs=1e-12, rel=1e-12)


def test_r2_of_a_constant_target_follows_sklearn() -> None:
    y = np.full(10, 3.0)
    assert METRIC_FUNCS["r2"](y, y) == skm.r2_score(y, y) == 1.0
    assert METRIC_FUNCS["r2"](y, y + 1) == skm.r2_score(y, y + 1) == 0.0


def test_two_column_probabilities_read_as_binary(binary) -> None:
    y, p, _ = binary
    assert METRIC_FUNCS["roc_auc"](y, np.c_[1 - p, p]) == METRIC_FUNCS["roc_auc"](y, p)


def test_auc_of_one_class_is_nan() -> None:
    assert math.isnan(METRIC_FUNCS["roc_auc"](np.ones(5, dtype=int), np.linspace(0, 1, 5)))


def test_labels_must_be_encoded() -> None:
    y = np.array(["no", "yes", "yes", "no"], dtype=object)
    with pytest.raises(ValueError, match="encode_labels"):
        METRIC_FUNCS["accuracy"](y, np.array([0.1, 0.9, 0.8, 0.3]))
    codes = encode_labels(y, np.array(["no", "yes"]))
    assert codes.tolist() == [0, 1, 1, 0]
    with pytest.raises(ValueError, match="'maybe'"):
        encode_labels(["maybe"], ["no", "yes"])


def test_bad_metric_inputs_raise(binary) -> None:
    y, p, _ = binary
    with pytest.raises(ValueError, match="shape"):
        METRIC_FUNCS["roc_auc"](y[:-1], p)
    with pytest.raises(ValueError, match="0..1"):
        METRIC_FUNCS["roc_auc"](y + 1, p)
    with pytest.raises(ValueError, match="NaN"):
        METRIC_FUNCS["roc_auc"](y, np.where(p > 0.9, np.nan, p))


# ---------------------------------------------------------------- stratified resampling


def test_resamples_follow_the_documented_scheme_whatever_the_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Resample r takes, per class in ascending order, rows_k[rng.integers(0, n_k, size=n_k)]."""
    y = np.array([1, 0, 2, 0, 1, 1, 0, 2, 0, 0])
    order, sizes = strata(y, True)
    assert order.tolist() == [1, 3, 6, 8, 9, 0, 4, 5, 2, 7]
    assert sizes == [5, 3, 2]
    rng = np.random.default_rng(5)
    expected = [
        np.concatenate(
            [
                rows[rng.integers(0, len(rows), size=len(rows))]
                for rows in (order[:5], order[5:8], order[8:])
            ]
        )
        for _ in range(23)
    ]
    rows = resample_values(lambda idx: order[idx], sizes, 23, seed=5)
    assert rows.tolist() == np.array(expected).tolist()
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 3 * len(y) + 1)  # chunks of 3 resamples
    assert resample_values(lambda idx: order[idx], sizes, 23, seed=5).tolist() == rows.tolist()
    assert strata(y, False)[1] == [10]
