"""Tests of airmlops_core.stats.comparison: the paired bootstrap, DeLong, McNemar and compare.

Known answers come from independent computations: scikit-learn metrics, scipy.stats.bootstrap
and binomtest, a brute-force resampling loop and an O(n^2) DeLong from the definition.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from sklearn import metrics as skm

from airmlops_core.stats import metrics
from airmlops_core.stats.comparison import compare, delong_test, mcnemar_exact, paired_bootstrap

# ---------------------------------------------------------------- paired bootstrap


def test_bad_bootstrap_inputs_raise(binary) -> None:
    y, p, q = binary
    with pytest.raises(ValueError, match="unknown metric"):
        paired_bootstrap(y, p, q, "auc")
    with pytest.raises(ValueError, match="level"):
        paired_bootstrap(y, p, q, "roc_auc", level=95)
    with pytest.raises(ValueError, match="stratify"):
        paired_bootstrap(y.astype(float), p, q, "mae", stratify=True)


def _documented_indices(y: np.ndarray | None, n: int, n_boot: int, seed: int) -> list[np.ndarray]:
    """The resampling scheme as paired_bootstrap documents it, rebuilt independently."""
    rng = np.random.default_rng(seed)
    strata = [np.arange(n)] if y is None else [np.flatnonzero(y == k) for k in np.unique(y)]
    return [
        np.concatenate([rows[rng.integers(0, len(rows), size=len(rows))] for rows in strata])
        for _ in range(n_boot)
    ]


def _percentile_interval(diffs: list[float], level: float = 0.95) -> tuple[float, float]:
    lo, hi = np.percentile(diffs, [50 * (1 - level), 50 * (1 + level)])
    return float(lo), float(hi)


def test_stratified_bootstrap_equals_brute_force_loop_exactly(binary) -> None:
    y, p, q = binary
    n_boot = 300
    diffs = [
        skm.accuracy_score(y[i], q[i] > 0.5) - skm.accuracy_score(y[i], p[i] > 0.5)
        for i in _documented_indices(y, len(y), n_boot, seed=11)
    ]
    iv = paired_bootstrap(y, p, q, "accuracy", n_boot=n_boot, seed=11)
    assert (iv.low, iv.high) == _percentile_interval(diffs)
    assert iv.n_boot == n_boot
    assert iv.method == "paired_stratified_bootstrap_percentile"


def test_unstratified_mae_bootstrap_equals_brute_force_loop_exactly() -> None:
    rng = np.random.default_rng(5)
    y = rng.normal(size=800)
    champ, chall = y + rng.normal(0, 1.0, 800), y + rng.normal(0, 0.9, 800)
    diffs = [
        skm.mean_absolute_error(y[i], champ[i]) - skm.mean_absolute_error(y[i], chall[i])
        for i in _documented_indices(None, len(y), 300, seed=2)
    ]
    iv = paired_bootstrap(y, champ, chall, "mae", n_boot=300, seed=2)
    assert (iv.low, iv.high) == _percentile_interval(diffs)
    assert iv.method == "paired_bootstrap_percentile"


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc"])
def test_ranking_bootstrap_equals_brute_force_loop(binary, metric: str) -> None:
    y, p, q = binary
    score = {"roc_auc": skm.roc_auc_score, "pr_auc": skm.average_precision_score}[metric]
    diffs = [
        score(y[i], q[i]) - score(y[i], p[i]) for i in _documented_indices(y, len(y), 200, seed=4)
    ]
    iv = paired_bootstrap(y, p, q, metric, n_boot=200, seed=4)
    lo, hi = _percentile_interval(diffs)
    assert iv.low == pytest.approx(lo, abs=1e-12)
    assert iv.high == pytest.approx(hi, abs=1e-12)


@pytest.mark.parametrize("metric", ["roc_auc", "pr_auc", "f1", "log_loss"])
def test_multiclass_bootstrap_equals_brute_force_loop(multiclass, metric: str) -> None:
    y, champ = multiclass(600, seed=1)
    _, chall = multiclass(600, seed=1, signal=1.8)  # same rows and noise, more signal
    onehot = (y[:, None] == np.arange(3)[None, :]).astype(int)

    def score(i: np.ndarray, proba: np.ndarray) -> float:
        if metric == "roc_auc":
            return skm.roc_auc_score(y[i], proba[i], multi_class="ovr")
        if metric == "pr_auc":
            return skm.average_precision_score(onehot[i], proba[i], average="macro")
        if metric == "f1":
            return skm.f1_score(y[i], proba[i].argmax(axis=1), average="macro")
        return -skm.log_loss(y[i], proba[i], labels=[0, 1, 2])

    diffs = [score(i, chall) - score(i, champ) for i in _documented_indices(y, 600, 100, seed=9)]
    iv = paired_bootstrap(y, champ, chall, metric, n_boot=100, seed=9)
    lo, hi = _percentile_interval(diffs)
    assert (iv.low, iv.high) == pytest.approx((lo, hi), abs=1e-12)
    assert iv.low > 0


def test_interval_does_not_depend_on_chunking(binary, monkeypatch: pytest.MonkeyPatch) -> None:
    y, p, q = binary
    whole = paired_bootstrap(y, p, q, "roc_auc", n_boot=250, seed=1)
    monkeypatch.setattr(metrics, "CHUNK_ELEMENTS", 7 * len(y) + 1)  # chunks of 7 resamples
    assert paired_bootstrap(y, p, q, "roc_auc", n_boot=250, seed=1) == whole


@pytest.mark.parametrize("metric", ["accuracy", "mae"])
def test_bootstrap_agrees_with_scipy_bootstrap(metric: str) -> None:
    """The same percentile interval as scipy.stats.bootstrap(paired=True), up to Monte Carlo."""
    rng = np.random.default_rng(21)
    n, n_boot = 1500, 5000
    if metric == "accuracy":
        y = rng.integers(0, 2, size=n)
        champ = np.where(rng.random(n) < 0.75, y, 1 - y).astype(float)
        chall = np.where(rng.random(n) < 0.79, y, 1 - y).astype(float)
        loss0, loss1 = (champ == y).astype(float), (chall == y).astype(float)
        sign = 1.0
    else:
        y = rng.normal(size=n)
        champ, chall = y + rng.normal(0, 1.0, n), y + rng.normal(0, 0.9, n)
        loss0, loss1 = np.abs(y - champ), np.abs(y - chall)
        sign = -1.0

    def statistic(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return sign * (np.mean(b, axis=axis) - np.mean(a, axis=axis))

    ref = stats.bootstrap(
        (loss0, loss1),
        statistic,
        paired=True,
        vectorized=True,
        method="percentile",
        n_resamples=n_boot,
        confidence_level=0.95,
        rng=np.random.default_rng(0),
    )
    sd = float(np.std(ref.bootstrap_distribution))
    iv = paired_bootstrap(y, champ, chall, metric, n_boot=n_boot, seed=1, stratify=False)
    assert iv.diff == pytest.approx(statistic(loss0, loss1), abs=1e-12)
    # Each percentile's Monte Carlo SE is ~0.04 sd with 5000 resamples; allow ~4 SE of the
    # difference of two independent estimates.
    assert iv.low == pytest.approx(ref.confidence_interval.low, abs=0.2 * sd)
    assert iv.high == pytest.approx(ref.confidence_interval.high, abs=0.2 * sd)


def _coverage_accuracy(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    y = rng.integers(0, 2, size=n)
    u = rng.random(n)
    v = np.where(rng.random(n) < 0.6, u, rng.random(n))  # correlated correctness
    champ = np.where(u < 0.78, y, 1 - y) * 0.8 + 0.1
    chall = np.where(v < 0.82, y, 1 - y) * 0.8 + 0.1
    return y, champ, chall


def _coverage_auc(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    y = np.r_[np.ones(n * 2 // 5, dtype=int), np.zeros(n - n * 2 // 5, dtype=int)]
    e = rng.multivariate_normal([0, 0], [[1, 0.5], [0.5, 1]], size=n)
    return y, 1.0 * y + e[:, 0], 1.4 * y + e[:, 1]


_TRUE_AUC_GAIN = stats.norm.cdf(1.4 / math.sqrt(2)) - stats.norm.cdf(1 / math.sqrt(2))  # binormal


@pytest.mark.parametrize(
    ("metric", "simulate", "truth"),
    [
        ("accuracy", _coverage_accuracy, 0.82 - 0.78),
        ("roc_auc", _coverage_auc, _TRUE_AUC_GAIN),
    ],
)
def test_interval_coverage_is_nominal(metric: str, simulate, truth: float) -> None:
    """Over 200 simulated holdouts the 95% interval covers the true improvement 90-99% of times."""
    rng = np.random.default_rng(2024)
    reps, covered = 200, 0
    for r in range(reps):
        y, champ, chall = simulate(rng, 400)
        iv = paired_bootstrap(y, champ, chall, metric, n_boot=400, seed=r)
        covered += iv.low <= truth <= iv.high
    assert 0.90 <= covered / reps <= 0.99


# ---------------------------------------------------------------- DeLong and McNemar


def _slow_delong(y: np.ndarray, s0: np.ndarray, s1: np.ndarray) -> tuple[float, float, float]:
    """DeLong (1988) from the definition: O(n^2) kernel matrices and placement values."""
    pos, neg = y == 1, y == 0
    v10, v01, aucs = [], [], []
    for s in (s0, s1):
        x, z = s[pos][:, None], s[neg][None, :]
        psi = (x > z) + 0.5 * (x == z)
        aucs.append(psi.mean())
        v10.append(psi.mean(axis=1))
        v01.append(psi.mean(axis=0))
    m, k = pos.sum(), neg.sum()
    cov10 = np.cov(np.array(v10))
    cov01 = np.cov(np.array(v01))
    var = (cov10[0, 0] + cov10[1, 1] - 2 * cov10[0, 1]) / m + (
        cov01[0, 0] + cov01[1, 1] - 2 * cov01[0, 1]
    ) / k
    diff = aucs[1] - aucs[0]
    return diff, var, 2 * stats.norm.sf(abs(diff) / math.sqrt(var))


def test_delong_equals_direct_definition_with_ties(binary) -> None:
    y, p, q = (a[:700] for a in binary)
    diff, var, p_value = _slow_delong(y, p, q)
    res = delong_test(y, p, q)
    assert res.diff == pytest.approx(diff, abs=1e-12)
    assert res.variance == pytest.approx(var, abs=1e-12, rel=1e-9)
    assert res.p_value == pytest.approx(p_value, abs=1e-9)
    assert res.auc_champion == pytest.approx(skm.roc_auc_score(y, p), abs=1e-12)
    assert res.auc_challenger == pytest.approx(skm.roc_auc_score(y, q), abs=1e-12)


def test_delong_detects_a_small_but_real_difference_and_not_a_null() -> None:
    rng = np.random.default_rng(3)
    y, p, q = _coverage_auc(rng, 2000)
    assert delong_test(y, p, q).p_value < 1e-3
    same = delong_test(y, p, p)
    assert (same.diff, same.p_value) == (0.0, 1.0)
    with pytest.raises(ValueError, match="at least 2 positives"):
        delong_test(np.array([1, 0, 0]), np.array([0.1, 0.2, 0.3]), np.array([0.3, 0.2, 0.1]))


def test_mcnemar_equals_binomtest_on_discordant_pairs(binary) -> None:
    y, p, q = binary
    ok0, ok1 = (p > 0.5) == y, (q > 0.5) == y
    b, c = int(np.sum(ok0 & ~ok1)), int(np.sum(~ok0 & ok1))
    res = mcnemar_exact(y, p, q)
    assert (res.champion_only, res.challenger_only) == (b, c)
    assert res.p_value == stats.binomtest(c, b + c, 0.5).pvalue
    assert mcnemar_exact(y, p, p).p_value == 1.0


# ---------------------------------------------------------------- compare: the decision input


def test_clearly_better_challenger_wins_with_delong_p_value(binary) -> None:
    y, p, q = binary
    comp = compare(y, p, q, "roc_auc", margin=0.0, n_boot=500)
    assert comp.challenger_better
    assert comp.interval.test == "delong"
    assert comp.interval.p_value == delong_test(y, p, q).p_value
    assert comp.reason.startswith("roc_auc improves by")
    assert "lower bound clears the margin 0" in comp.reason


def test_identical_models_tie_and_keep_the_champion(binary) -> None:
    y, p, _ = binary
    comp = compare(y, p, p, "accuracy", margin=0.0, n_boot=200)
    assert not comp.challenger_better
    assert (comp.interval.diff, comp.interval.low, comp.interval.high) == (0.0, 0.0, 0.0)
    assert comp.interval.p_value == 1.0
    assert comp.interval.test == "mcnemar_exact"
    assert "a tie keeps the champion" in comp.reason


def test_worse_challenger_is_rejected(binary) -> None:
    y, p, q = binary
    comp = compare(y, q, p, "roc_auc", margin=0.0, n_boot=500)  # roles swapped
    assert not comp.challenger_better
    assert comp.interval.high < 0
    assert "worse" in comp.reason


def test_margin_is_applied_to_the_lower_bound(binary) -> None:
    y, p, q = binary
    base = compare(y, p, q, "roc_auc", margin=0.0, n_boot=500)
    low = base.interval.low
    assert compare(y, p, q, "roc_auc", margin=low - 1e-9, n_boot=500).challenger_better
    blocked = compare(y, p, q, "roc_auc", margin=low, n_boot=500)
    assert not blocked.challenger_better
    assert "does not clear the margin" in blocked.reason


def test_lower_is_better_metric_counts_a_smaller_rmse_as_improvement() -> None:
    rng = np.random.default_rng(8)
    y = rng.normal(size=2000)
    champ, chall = y + rng.normal(0, 1.0, 2000), y + rng.normal(0, 0.7, 2000)
    better = compare(y, champ, chall, "rmse", margin=0.0, n_boot=500)
    assert better.challenger_better
    iv = better.interval
    assert iv.diff == pytest.approx(iv.champion - iv.challenger)
    assert iv.diff > 0
    assert iv.p_value is None
    assert iv.test is None
    assert not compare(y, chall, champ, "rmse", margin=0.0, n_boot=500).challenger_better


def test_unstratified_undefined_resamples_are_dropped() -> None:
    y = np.array([1, 0, 0, 0, 0, 0, 0, 0])
    p = np.linspace(0.9, 0.1, 8)
    iv = paired_bootstrap(y, p, p[::-1], "roc_auc", n_boot=100, stratify=False)
    assert 0 < iv.n_boot < 100  # resamples missing the one positive have no AUC


def test_to_dict_is_json_safe(binary) -> None:
    import json

    y, p, q = binary
    d = compare(y, p, q, "accuracy", margin=0.0, n_boot=100).to_dict()
    assert json.loads(json.dumps(d, allow_nan=False))["interval"]["metric"] == "accuracy"
