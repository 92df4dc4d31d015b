"""Tests of airmlops_core.stats.distribution: each statistic equals scipy's on the same arrays,
and PSI's known answers by hand.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from airmlops_core.stats import distribution
from airmlops_core.stats.distribution import chi2_homogeneity, psi


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
    stat, p, w = distribution.ks_wasserstein(a, b)
    ref = stats.ks_2samp(a, b)
    assert stat == pytest.approx(float(ref.statistic), rel=1e-12, abs=1e-12)
    assert abs(p - float(ref.pvalue)) <= 1e-9
    assert p == pytest.approx(float(ref.pvalue), rel=1e-9, abs=1e-9)
    assert w == pytest.approx(float(stats.wasserstein_distance(a, b)), rel=1e-9, abs=1e-9)
    if kind == "shifted":
        assert p < 1e-8  # the comparison is not vacuous: a shift is seen


def test_chi2_homogeneity_equals_chi2_contingency() -> None:
    rng = np.random.default_rng(5)
    for k in [2, 3, 5, 9]:  # k = 2: Yates' correction, as scipy applies by default
        for _ in range(5):
            ref = rng.multinomial(int(rng.integers(50, 5000)), rng.dirichlet(np.ones(k)))
            cur = rng.multinomial(int(rng.integers(50, 5000)), rng.dirichlet(np.ones(k)))
            stat, p, dof = chi2_homogeneity(ref, cur)
            table = np.array([ref, cur])
            table = table[:, table.sum(axis=0) > 0]
            expected = stats.chi2_contingency(table)
            assert stat == pytest.approx(float(expected.statistic), rel=1e-9, abs=1e-9)
            assert p == pytest.approx(float(expected.pvalue), rel=1e-9, abs=1e-9)
            assert dof == expected.dof
    # a category both sides lack is left out of the table, as it must be for scipy
    stat, p, dof = chi2_homogeneity([10, 0, 30, 5], [12, 0, 25, 9])
    exp = stats.chi2_contingency([[10, 30, 5], [12, 25, 9]])
    assert dof == 2
    assert stat == pytest.approx(float(exp.statistic), rel=1e-9, abs=1e-9)
    assert p == pytest.approx(float(exp.pvalue), rel=1e-9, abs=1e-9)
    assert chi2_homogeneity([5], [7]) == (0.0, 1.0, 0)


def test_js_distance_and_bh_equal_scipy() -> None:
    rng = np.random.default_rng(6)
    for k in [2, 4, 12]:
        p, q = rng.integers(0, 100, k), rng.integers(0, 100, k)
        p[0] = 0  # an empty category on one side
        q[1] += 1
        assert distribution.js_distance(p, q) == pytest.approx(
            float(jensenshannon(p, q, base=2)), rel=1e-9, abs=1e-9
        )
    pv = rng.uniform(size=40) ** 3
    assert np.allclose(
        distribution.benjamini_hochberg(pv),
        stats.false_discovery_control(pv, method="bh"),
        rtol=1e-12,
        atol=0,
    )


def test_psi_known_answers() -> None:
    # shares 0.5/0.3/0.2 -> 0.4/0.4/0.2, by hand
    hand = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.4 - 0.3) * math.log(0.4 / 0.3)
    assert abs(psi([50, 30, 20], [40, 40, 20]) - hand) < 1e-15
    assert abs(hand - 0.0510825624) < 1e-9
    # an empty reference bin is floored at PSI_EPS = 1e-4 (shares are not renormalised)
    hand_empty = (0.9 - 1.0) * math.log(0.9 / 1.0) + (0.1 - 1e-4) * math.log(0.1 / 1e-4)
    assert abs(psi([100, 0], [90, 10]) - hand_empty) < 1e-15
    assert psi([3, 4, 5], [30, 40, 50]) == 0.0
