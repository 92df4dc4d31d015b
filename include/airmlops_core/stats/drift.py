"""Drift of features, predictions and labels: the current window checked column by column
against the champion's reference profile (airmlops_core.stats.profile).

Per column (all exact w.r.t. what the profile stores; the statistics are
airmlops_core.stats.distribution's, each equal to scipy's):

- numeric: two-sample Kolmogorov-Smirnov test of the present values; effect sizes: the
  Wasserstein-1 distance divided by the reference standard deviation (population std of the
  full reference's present values) and the PSI on the reference's quantile bins plus a missing
  bin. When either side holds missing values, the missing share is tested too (2 x 2
  chi-square test of homogeneity) and the column's p-value is the Bonferroni combination
  `min(1, 2 * min(p_ks, p_missing))`.
- categorical: chi-square test of homogeneity on the 2 x K table of reference and current
  counts, NOT a goodness of fit test that treats the reference shares as exact (that form
  multiplies the statistic by about 1 + n_current / n_reference under no drift and flags
  undrifted columns on large windows); effect sizes: Jensen-Shannon distance (base 2, in
  [0, 1]) and PSI. Categories unseen in the reference and missing values are columns of the
  table, not dropped.

The decision rule (Benjamini-Hochberg across the checked columns, then effect-size minimums) is
airmlops_core.stats.verdict's.

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
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from airmlops_core.stats import distribution
from airmlops_core.stats.columns import category_counts, numeric_values, thread_map, worker_count
from airmlops_core.stats.profile import CategoricalProfile, NumericProfile, ReferenceProfile
from airmlops_core.stats.verdict import ColumnDrift, DriftConfig, DriftResult, decide

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MISSING", "OTHER", "check_drift"]

MAX_REPORTED_CATEGORIES = 20
MISSING = "(missing)"
"""The category label of missing values in a categorical column's evidence."""
OTHER = "(other)"
"""The category label of the values a capped reference lumped together."""


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
            numeric_values(current[name].iloc[:0], name, "current data")

    def one(name: str) -> ColumnDrift:
        prof = reference.columns[name]
        if isinstance(prof, NumericProfile):
            return _numeric_column(prof, numeric_values(current[name], name, "current data"), cfg)
        counts, n_missing = category_counts(current[name])
        return _categorical_column(prof, counts, n_missing, n, cfg)

    # numeric columns first: the longest tasks start early
    order = sorted(names, key=lambda c: not isinstance(reference.columns[c], NumericProfile))
    done = dict(zip(order, thread_map(one, order, worker_count(workers)), strict=True))
    return decide([done[c] for c in names], cfg, reference.n_rows, n)


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
        d, p_ks, wass = distribution.ks_wasserstein(prof.sample, cur)
        details.update(
            ks_statistic=d,
            ks_p_value=p_ks,
            wasserstein_raw=wass,
            cur_mean=float(cur.mean()),
            cur_std=float(cur.std()),
        )
    p_miss = None
    if prof.n_missing or n_missing:
        stat_m, p_miss, _ = distribution.chi2_homogeneity(
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
        "psi": distribution.psi(ref_all, cur_all),
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
    stat, p, dof = distribution.chi2_homogeneity(ref_arr, cur_arr)
    effects: dict[str, float | None] = {
        "js": distribution.js_distance(ref_arr, cur_arr),
        "psi": distribution.psi(ref_arr, cur_arr),
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
