"""Tests of airmlops_core.stats.verdict: the decision rule (Benjamini-Hochberg across columns,
then the effect-size gate), its calibration over seeded replicates, and the result as JSON,
MLflow metrics and a summary.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from airmlops_core.stats.drift import check_drift
from airmlops_core.stats.profile import build_reference
from airmlops_core.stats.verdict import DriftConfig, DriftResult, rank_by_importance


def _grid(n: int, shift: float = 0.0) -> np.ndarray:
    return stats.norm.ppf((np.arange(n) + 0.5) / n) + shift


def test_benjamini_hochberg_applies_across_columns() -> None:
    """A column with raw p just under 0.05 and a large effect is not flagged among 5 columns
    (BH needs p <= 0.05/5 for the smallest), but is flagged when checked alone."""
    n = 600
    ref = pd.DataFrame({f"x{i}": _grid(n) for i in range(5)})
    cur = ref.copy()
    cur["x0"] = _grid(n, 0.2)
    prof = build_reference(ref, numeric=list(ref.columns))
    res = check_drift(prof, cur, config=DriftConfig(min_rows=500))
    x0 = res.column("x0")
    assert 0.01 < x0.p_value < 0.05  # "significant" alone, deterministic data
    assert x0.exceeded == ["wasserstein"]  # and a large effect (0.2 sd)
    assert x0.p_adjusted == pytest.approx(5 * x0.p_value)
    assert not x0.significant
    assert x0.status == "no_drift"
    assert res.status == "no_drift"
    alone = check_drift(prof, cur, config=DriftConfig(min_rows=500), columns=["x0"])
    assert alone.status == "drift"
    assert alone.drifted == ["x0"]


def test_significant_but_negligible_shift_is_not_drift() -> None:
    """At 200k rows a 0.03-sd shift is highly significant; the effect-size gate keeps it quiet."""
    rng = np.random.default_rng(13)
    n = 200_000
    prof = build_reference(pd.DataFrame({"x": rng.normal(0, 1, n)}), numeric=["x"], sample_rows=n)
    res = check_drift(prof, pd.DataFrame({"x": rng.normal(0.03, 1, n)}))
    col = res.column("x")
    assert col.p_value < 1e-6
    assert col.significant
    assert col.exceeded == []
    assert col.status == "no_drift"
    assert res.status == "no_drift"
    assert res.decide(DriftConfig(min_wasserstein=0.02)).status == "drift"


def _calibration_frame(rng: np.random.Generator, n: int, shifted: bool) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "n_normal": rng.normal(0.3 if shifted else 0.0, 1.0, n),  # 0.3-sigma mean shift
            "n_lognormal": rng.lognormal(0.0, 0.8, n),
            "n_poisson": rng.poisson(3.0, n).astype(np.float64),  # ties
            "c_mix": rng.choice(3, n, p=[0.4, 0.4, 0.2] if shifted else [0.5, 0.3, 0.2]),
            "c_six": rng.choice(6, n, p=[0.3, 0.25, 0.2, 0.1, 0.1, 0.05]),
        }
    )


def _replicates(shifted: bool, reps: int = 100, n: int = 50_000) -> list[DriftResult]:
    rng = np.random.default_rng(2024 if shifted else 7)
    out = []
    for _ in range(reps):  # a fresh reference and window per replicate
        prof = build_reference(
            _calibration_frame(rng, n, False),
            numeric=["n_normal", "n_lognormal", "n_poisson"],
            categorical=["c_mix", "c_six"],
        )
        out.append(check_drift(prof, _calibration_frame(rng, n, shifted)))
    return out


def test_calibration_no_drift_false_alarms() -> None:
    """100 replicates of 50k rows, nothing drifts: the data set alarms in at most 5%."""
    results = _replicates(shifted=False)
    alarms = sum(r.status == "drift" for r in results)
    assert alarms <= 5
    # BH alone (no effect-size gate) is already near its nominal 5% family-wise rate here...
    bh_only = sum(
        r.decide(DriftConfig(min_wasserstein=0, min_psi=0, min_js=0)).status == "drift"
        for r in results
    )
    assert bh_only <= 10
    # ...while an uncorrected p < 0.05 per column alarms far more often (5 columns)
    naive = sum(any(c.p_value < 0.05 for c in r.columns) for r in results)
    assert naive >= 12
    assert naive > 2 * max(bh_only, 1)


def test_calibration_shifts_detected() -> None:
    """A 0.3-sigma mean shift and a 10-point category-mix shift: found in >= 95 of 100."""
    results = _replicates(shifted=True)
    assert sum("n_normal" in r.drifted for r in results) >= 95
    assert sum("c_mix" in r.drifted for r in results) >= 95
    others = {"n_lognormal", "n_poisson", "c_six"}
    assert sum(bool(others & set(r.drifted)) for r in results) <= 5


def test_result_is_json_and_mlflow_ready(mixed_frame) -> None:
    rng = np.random.default_rng(17)
    prof = build_reference(mixed_frame(rng, 20_000), numeric=["num"], categorical=["cat"])
    res = check_drift(prof, mixed_frame(rng, 20_000, shift=0.5, new_share=0.1))
    payload = json.loads(res.to_json())
    assert payload["drifted"] == res.drifted
    assert set(res.drifted) == {"num", "cat"}
    assert DriftResult.from_dict(payload).to_dict() == res.to_dict()
    metrics = res.metrics()
    assert metrics["drift.dataset.drift"] == 1.0
    assert metrics["drift.dataset.n_drifted"] == 2
    assert metrics["drift.feature.cat.unseen_share"] == pytest.approx(0.1, abs=0.01)
    assert all(math.isfinite(v) for v in metrics.values())
    compact = res.compact()
    assert set(compact["drifted"]) == {"num", "cat"}
    assert len(json.dumps(compact)) < 2000
    assert res.summary().startswith("drift in 2 of 2 column(s)")


def test_drifted_columns_rank_by_importance_then_effect() -> None:
    effect_order = ["noise", "prediction", "tenure", "contract", "charges"]
    weights = {"tenure": 0.20, "contract": 0.05, "charges": 0.05, "noise": 0.001}
    ranked, barely = rank_by_importance(effect_order, weights)
    # the output (no importance) first; contract and charges tie: their effect order stays
    assert ranked == ["prediction", "tenure", "contract", "charges", "noise"]
    assert barely == ["noise"]  # 0.001 < 1% of 0.20; 0.05 is not
    assert rank_by_importance(effect_order, weights, barely_used=0.3) == (
        ranked,
        ["contract", "charges", "noise"],
    )


def test_without_importances_the_effect_order_stays() -> None:
    effect_order = ["noise", "prediction", "tenure"]
    assert rank_by_importance(effect_order, None) == (effect_order, [])
    assert rank_by_importance(effect_order, {}) == (effect_order, [])
    # a model that uses no feature at all: nothing to compare "barely" with
    assert rank_by_importance(["a", "b"], {"a": 0.0, "b": -0.01}) == (["a", "b"], [])
