"""Two-sample statistics of drift on arrays and count vectors, each equal to scipy's on the same
input (known answers in tests/unit/stats/test_distribution.py).

- numeric: the two-sample Kolmogorov-Smirnov test (scipy's `ks_2samp`: exact p-value when both
  sides hold <= 10,000 values, else `kstwo.sf(D, round(m*n/(m+n)))`) and the Wasserstein-1
  distance, from one merge of the two sorted samples.
- categorical: the chi-square test of homogeneity on the 2 x K table of counts (scipy's
  `chi2_contingency`, with its Yates correction when K = 2), the Jensen-Shannon distance
  (base 2, in [0, 1]).
- both: the population stability index on shares, and the Benjamini-Hochberg adjustment of the
  p-values of several columns.

Measured with benchmarks/drift_check.py: in a process that has not imported scipy.stats,
importing it costs about as much as the whole check of 25 columns (0.6-1.3 s against ~1 s),
and scipy's kstwo.sf is 10-40 times slower than airmlops_core.stats.kolmogorov on a drifted
column even where scipy.stats is loaded. So chi-square, Jensen-Shannon and Benjamini-Hochberg
are written out here on scipy.special, each comment giving the cost of the alternative.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from airmlops_core.stats import kolmogorov

__all__ = [
    "KS_EXACT_MAX",
    "PSI_EPS",
    "benjamini_hochberg",
    "chi2_homogeneity",
    "js_distance",
    "ks_wasserstein",
    "psi",
]

PSI_EPS = 1e-4
"""Shares below this are raised to it before PSI's log ratio (an empty bin would be infinite)."""
KS_EXACT_MAX = 10_000
"""scipy's `ks_2samp(method="auto")` computes the exact p-value when both sizes are <= this."""


def _merged(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The sorted union z of sorted `a` and `b`, and F_a(z) - F_b(z) at each point.

    One binary search per value of `a` (the reference sample, usually the smaller side).
    Ties: a's values go before b's equal values, so the ECDF difference is exact at the last
    point of each run of equal values (where it matters for KS; elsewhere np.diff(z) is 0).
    """
    m, n = a.size, b.size
    pos_a = np.searchsorted(b, a, side="left") + np.arange(m)
    from_a = np.zeros(m + n, dtype=bool)
    from_a[pos_a] = True
    z = np.empty(m + n, dtype=np.float64)
    z[pos_a] = a
    z[~from_a] = b
    count_a = np.cumsum(from_a)
    del from_a
    count_b = np.arange(1.0, m + n + 1.0)  # exact integers in float64, then in place
    count_b -= count_a
    count_b /= n
    diff = count_a / m
    diff -= count_b
    return z, diff


def ks_wasserstein(a_sorted: np.ndarray, b_sorted: np.ndarray) -> tuple[float, float, float]:
    """Two-sample KS statistic and p-value, and the Wasserstein-1 distance, of sorted samples.

    Equal to `scipy.stats.ks_2samp(a, b)` (method "auto", two-sided) and
    `scipy.stats.wasserstein_distance(a, b)`, from one merge of the two sorted arrays.

    Args:
        a_sorted: Reference values, finite, ascending.
        b_sorted: Current values, finite, ascending.

    Returns:
        (statistic, p_value, wasserstein).
    """
    m, n = a_sorted.size, b_sorted.size
    if m == 0 or n == 0:
        raise ValueError("KS and Wasserstein need at least one value on each side")
    z, diff = _merged(a_sorted, b_sorted)
    if max(m, n) <= KS_EXACT_MAX:  # scipy's exact path (rounds D to its lattice): use it
        from scipy import stats

        res = stats.ks_2samp(a_sorted, b_sorted)
        d, p = float(res.statistic), float(res.pvalue)
    else:
        step = z[1:] != z[:-1]  # True at the last point of each run of equal values
        at = diff[:-1] if step.all() else diff[:-1][step]  # the last point's difference is 0
        d = float(max(at.max(), np.clip(-at.min(), 0.0, 1.0))) if at.size else 0.0
        del step, at
        big, small = sorted([float(m), float(n)], reverse=True)
        en = big * small / (big + small)
        p = kolmogorov.kstwo_sf(d, int(np.round(en)))
    np.abs(diff, out=diff)
    gaps = np.diff(z)
    gaps *= diff[:-1]  # not np.dot: BLAS threads cost more than the product here
    return d, p, float(gaps.sum())


# Not chi2_contingency: importing scipy.stats adds 0.6-1.3 s per process (drift_check.py)
def chi2_homogeneity(ref_counts: Any, cur_counts: Any) -> tuple[float, float, int]:
    """Chi-square test of homogeneity of two count vectors over the same categories.

    Equal to `scipy.stats.chi2_contingency([ref, cur])` (Yates' correction when the table has
    two columns, as scipy's default) on the table without the categories both sides lack; the
    p-value is `scipy.special.chdtrc`, the function behind `scipy.stats.chi2.sf`.

    Returns:
        (statistic, p_value, degrees of freedom); (0, 1, 0) for a single category.
    """
    from scipy import special

    table = np.vstack(
        [np.asarray(ref_counts, dtype=np.float64), np.asarray(cur_counts, dtype=np.float64)]
    )
    table = table[:, table.sum(axis=0) > 0]
    rows = table.sum(axis=1)
    if table.shape[1] < 2 or (rows == 0).any():
        return 0.0, 1.0, 0
    expected = np.outer(rows, table.sum(axis=0)) / table.sum()
    dof = table.shape[1] - 1
    observed = table
    if dof == 1:
        gap = expected - observed
        observed = observed + np.sign(gap) * np.minimum(0.5, np.abs(gap))
    stat = float(((observed - expected) ** 2 / expected).sum())
    return stat, float(special.chdtrc(dof, stat)), dof


# Not scipy.spatial.distance.jensenshannon: its import adds 0.1-0.3 s per process, for 4 lines
def js_distance(ref_counts: Any, cur_counts: Any) -> float:
    """Jensen-Shannon distance (base 2, so in [0, 1]) of two count vectors.

    Equal to `scipy.spatial.distance.jensenshannon(ref, cur, base=2)`.
    """
    from scipy.special import rel_entr

    p = np.asarray(ref_counts, dtype=np.float64)
    q = np.asarray(cur_counts, dtype=np.float64)
    p, q = p / p.sum(), q / q.sum()
    mid = (p + q) / 2.0
    js = (np.sum(rel_entr(p, mid)) + np.sum(rel_entr(q, mid))) / math.log(2.0)
    return float(np.sqrt(max(js, 0.0) / 2.0))


def psi(ref_counts: Any, cur_counts: Any, eps: float = PSI_EPS) -> float:
    """Population stability index: sum over bins of (c - r) * ln(c / r) on shares.

    Shares below `eps` are raised to `eps` (no renormalisation), so an empty bin on one side
    contributes a large but finite amount.
    """
    r = np.asarray(ref_counts, dtype=np.float64)
    c = np.asarray(cur_counts, dtype=np.float64)
    r = np.maximum(r / r.sum(), eps)
    c = np.maximum(c / c.sum(), eps)
    return float(np.sum((c - r) * np.log(c / r)))


# Not false_discovery_control: importing scipy.stats adds 0.6-1.3 s per process (drift_check.py)
def benjamini_hochberg(p_values: Any) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (q-values): reject at FDR q where adjusted <= q.

    Equal to `scipy.stats.false_discovery_control(p, method="bh")`.
    """
    p = np.asarray(p_values, dtype=np.float64)
    k = p.size
    if k == 0:
        return p
    order = np.argsort(p, kind="stable")
    scaled = p[order] * k / np.arange(1, k + 1)
    adjusted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    out = np.empty(k)
    out[order] = adjusted
    return out
