"""Drift of features, predictions and labels against a compact reference profile, and
performance decay against the champion's holdout metric.

The reference profile is built once from the champion's training data when the model version
is registered (`build_reference`) and stored with the version (`ReferenceProfile.to_bytes`, a
small zip). A check (`check_drift`) then needs only the profile and the current window.

Per column (all exact w.r.t. what the profile stores; known answers checked against scipy):

- numeric: two-sample Kolmogorov-Smirnov test of the present values (scipy's `ks_2samp`:
  exact p-value when both sides hold <= 10,000 values, else `kstwo.sf(D, round(m*n/(m+n)))`);
  effect sizes: the Wasserstein-1 distance divided by the reference standard deviation
  (population std of the full reference's present values) and the PSI on the reference's
  quantile bins plus a missing bin. When either side holds missing values, the missing share is
  tested too (2 x 2 chi-square test of homogeneity) and the column's p-value is the Bonferroni
  combination `min(1, 2 * min(p_ks, p_missing))`.
- categorical: chi-square test of homogeneity on the 2 x K table of reference and current
  counts (scipy's `chi2_contingency`, with its Yates correction when K = 2), NOT a goodness of
  fit test that treats the reference shares as exact (that form multiplies the statistic by
  about 1 + n_current / n_reference under no drift and flags undrifted columns on large
  windows); effect sizes: Jensen-Shannon distance (base 2, in [0, 1]) and PSI. Categories
  unseen in the reference and missing values are columns of the table, not dropped.

Decision rule: a column drifts only when its p-value survives a Benjamini-Hochberg correction
across every checked column at `DriftConfig.fdr` AND one of its effect sizes reaches the
configured minimum; below `min_rows` current rows the verdict is "not enough data". The data
set drifts when any column does.

What the KS test sees: the profile keeps, per numeric column, a simple random sample (without
replacement) of at most `sample_rows` present reference values, and the test is the exact
two-sample test of that sample against every present current value. Under no drift the sample
and the window are i.i.d. draws of one distribution, so the p-value is valid; the price is
power: the effective size is m*n/(m+n) (m the sample size) instead of N*n/(N+n) for the full
reference of N values. At the defaults (m = 50,000) and a 500,000-row window that is 45,455
instead of 250,000 for a 500,000-row reference: the KS distance detectable at alpha = 0.05
grows from 0.0027 to 0.0064, still far below what the effect-size minimums require (a
0.1-sigma mean shift moves a normal's KS distance by 0.04). The missing-share test, the PSI
bins and the standard deviation use the full reference.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import math
import os
import re
import zipfile
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from airmlops_core.errors import ProfileError
from airmlops_core.jsonsafe import jsonable
from airmlops_core.spec import LOWER_IS_BETTER
from airmlops_core.stats import comparison as cmp

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

__all__ = [
    "PROFILE_ARTIFACT",
    "PSI_EPS",
    "CategoricalProfile",
    "ColumnDrift",
    "DriftConfig",
    "DriftResult",
    "NumericProfile",
    "PerformanceDrift",
    "ProfileError",
    "ReferenceProfile",
    "benjamini_hochberg",
    "build_reference",
    "check_drift",
    "chi2_homogeneity",
    "js_distance",
    "ks_wasserstein",
    "kstwo_sf",
    "performance_drift",
    "psi",
]

PROFILE_FORMAT = "airmlops.drift_reference/1"
PROFILE_ARTIFACT = "drift_reference.zip"
"""Suggested artifact name of the profile, logged with the model version."""
PSI_EPS = 1e-4
"""Shares below this are raised to it before PSI's log ratio (an empty bin would be infinite)."""
KS_EXACT_MAX = 10_000
"""scipy's `ks_2samp(method="auto")` computes the exact p-value when both sizes are <= this."""
MAX_REPORTED_CATEGORIES = 20
MISSING = "(missing)"
OTHER = "(other)"

_T = TypeVar("_T")
_R = TypeVar("_R")
Kind = Literal["numeric", "categorical"]
Role = Literal["feature", "prediction", "label"]
ROLES: tuple[str, ...] = ("feature", "prediction", "label")
STATUSES = ("drift", "no_drift", "not_enough_data")


# --------------------------------------------------------------------------------------------
# Statistics on arrays (each equal to scipy's on the same arrays; see tests/unit/test_drift.py)
# --------------------------------------------------------------------------------------------


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
        p = kstwo_sf(d, int(np.round(en)))
    np.abs(diff, out=diff)
    gaps = np.diff(z)
    gaps *= diff[:-1]  # not np.dot: BLAS threads cost more than the product here
    return d, p, float(gaps.sum())


# scipy.stats.kstwo.sf without importing scipy.stats (about a second per process): for n > 140,
# the branches of scipy.stats._ksstats._kolmogn (cdf=False), ported from scipy 1.17
# (BSD-3-Clause; Simard & L'Ecuyer 2011, Marsaglia-Tsang-Wang 2003, Pelz & Good 1976), with
# scipy.special.smirnov's O(n) scalar loop replaced by the same sum vectorised for n > 1000
# (relative difference < 1e-10; a drifted column's p-value in 1 ms instead of 30-60 ms).
# Checked against scipy.stats.kstwo.sf in tests/unit/test_drift.py.
_E128 = 128
_EP128 = np.ldexp(np.longdouble(1), _E128)
_EM128 = np.ldexp(np.longdouble(1), -_E128)
_SQRT2PI = np.sqrt(2 * np.pi)
_LOG_2PI = np.log(2 * np.pi)
_MIN_LOG = -708
_SQRT3 = np.sqrt(3)
_PI_SQUARED = np.pi**2
_PI_FOUR = np.pi**4
_PI_SIX = np.pi**6
_STIRLING_COEFFS = [
    -2.955065359477124183e-2,
    6.4102564102564102564e-3,
    -1.9175269175269175269e-3,
    8.4175084175084175084e-4,
    -5.952380952380952381e-4,
    7.9365079365079365079e-4,
    -2.7777777777777777778e-3,
    8.3333333333333333333e-2,
]


def kstwo_sf(d: float, n: int) -> float:
    """P(D_n >= d) of the two-sided one-sample KS statistic: `scipy.stats.kstwo.sf(d, n)`."""

    if n <= 140:  # small n: scipy's exact matrix methods
        from scipy import stats

        return float(stats.kstwo.sf(d, n))
    if d >= 1.0:
        return 0.0
    t = n * d
    if t <= 0.5:
        return 1.0
    if t <= 1.0:
        prob = np.exp(_log_nfactorial_div_n_pow_n(n) + n * np.log(2 * t - 1))
        return _clip(1.0 - prob)
    if t >= n - 1:
        return _clip(2 * (1.0 - d) ** n)
    if d >= 0.5:
        return _clip(2 * _smirnov(n, d))
    nxsquared = t * d
    if nxsquared >= 370.0:
        return 0.0
    if nxsquared >= 2.2:
        return _clip(2 * _smirnov(n, d))
    if n <= 100000 and n * d**1.5 <= 1.4:
        cdfprob = _kolmogn_dmtw(n, d)
    else:
        cdfprob = _kolmogn_pelz_good(n, d)
    return _clip(1.0 - cdfprob)


def _smirnov(n: int, x: float) -> float:
    """P(D+_n >= x), one-sided: `scipy.special.smirnov(n, x)`, its sum vectorised for large n.

    Birnbaum & Tingey (1951): x * sum_{j=0}^{floor(n(1-x))} C(n, j) (1-x-j/n)^(n-j) (x+j/n)^(j-1),
    every term positive (no cancellation), each computed through logarithms.
    """
    from scipy import special

    if n <= 1000:
        return float(special.smirnov(n, x))
    j = np.arange(0, int(np.floor(n * (1 - x))) + 1, dtype=np.float64)
    with np.errstate(divide="ignore"):  # the last term may be 0 ** (n - j): log 0 = -inf
        log_terms = (
            special.gammaln(n + 1.0)
            - special.gammaln(j + 1.0)
            - special.gammaln(n - j + 1.0)
            + (n - j) * np.log1p(-x - j / n)
            + (j - 1) * np.log(x + j / n)
        )
    return float(x * np.exp(log_terms).sum())


def _clip(p: Any) -> float:
    return float(np.clip(p, 0.0, 1.0))


def _log_nfactorial_div_n_pow_n(n: int) -> float:
    rn = 1.0 / n
    return float(np.log(n) / 2 - n + _LOG_2PI / 2 + rn * np.polyval(_STIRLING_COEFFS, rn / n))


def _kolmogn_dmtw(n: int, d: float) -> Any:
    """CDF of D_n by the Durbin matrix (Marsaglia-Tsang-Wang), for d > 0.5/n."""
    nd = n * d
    k = int(np.ceil(nd))
    h = k - nd
    m = 2 * k - 1
    H = np.zeros([m, m])
    intm = np.arange(1, m + 1)
    v = 1.0 - h**intm
    w = np.empty(m)
    fac = 1.0
    for j in intm:
        w[j - 1] = fac
        fac /= j
        v[j - 1] *= fac
    tt = max(2 * h - 1.0, 0) ** m - 2 * h**m
    v[-1] = (1.0 + tt) * fac
    for i in range(1, m):
        H[i - 1 :, i] = w[: m - i + 1]
    H[:, 0] = v
    H[-1, :] = np.flip(v, axis=0)
    Hpwr = np.eye(np.shape(H)[0])
    nn = n
    expnt = 0
    Hexpnt = 0
    with np.errstate(over="ignore", invalid="ignore"):  # as scipy, minus its warnings
        while nn > 0:
            if nn % 2:
                Hpwr = np.matmul(Hpwr, H)
                expnt += Hexpnt
            H = np.matmul(H, H)
            Hexpnt *= 2
            if np.abs(H[k - 1, k - 1]) > _EP128:
                H /= _EP128
                Hexpnt += _E128
            nn = nn // 2
    p = Hpwr[k - 1, k - 1]
    for i in range(1, n + 1):
        p = i * p / n
        if np.abs(p) < _EM128:
            p *= _EP128
            expnt -= _E128
    if expnt != 0:
        p = np.ldexp(p, expnt)
    return np.clip(p, 0.0, 1.0)  # long double, as scipy keeps it until 1 - cdf


def _kolmogn_pelz_good(n: int, x: float) -> Any:
    """Pelz-Good approximation of the CDF of D_n, for 0 < x < 1."""
    z = np.sqrt(n) * x
    zsquared, zthree, zfour, zsix = z**2, z**3, z**4, z**6
    qlog = -_PI_SQUARED / 8 / zsquared
    if qlog < _MIN_LOG:
        return 0.0
    q = np.exp(qlog)
    k1a = -zsquared
    k1b = _PI_SQUARED / 4
    k2a = 6 * zsix + 2 * zfour
    k2b = (2 * zfour - 5 * zsquared) * _PI_SQUARED / 4
    k2c = _PI_FOUR * (1 - 2 * zsquared) / 16
    k3d = _PI_SIX * (5 - 30 * zsquared) / 64
    k3c = _PI_FOUR * (-60 * zsquared + 212 * zfour) / 16
    k3b = _PI_SQUARED * (135 * zfour - 96 * zsix) / 4
    k3a = -30 * zsix - 90 * z**8
    K0to3 = np.zeros(4)
    maxk = int(np.ceil(16 * z / np.pi))
    for k in range(maxk, 0, -1):
        m = 2 * k - 1
        msquared, mfour, msix = m**2, m**4, m**6
        qpower = np.power(q, 8 * k)
        coeffs = np.array(
            [
                1.0,
                k1a + k1b * msquared,
                k2a + k2b * msquared + k2c * mfour,
                k3a + k3b * msquared + k3c * mfour + k3d * msix,
            ]
        )
        K0to3 *= qpower
        K0to3 += coeffs
    K0to3 *= q
    K0to3 *= _SQRT2PI
    K0to3 /= np.array([z, 6 * zfour, 72 * z**7, 6480 * z**10])
    q = np.exp(-_PI_SQUARED / 2 / zsquared)
    ks = np.arange(maxk, 0, -1)
    ksquared = ks**2
    sqrt3z = _SQRT3 * z
    kspi = np.pi * ks
    qpwers = q**ksquared
    k2extra = np.sum(ksquared * qpwers)
    k2extra *= _PI_SQUARED * _SQRT2PI / (-36 * zthree)
    K0to3[2] += k2extra
    k3extra = np.sum((sqrt3z + kspi) * (sqrt3z - kspi) * ksquared * qpwers)
    k3extra *= _PI_SQUARED * _SQRT2PI / (216 * zsix)
    K0to3[3] += k3extra
    powers_of_n = np.power(n * 1.0, np.arange(len(K0to3)) / 2.0)
    K0to3 /= powers_of_n
    return sum(K0to3)


def chi2_homogeneity(ref_counts: Any, cur_counts: Any) -> tuple[float, float, int]:
    """Chi-square test of homogeneity of two count vectors over the same categories.

    Equal to `scipy.stats.chi2_contingency([ref, cur])` (Yates' correction when the table has
    two columns, as scipy's default) on the table without the categories both sides lack.

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


# --------------------------------------------------------------------------------------------
# Column values
# --------------------------------------------------------------------------------------------


def _workers(workers: int | None) -> int:
    """Threads for per-column work: numpy's sort, search and arithmetic release the GIL."""
    return max(1, min(4, os.cpu_count() or 1) if workers is None else workers)


def _map(fn: Callable[[_T], _R], items: Sequence[_T], workers: int) -> list[_R]:
    """[fn(x) for x in items], on `workers` threads when there is more than one item."""
    if workers <= 1 or len(items) <= 1:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(pool.map(fn, items))


def _numeric_values(series: pd.Series, column: str, where: str) -> np.ndarray:
    """float64 values (missing -> NaN; callers treat every non-finite value as missing)."""
    import pandas as pd

    dtype = series.dtype
    if not (pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_bool_dtype(dtype)):
        raise ValueError(f"{where}: column '{column}' must be numeric, got dtype {dtype}")
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    return values


def _key(value: Any) -> str:
    """The category key of a value: integral floats as integers, so 1 and 1.0 match."""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        f = float(value)
        return str(int(f)) if f.is_integer() else repr(f)
    return str(value)


def _category_counts(series: pd.Series) -> tuple[dict[str, int], int]:
    """Counts per category key, and the number of missing values."""
    n_missing = int(series.isna().sum())
    counts: dict[str, int] = {}
    for value, count in series.value_counts(dropna=True, sort=False).items():
        key = _key(value)
        counts[key] = counts.get(key, 0) + int(count)
    return counts, n_missing


# --------------------------------------------------------------------------------------------
# The reference profile
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class NumericProfile:
    """A numeric column of the reference.

    Attributes:
        name: Column name.
        role: feature, prediction or label.
        n_rows: Reference rows.
        n_missing: Missing or non-finite values among them.
        mean: Mean of the present values (NaN when none).
        std: Population standard deviation of the present values: the Wasserstein spread.
        sample: Sorted simple random sample (without replacement) of the present values: the
            reference side of the KS test and the Wasserstein distance.
        edges: Interior PSI bin edges: the distinct reference quantiles at 1/bins, ...,
            (bins-1)/bins, each the smallest reference value with at least that share of the
            present values at or below it (numpy's "inverted_cdf"). Bin i holds the values in
            (edges[i-1], edges[i]].
        bin_counts: Full-reference count per bin (len(edges) + 1 bins).
    """

    name: str
    role: str
    n_rows: int
    n_missing: int
    mean: float
    std: float
    sample: np.ndarray
    edges: np.ndarray
    bin_counts: np.ndarray
    kind: str = field(default="numeric", init=False)

    @property
    def n_present(self) -> int:
        return self.n_rows - self.n_missing


@dataclass(frozen=True, eq=False)
class CategoricalProfile:
    """A categorical column of the reference: every category's count (up to a cap).

    Attributes:
        categories: Category keys (see `_key`), most frequent first.
        counts: Reference count per category.
        other: Rows in categories beyond the cap, lumped together (0 when nothing was capped).
            When non-zero, current values outside `categories` count as "other", not unseen.
    """

    name: str
    role: str
    n_rows: int
    n_missing: int
    categories: tuple[str, ...]
    counts: np.ndarray
    other: int = 0
    kind: str = field(default="categorical", init=False)


ColumnProfile = NumericProfile | CategoricalProfile


@dataclass(frozen=True, eq=False)
class ReferenceProfile:
    """What a drift check compares against: per column a compact summary of the reference.

    Store it with the model version (`to_bytes`, artifact `PROFILE_ARTIFACT`); it never needs the
    training data again.
    """

    columns: dict[str, ColumnProfile]
    n_rows: int
    sample_rows: int
    bins: int
    seed: int
    description: str = ""

    def names(self, roles: Collection[str] = ROLES) -> list[str]:
        """Profiled columns with one of `roles`, in profile order."""
        return [c for c, p in self.columns.items() if p.role in roles]

    def empty_frame(self) -> pd.DataFrame:
        """No rows, one column per profiled column with its kind's dtype: a window with no
        data, which checks as "not enough data"."""
        import pandas as pd

        return pd.DataFrame(
            {
                c: pd.Series(dtype="float64" if p.kind == "numeric" else "object")
                for c, p in self.columns.items()
            }
        )

    def merge(self, other: ReferenceProfile) -> ReferenceProfile:
        """Both profiles' columns (e.g. features from training data, predictions from the holdout).

        Raises:
            ProfileError: a column name is in both.
        """
        both = sorted(set(self.columns) & set(other.columns))
        if both:
            raise ProfileError(f"columns profiled twice: {both}")
        desc = "; ".join(d for d in (self.description, other.description) if d)
        return dataclasses.replace(
            self,
            columns={**self.columns, **other.columns},
            n_rows=max(self.n_rows, other.n_rows),
            description=desc,
        )

    # ---- serialisation: a zip of profile.json + one .npy per numeric sample

    def to_bytes(self) -> bytes:
        """The profile as a deflated zip: profile.json plus samples/<i>.npy (float64)."""
        meta: dict[str, Any] = {
            "format": PROFILE_FORMAT,
            "n_rows": self.n_rows,
            "sample_rows": self.sample_rows,
            "bins": self.bins,
            "seed": self.seed,
            "description": self.description,
            "columns": [],
        }
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
            for i, prof in enumerate(self.columns.values()):
                entry: dict[str, Any] = {
                    "name": prof.name,
                    "kind": prof.kind,
                    "role": prof.role,
                    "n_rows": prof.n_rows,
                    "n_missing": prof.n_missing,
                }
                if isinstance(prof, NumericProfile):
                    member = f"samples/{i}.npy"
                    arr = io.BytesIO()
                    np.save(
                        arr, np.ascontiguousarray(prof.sample, dtype=np.float64), allow_pickle=False
                    )
                    zf.writestr(member, arr.getvalue())
                    entry.update(
                        mean=_finite_or_none(prof.mean),
                        std=_finite_or_none(prof.std),
                        sample=member,
                        edges=prof.edges.tolist(),
                        bin_counts=prof.bin_counts.tolist(),
                    )
                else:
                    entry.update(
                        categories=list(prof.categories),
                        counts=prof.counts.tolist(),
                        other=prof.other,
                    )
                meta["columns"].append(entry)
            zf.writestr("profile.json", json.dumps(meta, indent=1))
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, blob: bytes, *, source: str = "reference profile") -> ReferenceProfile:
        """Read `to_bytes` output; `source` names it in errors (e.g. the artifact URI).

        Raises:
            ProfileError: not a profile, another format version, or inconsistent content.
        """
        try:
            zf = zipfile.ZipFile(io.BytesIO(blob))
            meta = json.loads(zf.read("profile.json"))
        except (zipfile.BadZipFile, KeyError, ValueError) as exc:
            raise ProfileError(f"{source}: not a drift reference profile ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != PROFILE_FORMAT:
            found = meta.get("format") if isinstance(meta, dict) else None
            raise ProfileError(f"{source}: format {found!r}, expected {PROFILE_FORMAT!r}")
        columns: dict[str, ColumnProfile] = {}
        with zf:
            for entry in meta.get("columns", []):
                name = entry.get("name")
                try:
                    prof = _column_from_entry(entry, zf)
                except (KeyError, TypeError, ValueError) as exc:
                    raise ProfileError(f"{source}: column {name!r}: {exc}") from None
                if prof.name in columns:
                    raise ProfileError(f"{source}: column {name!r} appears twice")
                columns[prof.name] = prof
        try:
            return cls(
                columns=columns,
                n_rows=int(meta["n_rows"]),
                sample_rows=int(meta["sample_rows"]),
                bins=int(meta["bins"]),
                seed=int(meta["seed"]),
                description=str(meta.get("description", "")),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ProfileError(f"{source}: profile.json lacks {exc}") from None

    def save(self, path: str | Path) -> Path:
        """Write `to_bytes` to a local file (temporary name, then rename)."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(self.to_bytes())
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> ReferenceProfile:
        """Read a profile written by `save` (or downloaded from MLflow)."""
        path = Path(path)
        try:
            blob = path.read_bytes()
        except OSError as exc:
            raise ProfileError(f"{path}: cannot read the reference profile: {exc}") from None
        return cls.from_bytes(blob, source=str(path))


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _column_from_entry(entry: dict[str, Any], zf: zipfile.ZipFile) -> ColumnProfile:
    name, role, kind = str(entry["name"]), str(entry["role"]), entry["kind"]
    n_rows, n_missing = int(entry["n_rows"]), int(entry["n_missing"])
    if role not in ROLES:
        raise ValueError(f"role {role!r} is not one of {list(ROLES)}")
    if not 0 <= n_missing <= n_rows:
        raise ValueError(f"n_missing {n_missing} outside 0..n_rows {n_rows}")
    if kind == "numeric":
        with zf.open(entry["sample"]) as fh:
            sample = np.load(io.BytesIO(fh.read()), allow_pickle=False)
        if sample.dtype != np.float64 or sample.ndim != 1:
            raise ValueError(f"sample must be 1-D float64, got {sample.dtype} {sample.shape}")
        if sample.size > n_rows - n_missing:
            raise ValueError(
                f"sample of {sample.size} values exceeds the {n_rows - n_missing} present values"
            )
        if not np.isfinite(sample).all() or (sample.size > 1 and (np.diff(sample) < 0).any()):
            raise ValueError("sample must be finite and sorted")
        edges = np.asarray(entry["edges"], dtype=np.float64)
        bin_counts = np.asarray(entry["bin_counts"], dtype=np.int64)
        if bin_counts.size != edges.size + 1 or bin_counts.sum() != n_rows - n_missing:
            raise ValueError("bin_counts do not match the edges and the present values")
        if edges.size > 1 and (np.diff(edges) <= 0).any():
            raise ValueError("edges must be strictly increasing")
        mean, std = entry.get("mean"), entry.get("std")
        return NumericProfile(
            name=name,
            role=role,
            n_rows=n_rows,
            n_missing=n_missing,
            mean=math.nan if mean is None else float(mean),
            std=math.nan if std is None else float(std),
            sample=sample,
            edges=edges,
            bin_counts=bin_counts,
        )
    if kind == "categorical":
        categories = tuple(str(c) for c in entry["categories"])
        counts = np.asarray(entry["counts"], dtype=np.int64)
        other = int(entry.get("other", 0))
        if len(set(categories)) != len(categories) or counts.size != len(categories):
            raise ValueError("categories must be distinct, one count each")
        if (counts < 0).any() or other < 0 or counts.sum() + other + n_missing != n_rows:
            raise ValueError("category counts + other + missing do not add up to n_rows")
        return CategoricalProfile(
            name=name,
            role=role,
            n_rows=n_rows,
            n_missing=n_missing,
            categories=categories,
            counts=counts,
            other=other,
        )
    raise ValueError(f"kind {kind!r} is neither numeric nor categorical")


def build_reference(
    df: pd.DataFrame,
    *,
    numeric: Sequence[str] = (),
    categorical: Sequence[str] = (),
    role: str = "feature",
    sample_rows: int = 50_000,
    bins: int = 10,
    max_categories: int = 1000,
    seed: int = 0,
    description: str = "",
    workers: int | None = None,
) -> ReferenceProfile:
    """Profile `df`'s columns for later drift checks.

    Build one profile per role and `merge` them: features and labels from the training data,
    predictions (`role="prediction"`) from the champion's output on its holdout (out-of-sample
    scores; in-sample scores of a flexible model are more extreme than production scores and
    would show as prediction drift).

    Args:
        df: The reference rows.
        numeric: Numeric columns: each keeps a sorted random sample of at most `sample_rows`
            present values, its mean and std, `bins` quantile bins with full-reference counts.
        categorical: Categorical columns: each keeps every category's count, the
            `max_categories` most frequent ones when there are more (the rest as "other").
        role: "feature", "prediction" or "label".
        sample_rows: Size of the stored sample per numeric column (KS/Wasserstein reference).
        bins: Number of PSI quantile bins for numeric columns.
        max_categories: Most categories stored per categorical column.
        seed: Seed of the sampling; column i of `numeric` is sampled with
            np.random.default_rng([seed, i]), so the profile does not depend on `workers`.
        description: Free text kept in the profile (e.g. the training data reference).
        workers: Threads for the per-column work (default: up to 4, the CPU count).

    Raises:
        ProfileError: a column is missing, listed twice or has the wrong type; bad sizes.
    """
    if role not in ROLES:
        raise ProfileError(f"role {role!r} is not one of {list(ROLES)}")
    if sample_rows < 1 or bins < 2 or max_categories < 1:
        raise ProfileError(
            f"need sample_rows >= 1, bins >= 2, max_categories >= 1; got "
            f"{sample_rows}, {bins}, {max_categories}"
        )
    names = [*numeric, *categorical]
    dup = sorted({c for c in names if names.count(c) > 1})
    if dup:
        raise ProfileError(f"columns listed twice: {dup}")
    missing = [c for c in names if c not in df.columns]
    if missing:
        raise ProfileError(
            f"reference data lacks the columns {missing} (it has {list(df.columns)[:30]})"
        )
    if len(df) == 0:
        raise ProfileError("the reference data has no rows")
    for name in numeric:
        try:
            _numeric_values(df[name].iloc[:0], name, "reference data")
        except ValueError as exc:
            raise ProfileError(str(exc)) from None

    def numeric_profile(item: tuple[int, str]) -> NumericProfile:
        i, name = item
        values = _numeric_values(df[name], name, "reference data")
        return _profile_numeric(
            name, role, values, sample_rows, bins, np.random.default_rng([seed, i])
        )

    profiles = _map(numeric_profile, list(enumerate(numeric)), _workers(workers))
    columns: dict[str, ColumnProfile] = {p.name: p for p in profiles}
    for name in categorical:
        counts, n_missing = _category_counts(df[name])
        ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        kept, lumped = ordered[:max_categories], ordered[max_categories:]
        if lumped:
            log.warning(
                "reference column '%s' has %d categories; keeping the %d most frequent",
                name,
                len(ordered),
                max_categories,
            )
        columns[name] = CategoricalProfile(
            name=name,
            role=role,
            n_rows=len(df),
            n_missing=n_missing,
            categories=tuple(k for k, _ in kept),
            counts=np.array([v for _, v in kept], dtype=np.int64),
            other=int(sum(v for _, v in lumped)),
        )
    return ReferenceProfile(
        columns=columns,
        n_rows=len(df),
        sample_rows=sample_rows,
        bins=bins,
        seed=seed,
        description=description,
    )


def _profile_numeric(
    name: str, role: str, values: np.ndarray, sample_rows: int, bins: int, rng: np.random.Generator
) -> NumericProfile:
    present = values[np.isfinite(values)]
    present.sort()
    n_present = present.size
    if n_present > sample_rows:  # sorted positions of a simple random sample: already sorted
        sample = present[np.sort(rng.choice(n_present, size=sample_rows, replace=False))]
    else:
        sample = present
    if n_present:
        # the smallest value with at least i/bins of the present values at or below it
        idx = (n_present * np.arange(1, bins) + bins - 1) // bins - 1
        edges = np.unique(present[idx])
        cum = np.searchsorted(present, edges, side="right")
        bin_counts = np.diff(np.concatenate([[0], cum, [n_present]])).astype(np.int64)
        mean, std = float(present.mean()), float(present.std())
    else:
        edges, bin_counts = np.empty(0), np.zeros(1, dtype=np.int64)
        mean = std = math.nan
    return NumericProfile(
        name=name,
        role=role,
        n_rows=values.size,
        n_missing=values.size - n_present,
        mean=mean,
        std=std,
        sample=sample,
        edges=edges,
        bin_counts=bin_counts,
    )


# --------------------------------------------------------------------------------------------
# Configuration and results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DriftConfig:
    """The decision rule's knobs (the spec's drift section).

    Attributes:
        fdr: Benjamini-Hochberg false discovery rate across the checked columns.
        min_rows: Fewer current rows than this: "not enough data" instead of a verdict.
        min_wasserstein: Numeric effect minimum: Wasserstein distance in reference stds (a
            mean shift of 0.1 sd gives 0.1).
        min_psi: PSI minimum (numeric and categorical); 0.1 is the usual "moderate shift".
        min_js: Categorical effect minimum: Jensen-Shannon distance, base 2. 0.07 is met by
            any 10-point shift of the category mix (the least: 50/50 -> 40/60, 0.085) and by a
            new category taking 1% of the rows (sqrt(0.01 / 2)); a 5-point shift gives
            0.04-0.05.
    """

    fdr: float = 0.05
    min_rows: int = 500
    min_wasserstein: float = 0.1
    min_psi: float = 0.1
    min_js: float = 0.07

    def __post_init__(self) -> None:
        if not 0.0 < self.fdr < 1.0:
            raise ValueError(f"fdr must be in (0, 1), got {self.fdr}")
        if self.min_rows < 2:
            raise ValueError(f"min_rows must be >= 2, got {self.min_rows}")
        for name in ("min_wasserstein", "min_psi", "min_js"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def minimums(self, kind: str) -> dict[str, float]:
        """Effect name -> minimum for a column kind; reaching any one is a large effect."""
        if kind == "numeric":
            return {"wasserstein": self.min_wasserstein, "psi": self.min_psi}
        return {"js": self.min_js, "psi": self.min_psi}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ColumnDrift:
    """One column's evidence and verdict.

    Attributes:
        column, kind, role: What was checked.
        status: "drift", "no_drift" or "not_enough_data".
        test: "ks_2samp" (numeric; "+missing" when the missing share was tested too) or
            "chi2_homogeneity".
        n_ref: Reference values the test used: the stored sample's size for KS (the effective
            reference size), all reference rows for chi-square.
        n_cur: Current rows.
        statistic: KS distance D, or the chi-square statistic.
        p_value: The column's p-value entering the correction.
        p_adjusted: Its Benjamini-Hochberg adjusted p-value (None without a verdict).
        effects: wasserstein (in reference stds) and psi, or js and psi.
        exceeded: Effect names at or above their minimum.
        significant: p_adjusted <= fdr.
        missing_ref, missing_cur: Shares of missing (or non-finite) values.
        unseen_cur: Share of current rows in categories the reference never had (categorical).
        details: Per-test numbers and the distributions for the report (bins or categories).
    """

    column: str
    kind: str
    role: str
    status: str
    test: str
    n_ref: int
    n_cur: int
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    effects: dict[str, float | None] = field(default_factory=dict)
    exceeded: list[str] = field(default_factory=list)
    significant: bool = False
    missing_ref: float = 0.0
    missing_cur: float = 0.0
    unseen_cur: float | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def drifted(self) -> bool:
        return self.status == "drift"

    def strength(self) -> float:
        """Largest effect relative to its minimum (orders columns by how much they moved)."""
        vals = [v for v in self.effects.values() if v is not None]
        return max(vals, default=0.0)

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ColumnDrift:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class DriftResult:
    """The verdict of one check and every column's evidence. JSON-able via `to_dict`."""

    status: str
    n_ref: int
    n_cur: int
    columns: list[ColumnDrift]
    config: DriftConfig
    reason: str = ""

    @property
    def drifted(self) -> list[str]:
        """Drifted columns, largest effect first."""
        cols = sorted((c for c in self.columns if c.drifted), key=lambda c: -c.strength())
        return [c.column for c in cols]

    def column(self, name: str) -> ColumnDrift:
        for col in self.columns:
            if col.column == name:
                return col
        raise KeyError(f"no column '{name}' in this drift result")

    def by_role(self, role: str) -> list[ColumnDrift]:
        return [c for c in self.columns if c.role == role]

    def decide(self, config: DriftConfig) -> DriftResult:
        """The same evidence under another decision rule (no statistics recomputed)."""
        columns = [
            dataclasses.replace(c, status="not_enough_data" if c.p_value is None else c.status)
            for c in self.columns
        ]
        return _decide(columns, config, self.n_ref, self.n_cur)

    def summary(self) -> str:
        """One line for logs and alerts."""
        checked = sum(c.p_value is not None for c in self.columns)
        if self.status == "not_enough_data":
            return f"not enough data: {self.reason}"
        if self.status == "no_drift":
            return (
                f"no drift in {checked} checked column(s) on {self.n_cur:,} rows "
                f"(FDR {self.config.fdr:g})"
            )
        parts = []
        for name in self.drifted:
            c = self.column(name)
            eff = ", ".join(f"{k} {v:.3g}" for k, v in c.effects.items() if v is not None)
            parts.append(f"{name} ({eff})")
        return f"drift in {len(parts)} of {checked} column(s) on {self.n_cur:,} rows: " + "; ".join(
            parts
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "n_ref": self.n_ref,
            "n_cur": self.n_cur,
            "reason": self.reason,
            "config": self.config.to_dict(),
            "drifted": self.drifted,
            "columns": [c.to_dict() for c in self.columns],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), allow_nan=False)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DriftResult:
        return cls(
            status=d["status"],
            n_ref=int(d["n_ref"]),
            n_cur=int(d["n_cur"]),
            columns=[ColumnDrift.from_dict(c) for c in d["columns"]],
            config=DriftConfig(**d["config"]),
            reason=d.get("reason", ""),
        )

    def compact(self) -> dict[str, Any]:
        """A small summary for XCom and alerts: verdict, drifted columns with effect sizes."""
        return {
            "status": self.status,
            "n_cur": self.n_cur,
            "summary": self.summary(),
            "checked": sum(c.p_value is not None for c in self.columns),
            "drifted": {
                n: jsonable({k: v for k, v in self.column(n).effects.items()}) for n in self.drifted
            },
        }

    def metrics(self, prefix: str = "drift") -> dict[str, float]:
        """Numbers for mlflow.log_metrics: per column p-values, effects and verdicts, totals."""
        out: dict[str, float] = {
            f"{prefix}.dataset.drift": float(self.status == "drift"),
            f"{prefix}.dataset.n_drifted": float(len(self.drifted)),
            f"{prefix}.dataset.n_cur": float(self.n_cur),
        }
        for c in self.columns:
            base = f"{prefix}.{c.role}.{metric_name(c.column)}"
            vals: dict[str, float | None] = {
                "p_value": c.p_value,
                "p_adjusted": c.p_adjusted,
                "statistic": c.statistic,
                "drift": float(c.drifted),
                "missing_share": c.missing_cur,
                "unseen_share": c.unseen_cur,
                **c.effects,
            }
            for k, v in vals.items():
                if v is not None and math.isfinite(v):
                    out[f"{base}.{k}"] = float(v)
        return out


def metric_name(name: str) -> str:
    """MLflow metric names allow alphanumerics, _ - . space and /."""
    return re.sub(r"[^A-Za-z0-9_\-. /]", "_", name)


# --------------------------------------------------------------------------------------------
# The check
# --------------------------------------------------------------------------------------------


def check_drift(
    reference: ReferenceProfile,
    current: pd.DataFrame,
    *,
    config: DriftConfig | None = None,
    roles: Collection[str] = ("feature", "prediction"),
    columns: Iterable[str] | None = None,
    workers: int | None = None,
) -> DriftResult:
    """Compare `current` with the reference profile, column by column, and decide.

    Args:
        reference: The champion's profile.
        current: The window: scored rows (features + prediction columns), or labelled rows
            for label drift (`roles=("label",)`).
        config: The decision rule; defaults to DriftConfig().
        roles: Profile columns of these roles are checked (and corrected together).
        columns: Restrict to these profiled columns (default: all of `roles`).
        workers: Threads for the per-column work (default: up to 4, the CPU count).

    Returns:
        The DriftResult: status "drift" (some column drifts), "no_drift" or "not_enough_data"
        (fewer than `config.min_rows` current rows).

    Raises:
        ValueError: a checked column is absent from `current` or has the wrong type, or an
            unknown column was asked for.
    """
    cfg = config or DriftConfig()
    names = reference.names(roles)
    if columns is not None:
        wanted = list(columns)
        unknown = [c for c in wanted if c not in reference.columns]
        if unknown:
            raise ValueError(
                f"columns {unknown} are not in the reference profile "
                f"(profiled: {list(reference.columns)})"
            )
        names = [c for c in names if c in wanted]
    if not names:
        raise ValueError(f"the reference profile has no column with role {sorted(roles)}")
    absent = [c for c in names if c not in current.columns]
    if absent:
        raise ValueError(f"the current data lacks the profiled columns {absent}")
    n = len(current)
    for name in names:  # type errors before any work
        if isinstance(reference.columns[name], NumericProfile):
            _numeric_values(current[name].iloc[:0], name, "current data")

    def one(name: str) -> ColumnDrift:
        prof = reference.columns[name]
        if isinstance(prof, NumericProfile):
            return _numeric_column(prof, _numeric_values(current[name], name, "current data"), cfg)
        counts, n_missing = _category_counts(current[name])
        return _categorical_column(prof, counts, n_missing, n, cfg)

    # numeric columns first: the longest tasks start early
    order = sorted(names, key=lambda c: not isinstance(reference.columns[c], NumericProfile))
    done = dict(zip(order, _map(one, order, _workers(workers)), strict=True))
    return _decide([done[c] for c in names], cfg, reference.n_rows, n)


def _numeric_column(prof: NumericProfile, values: np.ndarray, cfg: DriftConfig) -> ColumnDrift:
    n = values.size
    cur = values[np.isfinite(values)]
    cur.sort()
    n_missing = n - cur.size
    base = ColumnDrift(
        column=prof.name,
        kind="numeric",
        role=prof.role,
        status="no_drift",
        test="ks_2samp",
        n_ref=int(prof.sample.size),
        n_cur=n,
        missing_ref=prof.n_missing / prof.n_rows if prof.n_rows else 0.0,
        missing_cur=n_missing / n if n else 0.0,
    )
    if n < cfg.min_rows:
        return dataclasses.replace(base, status="not_enough_data")
    details: dict[str, Any] = {
        "ref_rows": prof.n_rows,
        "ref_mean": prof.mean,
        "ref_std": prof.std,
        "spread": "std",
    }
    d = p_ks = wass = None
    if cur.size and prof.sample.size:
        d, p_ks, wass = ks_wasserstein(prof.sample, cur)
        details.update(
            ks_statistic=d,
            ks_p_value=p_ks,
            wasserstein_raw=wass,
            cur_mean=float(cur.mean()),
            cur_std=float(cur.std()),
        )
    p_miss = None
    if prof.n_missing or n_missing:
        stat_m, p_miss, _ = chi2_homogeneity(
            [prof.n_present, prof.n_missing], [cur.size, n_missing]
        )
        details.update(missing_chi2=stat_m, missing_p_value=p_miss)
    if p_ks is None and p_miss is None:
        return dataclasses.replace(base, status="not_enough_data", details=details)
    if p_ks is None:
        p, test = p_miss, "missing_share"
    elif p_miss is None:
        p, test = p_ks, "ks_2samp"
    else:
        p, test = min(1.0, 2.0 * min(p_ks, p_miss)), "ks_2samp+missing"
    # PSI on the reference bins plus a missing bin
    edges = prof.edges
    cum = np.searchsorted(cur, edges, side="right")
    cur_bins = np.diff(np.concatenate([[0], cum, [cur.size]]))
    ref_all = np.append(prof.bin_counts, prof.n_missing)
    cur_all = np.append(cur_bins, n_missing)
    spread = prof.std if prof.std > 0 else 1.0
    if not prof.std > 0:
        details["spread"] = "1 (constant reference)"
    effects: dict[str, float | None] = {
        "wasserstein": None if wass is None else wass / spread,
        "psi": psi(ref_all, cur_all),
    }
    qs = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]
    details.update(
        bins={
            "edges": edges.tolist(),
            "ref": (ref_all / max(prof.n_rows, 1)).tolist(),
            "cur": (cur_all / n).tolist(),
        },
        quantiles={"q": qs, "ref": _quantiles(prof.sample, qs), "cur": _quantiles(cur, qs)},
    )
    return dataclasses.replace(
        base, test=test, statistic=d, p_value=p, effects=effects, details=details
    )


def _quantiles(sorted_values: np.ndarray, qs: list[float]) -> list[float] | None:
    if not sorted_values.size:
        return None
    idx = np.minimum((np.asarray(qs) * sorted_values.size).astype(int), sorted_values.size - 1)
    return sorted_values[idx].tolist()


def _categorical_column(
    prof: CategoricalProfile, counts: dict[str, int], n_missing: int, n: int, cfg: DriftConfig
) -> ColumnDrift:
    base = ColumnDrift(
        column=prof.name,
        kind="categorical",
        role=prof.role,
        status="no_drift",
        test="chi2_homogeneity",
        n_ref=prof.n_rows,
        n_cur=n,
        missing_ref=prof.n_missing / prof.n_rows if prof.n_rows else 0.0,
        missing_cur=n_missing / n if n else 0.0,
    )
    if n < cfg.min_rows:
        return dataclasses.replace(base, status="not_enough_data")
    known = set(prof.categories)
    labels = list(prof.categories)
    ref = prof.counts.tolist()
    cur = [counts.get(c, 0) for c in prof.categories]
    flags = [False] * len(labels)
    outside = {k: v for k, v in counts.items() if k not in known}
    unseen = 0
    if prof.other:  # capped reference: values outside the kept categories may be rare ones
        labels.append(OTHER)
        ref.append(prof.other)
        cur.append(sum(outside.values()))
        flags.append(False)
    else:
        for key, count in sorted(outside.items(), key=lambda kv: (-kv[1], kv[0])):
            labels.append(key)
            ref.append(0)
            cur.append(count)
            flags.append(True)
            unseen += count
    if prof.n_missing or n_missing:
        labels.append(MISSING)
        ref.append(prof.n_missing)
        cur.append(n_missing)
        flags.append(False)
    ref_arr = np.asarray(ref, dtype=np.float64)
    cur_arr = np.asarray(cur, dtype=np.float64)
    stat, p, dof = chi2_homogeneity(ref_arr, cur_arr)
    effects: dict[str, float | None] = {
        "js": js_distance(ref_arr, cur_arr),
        "psi": psi(ref_arr, cur_arr),
    }
    r_share, c_share = ref_arr / ref_arr.sum(), cur_arr / cur_arr.sum()
    order = np.argsort(-np.abs(c_share - r_share), kind="stable")[:MAX_REPORTED_CATEGORIES]
    table = [
        {
            "category": labels[i],
            "ref": float(r_share[i]),
            "cur": float(c_share[i]),
            "unseen": flags[i],
        }
        for i in order
    ]
    details = {
        "dof": dof,
        "categories": len(labels),
        "unseen_categories": int(sum(flags)),
        "capped_reference": bool(prof.other),
        "top": table,
    }
    return dataclasses.replace(
        base,
        statistic=stat,
        p_value=p,
        effects=effects,
        unseen_cur=unseen / n if n else 0.0,
        details=details,
    )


def _decide(columns: list[ColumnDrift], cfg: DriftConfig, n_ref: int, n_cur: int) -> DriftResult:
    """Benjamini-Hochberg across the columns with a p-value, then the effect-size gate."""
    tested = [i for i, c in enumerate(columns) if c.p_value is not None]
    adjusted = benjamini_hochberg([columns[i].p_value for i in tested])
    out = list(columns)
    for i, q in zip(tested, adjusted, strict=True):
        c = columns[i]
        mins = cfg.minimums(c.kind)
        exceeded = [k for k, v in c.effects.items() if v is not None and k in mins and v >= mins[k]]
        significant = bool(q <= cfg.fdr)
        status = "drift" if significant and exceeded else "no_drift"
        out[i] = dataclasses.replace(
            c, p_adjusted=float(q), significant=significant, exceeded=exceeded, status=status
        )
    if n_cur < cfg.min_rows:
        return DriftResult(
            "not_enough_data",
            n_ref,
            n_cur,
            out,
            cfg,
            reason=f"{n_cur:,} current rows, fewer than min_rows {cfg.min_rows:,}",
        )
    if not tested:
        return DriftResult(
            "not_enough_data", n_ref, n_cur, out, cfg, reason="no column has values to test"
        )
    drifted = [c for c in out if c.drifted]
    return DriftResult("drift" if drifted else "no_drift", n_ref, n_cur, out, cfg)


# --------------------------------------------------------------------------------------------
# Performance drift
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PerformanceDrift:
    """The window's metric vs the champion's holdout metric.

    `status` is "degraded" when the whole bootstrap interval of the window's metric is worse
    than `reference` by more than `max_drop` (metric units), "ok" otherwise, and
    "not_enough_data" below `min_rows` labelled rows or when the metric is undefined there.
    The holdout metric is taken as a fixed number.
    """

    metric: str
    status: str
    reference: float
    current: float | None
    low: float | None
    high: float | None
    level: float
    n: int
    n_boot: int
    max_drop: float
    reason: str

    @property
    def degraded(self) -> bool:
        return self.status == "degraded"

    def to_dict(self) -> dict[str, Any]:
        return jsonable(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> PerformanceDrift:
        return cls(**{f.name: d[f.name] for f in dataclasses.fields(cls)})


def performance_drift(
    y_true: Any,
    output: Any,
    metric: str,
    *,
    reference: float,
    max_drop: float = 0.0,
    level: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
    min_rows: int = 500,
) -> PerformanceDrift:
    """Has the champion's `metric` on a labelled window fallen below its holdout value?

    The interval is a percentile bootstrap of the window's metric (stratified by class for
    classification), with airmlops_core.stats.comparison's vectorised metrics and resampling.

    Args:
        y_true: Labels of the window, encoded as in airmlops_core.stats.comparison (class codes).
        output: The champion's output on those rows (probabilities or predictions).
        metric: A name in comparison.METRIC_FUNCS.
        reference: The champion's holdout value of `metric`.
        max_drop: Tolerated decay in metric units.
        level: Confidence level of the interval.
        n_boot: Bootstrap resamples.
        seed: Seed of the resampling.
        min_rows: Fewer labelled rows: "not_enough_data".
    """

    if not 0.0 < level < 1.0 or n_boot < 1:
        raise ValueError(f"need 0 < level < 1 and n_boot >= 1, got {level} and {n_boot}")
    y, out = cmp._inputs(y_true, output, metric)  # also rejects unknown metrics
    n = len(y)
    lower_better = metric in LOWER_IS_BETTER

    def result(
        status: str, current: float | None, low: float | None, high: float | None, reason: str
    ) -> PerformanceDrift:
        return PerformanceDrift(
            metric=metric,
            status=status,
            reference=float(reference),
            current=current,
            low=low,
            high=high,
            level=level,
            n=n,
            n_boot=n_boot,
            max_drop=max_drop,
            reason=reason,
        )

    if n < min_rows:
        return result(
            "not_enough_data",
            None,
            None,
            None,
            f"{n:,} labelled rows, fewer than min_rows {min_rows:,}",
        )
    current = cmp.METRIC_FUNCS[metric](y, out)
    if not math.isfinite(current):
        return result(
            "not_enough_data",
            None,
            None,
            None,
            f"{metric} is undefined on the window (a single class?)",
        )
    classification = cmp._kind(metric) == "classification"
    order, sizes = cmp._strata(y, classification)
    batch = cmp._BATCHED[metric](y[order], out[order])
    chunk = max(1, cmp._CHUNK_ELEMENTS // n)
    vals = np.concatenate([batch(idx) for idx in cmp._resamples(sizes, n_boot, seed, chunk)])
    vals = vals[np.isfinite(vals)]
    low, high = (float(v) for v in np.percentile(vals, [50.0 * (1 - level), 50.0 * (1 + level)]))
    pct = f"{100 * level:g}% CI"
    detail = (
        f"{metric} {current:.4g} on {n:,} labelled rows ({pct} {low:.4g} to {high:.4g}) "
        f"vs holdout {reference:.4g}"
    )
    if lower_better:
        degraded = low > reference + max_drop
    else:
        degraded = high < reference - max_drop
    if degraded:
        return result(
            "degraded",
            current,
            low,
            high,
            f"{detail}: worse by more than {max_drop:g} with confidence",
        )
    return result("ok", current, low, high, f"{detail}: no decay beyond {max_drop:g} shown")
