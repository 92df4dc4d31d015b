"""Tests of airmlops_core.stats.drift: every number of a check recomputed with scipy from what
the profile stores, unseen categories, missing values, not enough data, category keys, the
homogeneity (not goodness of fit) test, errors and roles.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from airmlops_core.stats.distribution import chi2_homogeneity, psi
from airmlops_core.stats.drift import MISSING, OTHER, check_drift
from airmlops_core.stats.profile import CategoricalProfile, NumericProfile, build_reference
from airmlops_core.stats.verdict import DriftConfig


def test_numeric_psi_on_reference_quantile_bins() -> None:
    """Reference 1..10, 2 bins: edge 5 (half the values <= 5); current 3 <= 5 and 7 above."""
    ref = pd.DataFrame({"x": np.arange(1.0, 11.0)})
    cur = pd.DataFrame({"x": [1.0, 2, 3, 6, 7, 8, 9, 10, 11, 12]})
    prof = build_reference(ref, numeric=["x"], bins=2)
    assert prof.columns["x"].edges.tolist() == [5.0]
    assert prof.columns["x"].bin_counts.tolist() == [5, 5]
    col = check_drift(prof, cur, config=DriftConfig(min_rows=2)).column("x")
    hand = (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.7 - 0.5) * math.log(0.7 / 0.5)
    assert abs(col.effects["psi"] - hand) < 1e-12
    assert col.details["bins"]["cur"] == [0.3, 0.7, 0.0]  # last: the missing bin


def test_check_statistics_equal_scipy_on_what_the_profile_stores(mixed_frame) -> None:
    """End to end: each reported number recomputed with scipy from the stored sample / counts."""
    rng = np.random.default_rng(9)
    ref_df = mixed_frame(rng, 60_000)
    cur_df = mixed_frame(rng, 40_000, shift=0.05, new_share=0.02)
    prof = build_reference(ref_df, numeric=["num", "pois"], categorical=["cat"], sample_rows=20_000)
    res = check_drift(prof, cur_df)
    for name in ["num", "pois"]:
        col, stored = res.column(name), prof.columns[name]
        assert isinstance(stored, NumericProfile)
        assert col.n_ref == stored.sample.size == 20_000  # the effective reference size
        present_ref = ref_df[name].dropna().to_numpy(dtype=float)
        cur = cur_df[name].dropna().to_numpy(dtype=float)
        ks = stats.ks_2samp(stored.sample, cur)
        assert col.details["ks_statistic"] == pytest.approx(float(ks.statistic), rel=1e-9, abs=1e-9)
        assert col.details["ks_p_value"] == pytest.approx(float(ks.pvalue), rel=1e-9, abs=1e-9)
        w = stats.wasserstein_distance(stored.sample, cur) / present_ref.std()
        assert col.effects["wasserstein"] == pytest.approx(w, rel=1e-9, abs=1e-9)
    # numeric with missing values: Bonferroni of KS and the 2 x 2 missing-share test
    num = res.column("num")
    miss = stats.chi2_contingency(
        [
            [ref_df.num.notna().sum(), ref_df.num.isna().sum()],
            [cur_df.num.notna().sum(), cur_df.num.isna().sum()],
        ]
    )
    assert num.details["missing_p_value"] == pytest.approx(float(miss.pvalue), rel=1e-9, abs=1e-9)
    assert num.p_value == pytest.approx(
        min(1.0, 2 * min(num.details["ks_p_value"], float(miss.pvalue))), rel=1e-9, abs=1e-9
    )
    assert num.test == "ks_2samp+missing"
    assert res.column("pois").test == "ks_2samp"  # no missing values: KS alone
    # categorical: the 2 x K table with the unseen category and the missing values as columns
    cat = res.column("cat")
    rc = ref_df.cat.value_counts(dropna=False)
    cc = cur_df.cat.value_counts(dropna=False)
    keys = list(dict.fromkeys([*rc.index, *cc.index]))
    table = np.array([[rc.get(k, 0) for k in keys], [cc.get(k, 0) for k in keys]])
    assert table.shape == (2, 6)  # a, b, c, d, zz (unseen), missing
    exp = stats.chi2_contingency(table)
    assert cat.statistic == pytest.approx(float(exp.statistic), rel=1e-9, abs=1e-9)
    assert cat.p_value == pytest.approx(float(exp.pvalue), rel=1e-9, abs=1e-9)
    assert cat.effects["js"] == pytest.approx(
        float(jensenshannon(table[0], table[1], base=2)), rel=1e-9, abs=1e-9
    )
    assert cat.effects["psi"] == pytest.approx(psi(table[0], table[1]), rel=1e-9, abs=1e-9)
    assert cat.n_ref == 60_000


def test_unseen_categories_are_counted_not_dropped() -> None:
    rng = np.random.default_rng(10)
    ref = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 5000)})
    cur = pd.DataFrame(
        {"c": ["a"] * 1550 + ["b"] * 1550 + ["c"] * 1550 + ["new1"] * 250 + ["new2"] * 100}
    )
    res = check_drift(build_reference(ref, categorical=["c"]), cur)
    col = res.column("c")
    assert col.unseen_cur == pytest.approx(350 / 5000, abs=1e-15)
    assert col.details["unseen_categories"] == 2
    top = {t["category"]: t for t in col.details["top"]}
    assert top["new1"]["unseen"]
    assert top["new1"]["ref"] == 0.0
    assert top["new1"]["cur"] == 0.05
    assert col.status == "drift"
    assert "psi" in col.exceeded
    # the same data with the unseen rows dropped would look much closer
    kept = cur[cur.c.isin(["a", "b", "c"])]
    dropped = check_drift(build_reference(ref, categorical=["c"]), kept).column("c")
    assert dropped.effects["psi"] < col.effects["psi"] / 5


def test_missing_values_are_their_own_share() -> None:
    rng = np.random.default_rng(11)
    n = 20_000
    ref = pd.DataFrame({"x": rng.exponential(1.0, n), "c": rng.choice(np.array(["u", "v"]), n)})
    x = rng.exponential(1.0, n)
    x[:3000] = np.nan  # 15% missing, present values undrifted
    c = rng.choice(np.array(["u", "v"]), n).astype(object)
    c[:3000] = None
    cur = pd.DataFrame({"x": x, "c": c})
    res = check_drift(build_reference(ref, numeric=["x"], categorical=["c"]), cur)
    x_col, c_col = res.column("x"), res.column("c")
    assert x_col.missing_ref == 0.0
    assert x_col.missing_cur == 0.15
    assert x_col.details["ks_p_value"] > 1e-3  # the present values did not move...
    assert x_col.status == "drift"
    assert x_col.exceeded == ["psi"]
    assert x_col.details["bins"]["cur"][-1] == 0.15
    assert c_col.missing_cur == 0.15
    assert c_col.status == "drift"
    assert {t["category"]: t["cur"] for t in c_col.details["top"]}[MISSING] == 0.15
    # non-finite values count as missing
    inf = check_drift(
        build_reference(ref, numeric=["x"]),
        pd.DataFrame({"x": np.where(np.arange(n) < 10, np.inf, ref.x)}),
    )
    assert inf.column("x").missing_cur == 10 / n


def test_not_enough_data_below_min_rows(mixed_frame) -> None:
    rng = np.random.default_rng(12)
    ref = mixed_frame(rng, 5000)
    prof = build_reference(ref, numeric=["num"], categorical=["cat"])
    tiny = mixed_frame(rng, 120, shift=3.0)  # hugely shifted, but 120 rows
    res = check_drift(prof, tiny, config=DriftConfig(min_rows=500))
    assert res.status == "not_enough_data"
    assert all(c.status == "not_enough_data" and c.p_value is None for c in res.columns)
    assert res.drifted == []
    assert "120 current rows" in res.summary()
    assert check_drift(prof, tiny, config=DriftConfig(min_rows=100)).status == "drift"


def test_integral_float_categories_match_integer_reference() -> None:
    ref = pd.DataFrame({"k": np.arange(3000) % 3})  # int64 categories 0, 1, 2
    cur = pd.DataFrame({"k": np.where(np.arange(3000) < 9, np.nan, np.arange(3000) % 3)})
    assert cur.k.dtype == np.float64  # NaN made the current column float: 1.0, 2.0, NaN
    col = check_drift(build_reference(ref, categorical=["k"]), cur).column("k")
    assert col.unseen_cur == 0.0
    assert col.missing_cur == 0.003
    assert col.status == "no_drift"


def test_capped_reference_lumps_rare_categories_as_other() -> None:
    ref = pd.DataFrame({"c": ["a"] * 500 + ["b"] * 300 + ["c"] * 150 + ["d"] * 30 + ["e"] * 20})
    prof = build_reference(ref, categorical=["c"], max_categories=3)
    stored = prof.columns["c"]
    assert isinstance(stored, CategoricalProfile)
    assert stored.categories == ("a", "b", "c")
    assert stored.other == 50
    cur = pd.DataFrame({"c": ["a"] * 500 + ["b"] * 300 + ["c"] * 150 + ["e"] * 40 + ["f"] * 10})
    col = check_drift(prof, cur).column("c")
    assert col.unseen_cur == 0.0  # e and f land in "(other)": a capped profile cannot tell
    assert {t["category"] for t in col.details["top"]} == {"a", "b", "c", OTHER}


def test_chi_square_homogeneity_not_goodness_of_fit() -> None:
    """500k current rows vs a 5k-row reference, same distribution: not flagged. A goodness of
    fit test treating the reference shares as exact flags it with a vanishing p-value: under no
    drift its statistic is about (1 + 500k/5k) = 101 times the homogeneity statistic."""
    rng = np.random.default_rng(14)
    p = [0.3, 0.25, 0.2, 0.1, 0.1, 0.05]
    ref = pd.DataFrame({"c": rng.choice(6, 5_000, p=p)})
    cur = pd.DataFrame({"c": rng.choice(6, 500_000, p=p)})
    res = check_drift(build_reference(ref, categorical=["c"]), cur)
    col = res.column("c")
    assert col.status == "no_drift"
    assert col.p_value > 0.01
    ref_counts = np.bincount(ref.c, minlength=6)
    cur_counts = np.bincount(cur.c, minlength=6)
    gof = stats.chisquare(cur_counts, f_exp=ref_counts / ref_counts.sum() * cur_counts.sum())
    assert gof.pvalue < 1e-10  # what a goodness-of-fit drift check would report
    assert 70 < gof.statistic / col.statistic < 130
    # at equal sizes, over many replicates: homogeneity rejects ~5% at 0.05, GOF ~31%
    sims = [(rng.multinomial(20_000, p), rng.multinomial(20_000, p)) for _ in range(2000)]
    hom = np.mean([chi2_homogeneity(r, c)[1] < 0.05 for r, c in sims])
    gof_rate = np.mean(
        [stats.chisquare(c, f_exp=r / r.sum() * c.sum()).pvalue < 0.05 for r, c in sims]
    )
    assert 0.035 <= hom <= 0.065
    assert gof_rate > 0.25


def test_check_errors_name_the_column() -> None:
    prof = build_reference(
        pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]}), numeric=["x"], categorical=["c"]
    )
    with pytest.raises(ValueError, match=r"lacks the profiled columns \['c'\]"):
        check_drift(prof, pd.DataFrame({"x": [1.0]}))
    with pytest.raises(ValueError, match="current data: column 'x' must be numeric"):
        check_drift(prof, pd.DataFrame({"x": ["1"], "c": ["a"]}))
    with pytest.raises(ValueError, match=r"\['zz'\] are not in the reference profile"):
        check_drift(prof, pd.DataFrame({"x": [1.0], "c": ["a"]}), columns=["zz"])
    with pytest.raises(ValueError, match="no column with role"):
        check_drift(prof, pd.DataFrame({"x": [1.0], "c": ["a"]}), roles=("label",))
    with pytest.raises(ValueError, match="fdr must be in"):
        DriftConfig(fdr=0.0)


def test_roles_prediction_and_label_are_checked_separately() -> None:
    rng = np.random.default_rng(16)
    n = 5000
    train = pd.DataFrame({"x": rng.normal(size=n), "y": rng.choice(2, n, p=[0.8, 0.2])})
    holdout = pd.DataFrame({"score": rng.beta(2, 5, n)})
    prof = (
        build_reference(train, numeric=["x"])
        .merge(build_reference(train, categorical=["y"], role="label"))
        .merge(build_reference(holdout, numeric=["score"], role="prediction"))
    )
    scored = pd.DataFrame({"x": rng.normal(size=n), "score": rng.beta(3, 4, n)})
    res = check_drift(prof, scored)  # features + predictions; labels not arrived yet
    assert [c.column for c in res.columns] == ["x", "score"]
    assert res.drifted == ["score"]
    assert res.by_role("prediction")[0].status == "drift"
    labelled = pd.DataFrame({"y": rng.choice(2, n, p=[0.6, 0.4])})
    lab = check_drift(prof, labelled, roles=("label",))
    assert lab.drifted == ["y"]
    assert lab.columns[0].role == "label"


def test_a_large_check_does_not_import_scipy_stats() -> None:
    """The hand-written statistics exist to keep scipy.stats (0.6-1.3 s) out of the process."""
    code = """
import sys
import numpy as np
import pandas as pd
from airmlops_core.stats.drift import check_drift
from airmlops_core.stats.profile import build_reference
rng = np.random.default_rng(0)
def frame(shift):
    n = 20_000
    return pd.DataFrame({"x": rng.normal(shift, 1, n), "c": rng.choice(["a", "b", None], n)})
result = check_drift(build_reference(frame(0), numeric=["x"], categorical=["c"]), frame(0.3))
assert result.drifted == ["x"], result.summary()
assert "scipy.stats" not in sys.modules
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
