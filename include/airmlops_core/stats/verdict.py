"""The drift check's decision rule and its results: DriftConfig, ColumnDrift, DriftResult.

A column drifts only when its p-value survives a Benjamini-Hochberg correction across every
checked column at `DriftConfig.fdr` AND one of its effect sizes reaches the configured minimum;
below `min_rows` current rows the verdict is "not enough data". The data set drifts when any
column does. `decide` applies the rule to the evidence of airmlops_core.stats.drift's check, and
`DriftResult.decide` re-applies it under another configuration.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airmlops_core.jsonsafe import jsonable
from airmlops_core.stats import distribution

__all__ = [
    "BARELY_USED",
    "ColumnDrift",
    "DriftConfig",
    "DriftResult",
    "decide",
    "metric_name",
    "rank_by_importance",
]

BARELY_USED = 0.01
"""A feature whose importance is below this share of the top feature's is barely used."""


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
        return decide(columns, config, self.n_ref, self.n_cur)

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


def rank_by_importance(
    drifted: list[str], importance: Mapping[str, float] | None, *, barely_used: float = BARELY_USED
) -> tuple[list[str], list[str]]:
    """Drifted columns (given largest effect first) in alert order, and those barely used.

    With the model's feature importances: columns without one (the model's output, the label)
    first, then features by importance, largest first, equal importances in effect order; a
    feature below `barely_used` times the top feature's importance is barely used. Without
    importances: the order given, none barely used.
    """
    if not importance:
        return list(drifted), []
    ranked = sorted(drifted, key=lambda c: (c in importance, -importance.get(c, 0.0)))
    top = max(importance.values())
    barely = [
        c for c in ranked if c in importance and top > 0 and importance[c] < barely_used * top
    ]
    return ranked, barely


def decide(columns: list[ColumnDrift], cfg: DriftConfig, n_ref: int, n_cur: int) -> DriftResult:
    """Benjamini-Hochberg across the columns with a p-value, then the effect-size gate."""
    tested = [i for i, c in enumerate(columns) if c.p_value is not None]
    adjusted = distribution.benjamini_hochberg([columns[i].p_value for i in tested])
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
