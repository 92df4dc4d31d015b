"""Tests of airmlops_core.stats.drift: statistics against scipy on the same arrays, the reference
profile, the decision rule (Benjamini-Hochberg + effect sizes), its calibration over seeded
replicates, and performance drift.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from airmlops_core.errors import ProfileError
from airmlops_core.stats import comparison
from airmlops_core.stats import drift as d
from airmlops_core.stats.drift import DriftConfig

# ------------------------------------------------------------------------------------------
# Per-column statistics equal scipy's on the same arrays


def _close(a: float, b: float, tol: float = 1e-9) -> bool:
    return abs(a - b) <= tol * max(1.0, abs(b))


@pytest.mark.parametrize(
    ("m", "n", "kind"),
    [
        (50_000, 200_000, "continuous"),  # asymptotic p-value (kstwo), large en: Pelz-Good/smirnov
        (20_000, 30_000, "rounded"),  # ties
        (15_000, 12_000, "integers"),  # heavy ties, discrete
        (3_000, 700, "continuous"),  # both <= 10,000: scipy's exact p-value
        (30_000, 90, "continuous"),  # en <= 140: kstwo's small-n methods
        (12_000, 40_000, "shifted"),
    ],  # a real shift: tiny p-values
)
def test_ks_and_wasserstein_equal_scipy(m: int, n: int, kind: str) -> None:
    rng = np.random.default_rng(m + n)
    a, b = rng.normal(size=m), rng.normal(size=n)
    if kind == "rounded":
        a, b = np.round(a, 1), np.round(b, 1)
    elif kind == "integers":
        a, b = rng.poisson(3, m).astype(float), rng.poisson(3, n).astype(float)
    elif kind == "shifted":
        b = b + 0.08
    a, b = np.sort(a), np.sort(b)
    stat, p, w = d.ks_wasserstein(a, b)
    ref = stats.ks_2samp(a, b)
    assert _close(stat, float(ref.statistic), 1e-12)
    assert abs(p - float(ref.pvalue)) <= 1e-9
    assert _close(p, float(ref.pvalue), 1e-9)
    assert _close(w, float(stats.wasserstein_distance(a, b)))
    if kind == "shifted":
        assert p < 1e-8  # the comparison is not vacuous: a shift is seen


@pytest.mark.filterwarnings("ignore:overflow encountered in matmul")  # scipy's too
def test_kstwo_sf_equals_scipy_on_every_branch() -> None:
    worst_abs, worst_rel, points = 0.0, 0.0, 0
    for n in [141, 500, 4_545, 45_455, 100_000, 100_001]:
        xs = np.unique(
            np.concatenate(
                [np.geomspace(0.2 / n, 0.99, 30), [0.5 / n, 0.8 / n, 1 / n, (n - 1) / n, 0.5, 0.7]]
            )
        )
        for x in xs:
            mine, theirs = d.kstwo_sf(float(x), n), float(stats.kstwo.sf(x, n))
            worst_abs = max(worst_abs, abs(mine - theirs))
            if theirs > 0:
                worst_rel = max(worst_rel, abs(mine - theirs) / theirs)
            points += 1
    assert worst_abs <= 1e-11  # p-values in [0, 1]
    assert worst_rel <= 1e-9  # and tiny p-values to 9 digits too
    assert points > 200


def test_smirnov_sum_equals_scipy() -> None:
    from scipy import special

    for n in [1001, 5_000, 45_455, 250_000]:
        for x in np.geomspace(np.sqrt(2.2 / n), 0.99, 12):
            theirs = float(special.smirnov(n, x))
            assert abs(d._smirnov(n, float(x)) - theirs) <= 1e-9 * theirs + 1e-300


def test_chi2_homogeneity_equals_chi2_contingency() -> None:
    rng = np.random.default_rng(5)
    for k in [2, 3, 5, 9]:  # k = 2: Yates' correction, as scipy applies by default
        for _ in range(5):
            ref = rng.multinomial(int(rng.integers(50, 5000)), rng.dirichlet(np.ones(k)))
            cur = rng.multinomial(int(rng.integers(50, 5000)), rng.dirichlet(np.ones(k)))
            stat, p, dof = d.chi2_homogeneity(ref, cur)
            table = np.array([ref, cur])
            table = table[:, table.sum(axis=0) > 0]
            expected = stats.chi2_contingency(table)
            assert _close(stat, float(expected.statistic))
            assert _close(p, float(expected.pvalue))
            assert dof == expected.dof
    # a category both sides lack is left out of the table, as it must be for scipy
    stat, p, dof = d.chi2_homogeneity([10, 0, 30, 5], [12, 0, 25, 9])
    exp = stats.chi2_contingency([[10, 30, 5], [12, 25, 9]])
    assert dof == 2
    assert _close(stat, float(exp.statistic))
    assert _close(p, float(exp.pvalue))
    assert d.chi2_homogeneity([5], [7]) == (0.0, 1.0, 0)


def test_js_distance_and_bh_equal_scipy() -> None:
    rng = np.random.default_rng(6)
    for k in [2, 4, 12]:
        p, q = rng.integers(0, 100, k), rng.integers(0, 100, k)
        p[0] = 0  # an empty category on one side
        q[1] += 1
        assert _close(d.js_distance(p, q), float(jensenshannon(p, q, base=2)))
    pv = rng.uniform(size=40) ** 3
    assert np.allclose(
        d.benjamini_hochberg(pv), stats.false_discovery_control(pv, method="bh"), rtol=1e-12, atol=0
    )


def test_psi_known_answers() -> None:
    # shares 0.5/0.3/0.2 -> 0.4/0.4/0.2, by hand
    hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.4 - 0.3) * math.log(0.4 / 0.3)
    assert abs(d.psi([50, 30, 20], [40, 40, 20]) - hand) < 1e-15
    assert abs(hand - 0.0510825624) < 1e-9
    # an empty reference bin is floored at PSI_EPS = 1e-4 (shares are not renormalised)
    hand_empty = (0.9 - 1.0) * math.log(0.9 / 1.0) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    assert abs(d.psi([100, 0], [90, 10]) - hand_empty) < 1e-15
    assert d.psi([3, 4, 5], [30, 40, 50]) == 0.0


def test_numeric_psi_on_reference_quantile_bins() -> None:
    """Reference 1..10, 2 bins: edge 5 (half the values <= 5); current 3 <= 5 and 7 above."""
    ref = pd.DataFrame({"x": np.arange(1.0, 11.0)})
    cur = pd.DataFrame({"x": [1.0, 2, 3, 6, 7, 8, 9, 10, 11, 12]})
    prof = d.build_reference(ref, numeric=["x"], bins=2)
    assert prof.columns["x"].edges.tolist() == [5.0]
    assert prof.columns["x"].bin_counts.tolist() == [5, 5]
    col = d.check_drift(prof, cur, config=DriftConfig(min_rows=2)).column("x")
    hand = (0.3 - 0.5) * math.log(0.3 / 0.5) + (0.7 - 0.5) * math.log(0.7 / 0.5)
    assert abs(col.effects["psi"] - hand) < 1e-12
    assert col.details["bins"]["cur"] == [0.3, 0.7, 0.0]  # last: the missing bin


def test_quantile_edges_match_numpy_inverted_cdf() -> None:
    rng = np.random.default_rng(8)
    for n in [10, 11, 999, 12_345]:
        x = rng.normal(size=n)
        prof = d.build_reference(pd.DataFrame({"x": x}), numeric=["x"], sample_rows=50)
        expected = np.unique(np.quantile(x, np.arange(1, 10) / 10, method="inverted_cdf"))
        assert np.array_equal(prof.columns["x"].edges, expected)
        assert (
            prof.columns["x"].bin_counts.tolist()
            == np.bincount(
                np.searchsorted(expected, x, side="left"), minlength=expected.size + 1
            ).tolist()
        )


def _mixed(
    rng: np.random.Generator, n: int, *, shift: float = 0.0, new_share: float = 0.0
) -> pd.DataFrame:
    num = rng.normal(shift, 1.0, n)
    num[rng.random(n) < 0.04] = np.nan
    cat = rng.choice(np.array(["a", "b", "c", "d"]), n, p=[0.4, 0.3, 0.2, 0.1]).astype(object)
    cat[rng.random(n) < 0.03] = None
    cat[rng.random(n) < new_share] = "zz"
    return pd.DataFrame(
        {"num": num, "cat": pd.array(cat, dtype="str"), "pois": rng.poisson(2.0, n).astype("int64")}
    )


def test_check_statistics_equal_scipy_on_what_the_profile_stores() -> None:
    """End to end: each reported number recomputed with scipy from the stored sample / counts."""
    rng = np.random.default_rng(9)
    ref_df = _mixed(rng, 60_000)
    cur_df = _mixed(rng, 40_000, shift=0.05, new_share=0.02)
    prof = d.build_reference(
        ref_df, numeric=["num", "pois"], categorical=["cat"], sample_rows=20_000
    )
    res = d.check_drift(prof, cur_df)
    for name in ["num", "pois"]:
        col, stored = res.column(name), prof.columns[name]
        assert isinstance(stored, d.NumericProfile)
        assert col.n_ref == stored.sample.size == 20_000  # the effective reference size
        present_ref = ref_df[name].dropna().to_numpy(dtype=float)
        cur = cur_df[name].dropna().to_numpy(dtype=float)
        ks = stats.ks_2samp(stored.sample, cur)
        assert _close(col.details["ks_statistic"], float(ks.statistic))
        assert _close(col.details["ks_p_value"], float(ks.pvalue))
        w = stats.wasserstein_distance(stored.sample, cur) / present_ref.std()
        assert _close(col.effects["wasserstein"], w)
    # numeric with missing values: Bonferroni of KS and the 2 x 2 missing-share test
    num = res.column("num")
    miss = stats.chi2_contingency(
        [
            [ref_df.num.notna().sum(), ref_df.num.isna().sum()],
            [cur_df.num.notna().sum(), cur_df.num.isna().sum()],
        ]
    )
    assert _close(num.details["missing_p_value"], float(miss.pvalue))
    assert _close(num.p_value, min(1.0, 2 * min(num.details["ks_p_value"], float(miss.pvalue))))
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
    assert _close(cat.statistic, float(exp.statistic))
    assert _close(cat.p_value, float(exp.pvalue))
    assert _close(cat.effects["js"], float(jensenshannon(table[0], table[1], base=2)))
    assert _close(cat.effects["psi"], d.psi(table[0], table[1]))
    assert cat.n_ref == 60_000


# ------------------------------------------------------------------------------------------
# Unseen categories, missing values, not enough data, category keys


def test_unseen_categories_are_counted_not_dropped() -> None:
    rng = np.random.default_rng(10)
    ref = pd.DataFrame({"c": rng.choice(["a", "b", "c"], 5000)})
    cur = pd.DataFrame(
        {"c": ["a"] * 1550 + ["b"] * 1550 + ["c"] * 1550 + ["new1"] * 250 + ["new2"] * 100}
    )
    res = d.check_drift(d.build_reference(ref, categorical=["c"]), cur)
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
    dropped = d.check_drift(d.build_reference(ref, categorical=["c"]), kept).column("c")
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
    res = d.check_drift(d.build_reference(ref, numeric=["x"], categorical=["c"]), cur)
    x_col, c_col = res.column("x"), res.column("c")
    assert x_col.missing_ref == 0.0
    assert x_col.missing_cur == 0.15
    assert x_col.details["ks_p_value"] > 1e-3  # the present values did not move...
    assert x_col.status == "drift"
    assert x_col.exceeded == ["psi"]
    assert x_col.details["bins"]["cur"][-1] == 0.15
    assert c_col.missing_cur == 0.15
    assert c_col.status == "drift"
    assert {t["category"]: t["cur"] for t in c_col.details["top"]}[d.MISSING] == 0.15
    # non-finite values count as missing
    inf = d.check_drift(
        d.build_reference(ref, numeric=["x"]),
        pd.DataFrame({"x": np.where(np.arange(n) < 10, np.inf, ref.x)}),
    )
    assert inf.column("x").missing_cur == 10 / n


def test_not_enough_data_below_min_rows() -> None:
    rng = np.random.default_rng(12)
    ref = _mixed(rng, 5000)
    prof = d.build_reference(ref, numeric=["num"], categorical=["cat"])
    tiny = _mixed(rng, 120, shift=3.0)  # hugely shifted, but 120 rows
    res = d.check_drift(prof, tiny, config=DriftConfig(min_rows=500))
    assert res.status == "not_enough_data"
    assert all(c.status == "not_enough_data" and c.p_value is None for c in res.columns)
    assert res.drifted == []
    assert "120 current rows" in res.summary()
    assert d.check_drift(prof, tiny, config=DriftConfig(min_rows=100)).status == "drift"


def test_integral_float_categories_match_integer_reference() -> None:
    ref = pd.DataFrame({"k": np.arange(3000) % 3})  # int64 categories 0, 1, 2
    cur = pd.DataFrame({"k": np.where(np.arange(3000) < 9, np.nan, np.arange(3000) % 3)})
    assert cur.k.dtype == np.float64  # NaN made the current column float: 1.0, 2.0, NaN
    col = d.check_drift(d.build_reference(ref, categorical=["k"]), cur).column("k")
    assert col.unseen_cur == 0.0
    assert col.missing_cur == 0.003
    assert col.status == "no_drift"


def test_capped_reference_lumps_rare_categories_as_other() -> None:
    ref = pd.DataFrame({"c": ["a"] * 500 + ["b"] * 300 + ["c"] * 150 + ["d"] * 30 + ["e"] * 20})
    prof = d.build_reference(ref, categorical=["c"], max_categories=3)
    stored = prof.columns["c"]
    assert isinstance(stored, d.CategoricalProfile)
    assert stored.categories == ("a", "b", "c")
    assert stored.other == 50
    cur = pd.DataFrame({"c": ["a"] * 500 + ["b"] * 300 + ["c"] * 150 + ["e"] * 40 + ["f"] * 10})
    col = d.check_drift(prof, cur).column("c")
    assert col.unseen_cur == 0.0  # e and f land in "(other)": a capped profile cannot tell
    assert {t["category"] for t in col.details["top"]} == {"a", "b", "c", d.OTHER}


# ------------------------------------------------------------------------------------------
# The decision rule


def _grid(n: int, shift: float = 0.0) -> np.ndarray:
    return stats.norm.ppf((np.arange(n) + 0.5) / n) + shift


def test_benjamini_hochberg_applies_across_columns() -> None:
    """A column with raw p just under 0.05 and a large effect is not flagged among 5 columns
    (BH needs p <= 0.05/5 for the smallest), but is flagged when checked alone."""
    n = 600
    ref = pd.DataFrame({f"x{i}": _grid(n) for i in range(5)})
    cur = ref.copy()
    cur["x0"] = _grid(n, 0.2)
    prof = d.build_reference(ref, numeric=list(ref.columns))
    res = d.check_drift(prof, cur, config=DriftConfig(min_rows=500))
    x0 = res.column("x0")
    assert 0.01 < x0.p_value < 0.05  # "significant" alone, deterministic data
    assert x0.exceeded == ["wasserstein"]  # and a large effect (0.2 sd)
    assert x0.p_adjusted == pytest.approx(5 * x0.p_value)
    assert not x0.significant
    assert x0.status == "no_drift"
    assert res.status == "no_drift"
    alone = d.check_drift(prof, cur, config=DriftConfig(min_rows=500), columns=["x0"])
    assert alone.status == "drift"
    assert alone.drifted == ["x0"]


def test_significant_but_negligible_shift_is_not_drift() -> None:
    """At 200k rows a 0.03-sd shift is highly significant; the effect-size gate keeps it quiet."""
    rng = np.random.default_rng(13)
    n = 200_000
    prof = d.build_reference(pd.DataFrame({"x": rng.normal(0, 1, n)}), numeric=["x"], sample_rows=n)
    res = d.check_drift(prof, pd.DataFrame({"x": rng.normal(0.03, 1, n)}))
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


def _replicates(shifted: bool, reps: int = 100, n: int = 50_000) -> list[d.DriftResult]:
    rng = np.random.default_rng(2024 if shifted else 7)
    out = []
    for _ in range(reps):  # a fresh reference and window per replicate
        prof = d.build_reference(
            _calibration_frame(rng, n, False),
            numeric=["n_normal", "n_lognormal", "n_poisson"],
            categorical=["c_mix", "c_six"],
        )
        out.append(d.check_drift(prof, _calibration_frame(rng, n, shifted)))
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


def test_chi_square_homogeneity_not_goodness_of_fit() -> None:
    """500k current rows vs a 5k-row reference, same distribution: not flagged. A goodness of
    fit test treating the reference shares as exact flags it with a vanishing p-value: under no
    drift its statistic is about (1 + 500k/5k) = 101 times the homogeneity statistic."""
    rng = np.random.default_rng(14)
    p = [0.3, 0.25, 0.2, 0.1, 0.1, 0.05]
    ref = pd.DataFrame({"c": rng.choice(6, 5_000, p=p)})
    cur = pd.DataFrame({"c": rng.choice(6, 500_000, p=p)})
    res = d.check_drift(d.build_reference(ref, categorical=["c"]), cur)
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
    hom = np.mean([d.chi2_homogeneity(r, c)[1] < 0.05 for r, c in sims])
    gof_rate = np.mean(
        [stats.chisquare(c, f_exp=r / r.sum() * c.sum()).pvalue < 0.05 for r, c in sims]
    )
    assert 0.035 <= hom <= 0.065
    assert gof_rate > 0.25


# ------------------------------------------------------------------------------------------
# The profile: compact, serialisable, validated


def test_profile_roundtrip_is_compact_and_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(15)
    ref = _mixed(rng, 200_000)
    prof = d.build_reference(
        ref,
        numeric=["num", "pois"],
        categorical=["cat"],
        sample_rows=10_000,
        description="train v3",
    )
    blob = prof.to_bytes()
    assert len(blob) < 250_000  # two 10k samples + counts, not 200k rows x 3 columns
    back = d.ReferenceProfile.from_bytes(blob)
    assert back.description == "train v3"
    assert list(back.columns) == ["num", "pois", "cat"]
    cur = _mixed(rng, 30_000, shift=0.2)
    assert d.check_drift(back, cur).to_dict() == d.check_drift(prof, cur).to_dict()
    path = prof.save(tmp_path / d.PROFILE_ARTIFACT)
    assert d.ReferenceProfile.load(path).to_bytes() == blob
    stored = back.columns["num"]
    assert isinstance(stored, d.NumericProfile)
    assert stored.n_missing == int(ref.num.isna().sum())
    assert np.isin(stored.sample, ref.num.to_numpy()).all()  # real reference values, float64


def test_profile_errors_name_the_problem(tmp_path: Path) -> None:
    df = pd.DataFrame({"x": [1.0, 2.0], "s": ["a", "b"]})
    with pytest.raises(ProfileError, match=r"lacks the columns \['nope'\]"):
        d.build_reference(df, numeric=["x", "nope"])
    with pytest.raises(ProfileError, match="column 's' must be numeric"):
        d.build_reference(df, numeric=["s"])
    with pytest.raises(ProfileError, match=r"listed twice: \['x'\]"):
        d.build_reference(df, numeric=["x"], categorical=["x"])
    with pytest.raises(ProfileError, match="not a drift reference profile"):
        d.ReferenceProfile.from_bytes(b"garbage", source="s3://b/ref.zip")
    prof = d.build_reference(df, numeric=["x"], categorical=["s"])
    with pytest.raises(ProfileError, match="columns profiled twice"):
        prof.merge(prof)
    # a tampered profile is refused, naming the column
    import io
    import zipfile

    blob = prof.to_bytes()
    zin = zipfile.ZipFile(io.BytesIO(blob))
    meta = json.loads(zin.read("profile.json"))
    meta["columns"][1]["counts"] = [5, 5]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zout:
        for item in zin.namelist():
            data = json.dumps(meta) if item == "profile.json" else zin.read(item)
            zout.writestr(item, data)
    with pytest.raises(ProfileError, match=r"ref\.zip: column 's': category counts"):
        d.ReferenceProfile.from_bytes(out.getvalue(), source="ref.zip")
    with pytest.raises(ProfileError, match="cannot read"):
        d.ReferenceProfile.load(tmp_path / "absent.zip")


def test_check_errors_name_the_column() -> None:
    prof = d.build_reference(
        pd.DataFrame({"x": [1.0, 2.0], "c": ["a", "b"]}), numeric=["x"], categorical=["c"]
    )
    with pytest.raises(ValueError, match=r"lacks the profiled columns \['c'\]"):
        d.check_drift(prof, pd.DataFrame({"x": [1.0]}))
    with pytest.raises(ValueError, match="current data: column 'x' must be numeric"):
        d.check_drift(prof, pd.DataFrame({"x": ["1"], "c": ["a"]}))
    with pytest.raises(ValueError, match=r"\['zz'\] are not in the reference profile"):
        d.check_drift(prof, pd.DataFrame({"x": [1.0], "c": ["a"]}), columns=["zz"])
    with pytest.raises(ValueError, match="no column with role"):
        d.check_drift(prof, pd.DataFrame({"x": [1.0], "c": ["a"]}), roles=("label",))
    with pytest.raises(ValueError, match="fdr must be in"):
        DriftConfig(fdr=0.0)


def test_roles_prediction_and_label_are_checked_separately() -> None:
    rng = np.random.default_rng(16)
    n = 5000
    train = pd.DataFrame({"x": rng.normal(size=n), "y": rng.choice(2, n, p=[0.8, 0.2])})
    holdout = pd.DataFrame({"score": rng.beta(2, 5, n)})
    prof = (
        d.build_reference(train, numeric=["x"])
        .merge(d.build_reference(train, categorical=["y"], role="label"))
        .merge(d.build_reference(holdout, numeric=["score"], role="prediction"))
    )
    scored = pd.DataFrame({"x": rng.normal(size=n), "score": rng.beta(3, 4, n)})
    res = d.check_drift(prof, scored)  # features + predictions; labels not arrived yet
    assert [c.column for c in res.columns] == ["x", "score"]
    assert res.drifted == ["score"]
    assert res.by_role("prediction")[0].status == "drift"
    labelled = pd.DataFrame({"y": rng.choice(2, n, p=[0.6, 0.4])})
    lab = d.check_drift(prof, labelled, roles=("label",))
    assert lab.drifted == ["y"]
    assert lab.columns[0].role == "label"


def test_result_is_json_and_mlflow_ready() -> None:
    rng = np.random.default_rng(17)
    prof = d.build_reference(_mixed(rng, 20_000), numeric=["num"], categorical=["cat"])
    res = d.check_drift(prof, _mixed(rng, 20_000, shift=0.5, new_share=0.1))
    payload = json.loads(res.to_json())
    assert payload["drifted"] == res.drifted
    assert set(res.drifted) == {"num", "cat"}
    assert d.DriftResult.from_dict(payload).to_dict() == res.to_dict()
    metrics = res.metrics()
    assert metrics["drift.dataset.drift"] == 1.0
    assert metrics["drift.dataset.n_drifted"] == 2
    assert metrics["drift.feature.cat.unseen_share"] == pytest.approx(0.1, abs=0.01)
    assert all(math.isfinite(v) for v in metrics.values())
    compact = res.compact()
    assert set(compact["drifted"]) == {"num", "cat"}
    assert len(json.dumps(compact)) < 2000
    assert res.summary().startswith("drift in 2 of 2 column(s)")


# ------------------------------------------------------------------------------------------
# Performance drift


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
    ok = d.performance_drift(
        y_ok, s_ok, "roc_auc", reference=holdout_auc, max_drop=0.01, n_boot=400
    )
    assert ok.status == "ok"
    assert ok.current == pytest.approx(roc_auc_score(y_ok, s_ok))
    assert ok.low is not None
    assert ok.high is not None
    assert ok.low < ok.current < ok.high
    y_bad, s_bad = _scores(rng, 4000, 4.0)  # noisier scores: AUC falls from ~0.92 to ~0.75
    bad = d.performance_drift(
        y_bad, s_bad, "roc_auc", reference=holdout_auc, max_drop=0.01, n_boot=400
    )
    assert bad.degraded
    assert bad.high < holdout_auc - 0.01
    assert "worse" in bad.reason
    few = d.performance_drift(y_ok[:100], s_ok[:100], "roc_auc", reference=holdout_auc)
    assert few.status == "not_enough_data"
    assert few.current is None
    # a lower-is-better metric: RMSE grows
    truth = rng.normal(size=3000)
    good = d.performance_drift(
        truth, truth + rng.normal(0, 1.0, 3000), "rmse", reference=1.0, n_boot=300
    )
    worse = d.performance_drift(
        truth, truth + rng.normal(0, 1.5, 3000), "rmse", reference=1.0, max_drop=0.1, n_boot=300
    )
    assert good.status == "ok"
    assert worse.degraded
    assert worse.low > 1.1
    assert comparison.METRIC_FUNCS["rmse"](truth, truth) == 0.0
    assert d.PerformanceDrift.from_dict(json.loads(json.dumps(bad.to_dict()))) == bad


def test_an_empty_window_is_not_enough_data_not_a_dtype_error() -> None:
    rng = np.random.default_rng(11)
    ref = pd.DataFrame({"x": rng.normal(size=1000), "c": rng.choice(["a", "b"], size=1000)})
    prof = d.build_reference(ref, numeric=["x"], categorical=["c"])
    empty = prof.empty_frame()
    assert list(empty.columns) == ["x", "c"]
    assert len(empty) == 0
    assert str(empty["x"].dtype) == "float64"
    with pytest.raises(ValueError, match="must be numeric"):  # what a bare frame gave before
        d.check_drift(prof, pd.DataFrame(columns=["x", "c"]))
    assert d.check_drift(prof, empty).status == "not_enough_data"
