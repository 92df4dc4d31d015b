"""Tests of airmlops_core.stats.kolmogorov: kstwo_sf equals scipy.stats.kstwo.sf on every branch."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats

from airmlops_core.stats import kolmogorov
from airmlops_core.stats.kolmogorov import kstwo_sf


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
            mine, theirs = kstwo_sf(float(x), n), float(stats.kstwo.sf(x, n))
            worst_abs = max(worst_abs, abs(mine - theirs))
            if theirs > 0:
                worst_rel = max(worst_rel, abs(mine - theirs) / theirs)
            points += 1
    assert worst_abs <= 1e-11  # p-values in [0, 1]
    assert worst_rel <= 1e-9  # and tiny p-values to 9 digits too
    assert points > 200


def test_smirnov_sum_equals_scipy() -> None:
    for n in [1001, 5_000, 45_455, 250_000]:
        for x in np.geomspace(np.sqrt(2.2 / n), 0.99, 12):
            theirs = float(special.smirnov(n, x))
            assert abs(kolmogorov._smirnov(n, float(x)) - theirs) <= 1e-9 * theirs + 1e-300
