"""Tests of airmlops_core.stats.performance: a labelled window's metric against the holdout."""

from __future__ import annotations

import json

import numpy as np
import pytest

from airmlops_core.stats.metrics import METRIC_FUNCS
from airmlops_core.stats.performance import PerformanceDrift, performance_drift


def _scores(rng: np.random.Generator, n: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    y = (rng.random(n) < 0.3).astype(int)
    score = 1 / (1 + np.exp(-(2.0 * (2 * y - 1) + rng.normal(0, noise, n))))
    return y, score


def test_performance_drift_degraded_ok_and_not_enough_data() -> None:
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(18)
    y_h, s_h = _scores(rng, 5000, 2.0)
    holdout_auc = float(roc_auc_score(y_h, s_h))
    y_ok, s_ok = _scores(rng, 4000, 2.0)
    ok = performance_drift(y_ok, s_ok, "roc_auc", reference=holdout_auc, max_drop=0.01, n_boot=400)
    assert ok.status == "ok"
    assert ok.current == pytest.approx(roc_auc_score(y_ok, s_ok))
    assert ok.low is not None
    assert ok.high is not None
    assert ok.low < ok.current < ok.high
    y_bad, s_bad = _scores(rng, 4000, 4.0)  # noisier scores: AUC falls from ~0.92 to ~0.75
    bad = performance_drift(
        y_bad, s_bad, "roc_auc", reference=holdout_auc, max_drop=0.01, n_boot=400
    )
    assert bad.degraded
    assert bad.high < holdout_auc - 0.01
    assert "worse" in bad.reason
    few = performance_drift(y_ok[:100], s_ok[:100], "roc_auc", reference=holdout_auc)
    assert few.status == "not_enough_data"
    assert few.current is None
    # a lower-is-better metric: RMSE grows
    truth = rng.normal(size=3000)
    good = performance_drift(
        truth, truth + rng.normal(0, 1.0, 3000), "rmse", reference=1.0, n_boot=300
    )
    worse = performance_drift(
        truth, truth + rng.normal(0, 1.5, 3000), "rmse", reference=1.0, max_drop=0.1, n_boot=300
    )
    assert good.status == "ok"
    assert worse.degraded
    assert worse.low > 1.1
    assert METRIC_FUNCS["rmse"](truth, truth) == 0.0
    assert PerformanceDrift.from_dict(json.loads(json.dumps(bad.to_dict()))) == bad
