"""The drift report: one self-contained HTML page (inline CSS, no JavaScript, no network) and
PNG plots of the most drifted columns, from a `verdict.DriftResult`."""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from airmlops_core import htmlpage
from airmlops_core.htmlpage import esc
from airmlops_core.stats.drift import MISSING
from airmlops_core.stats.fairness import GroupReport
from airmlops_core.stats.performance import PerformanceDrift
from airmlops_core.stats.profile import NumericProfile, ReferenceProfile
from airmlops_core.stats.verdict import ColumnDrift, DriftResult

if TYPE_CHECKING:
    import pandas as pd

    from airmlops_core.stats.fairness import GroupReport

__all__ = ["plots", "render_report"]

RED, GREEN, AMBER = "#cf222e", "#1a7f37", "#9a6700"
REF_COLOUR, CUR_COLOUR = "#8c959f", "#0969da"

_CSS = """
h3{font-size:16px;margin:0 0 6px}
.drift{background:#cf222e} .no_drift{background:#1a7f37} .not_enough_data{background:#9a6700}
th,td{text-align:left;vertical-align:top;padding:7px 9px;border-bottom:1px solid #d8dee4}
th{background:#eaeef2;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
td code{white-space:nowrap}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;
  color:#fff;white-space:nowrap}
.badge.drift{background:#cf222e} .badge.no_drift{background:#1a7f37}
.badge.not_enough_data{background:#9a6700} .badge.unseen{background:#8250df}
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:14px}
.card{background:#fff;border:1px solid #d0d7de;border-left:6px solid #cf222e;border-radius:8px;
  padding:12px 14px}
.card p{margin:2px 0 8px;color:#57606a;font-size:13px}
.bars{width:100%;border:0;background:none} .bars td{border:0;padding:1px 4px;background:none}
.bars tr:nth-child(even) td{background:none}
.bars .lab{font-size:12px;color:#57606a;white-space:nowrap;max-width:130px;overflow:hidden;
  text-overflow:ellipsis} .bars td.num{max-width:none;overflow:visible}
.bar{height:7px;border-radius:2px;margin:1px 0}
.bar.ref{background:#8c959f} .bar.cur{background:#0969da}
.legend span{display:inline-block;width:10px;height:10px;border-radius:2px;margin:0 4px 0 10px}
img.plot{max-width:100%;background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:6px 0}
table.columns{font-size:13px}
table.columns th,table.columns td{padding:6px 7px}
table.columns th{letter-spacing:0}
table.columns td code,table.columns td.name{white-space:normal;overflow-wrap:anywhere}
table.columns td.split{white-space:normal}
"""

_VERDICTS = {"drift": "DRIFT", "no_drift": "NO DRIFT", "not_enough_data": "NOT ENOUGH DATA"}


_fmt = htmlpage.num


def _p(x: float | None) -> str:
    if x is None:
        return "&ndash;"
    return "&lt;1e-300" if x == 0 else (f"{x:.2e}" if x < 1e-3 else f"{x:.3f}")


def _pct(x: float | None) -> str:
    return "&ndash;" if x is None else f"{100 * x:.1f}%"


def _ordered(result: DriftResult) -> list[ColumnDrift]:
    rank = {"drift": 0, "no_drift": 1, "not_enough_data": 2}
    return sorted(result.columns, key=lambda c: (rank.get(c.status, 3), -c.strength()))


def _effects(col: ColumnDrift) -> str:
    parts = []
    for name, value in col.effects.items():
        text = f"{esc(name)} {_fmt(value)}"
        parts.append(f"<b>{text}</b>" if name in col.exceeded else text)
    return ", ".join(parts) or "&ndash;"


def _bars(col: ColumnDrift, limit: int = 12) -> str:
    """Reference vs current shares as pairs of CSS bars (numeric bins or categories)."""
    rows: list[tuple[str, float, float, bool]] = []
    d = col.details
    if col.kind == "numeric" and "bins" in d:
        edges = d["bins"]["edges"]
        ref, cur = d["bins"]["ref"], d["bins"]["cur"]
        labels = [f"&le; {_fmt(edges[0])}" if edges else "all"]
        labels += [
            f"{_fmt(lo)} &ndash; {_fmt(hi)}" for lo, hi in zip(edges, edges[1:], strict=False)
        ]
        if edges:
            labels.append(f"&gt; {_fmt(edges[-1])}")
        labels.append(esc(MISSING))
        rows = [(lab, r, c, False) for lab, r, c in zip(labels, ref, cur, strict=True) if r or c]
    elif col.kind == "categorical" and "top" in d:
        rows = [
            (esc(t["category"]), t["ref"], t["cur"], bool(t["unseen"])) for t in d["top"][:limit]
        ]
    if not rows:
        return ""
    top = max(max(r, c) for _, r, c, _ in rows) or 1.0
    body = []
    for lab, r, c, unseen in rows:
        badge = ' <span class="badge unseen">unseen</span>' if unseen else ""
        body.append(
            f'<tr><td class="lab" title="{lab}">{lab}</td><td style="width:60%">'
            f'<div class="bar ref" style="width:{100 * r / top:.1f}%"></div>'
            f'<div class="bar cur" style="width:{100 * c / top:.1f}%"></div></td>'
            f'<td class="num lab">{_pct(r)} &rarr; {_pct(c)}{badge}</td></tr>'
        )
    return f'<table class="bars">{"".join(body)}</table>'


def _card(col: ColumnDrift) -> str:
    unseen = f", unseen {_pct(col.unseen_cur)}" if col.unseen_cur else ""
    return (
        f'<div class="card"><h3>{esc(col.column)}</h3>'
        f"<p>{esc(col.role)} &middot; {esc(col.kind)} &middot; {esc(col.test)} "
        f"p={_p(col.p_value)}, BH q={_p(col.p_adjusted)}<br>{_effects(col)}; missing "
        f"{_pct(col.missing_ref)} &rarr; {_pct(col.missing_cur)}{unseen}</p>"
        f"{_bars(col)}</div>"
    )


def _table(result: DriftResult) -> str:
    head = (
        "<tr><th>column</th><th>role</th><th>kind</th><th>test</th><th>n ref / cur</th>"
        "<th>statistic</th><th>p</th><th>BH q</th><th>effect sizes</th>"
        "<th>missing ref &rarr; cur</th><th>unseen</th><th>status</th></tr>"
    )
    rows = []
    for c in _ordered(result):
        rows.append(
            f"<tr><td><code>{esc(c.column)}</code></td><td>{esc(c.role)}</td>"
            f'<td>{esc(c.kind)}</td><td class="name">{esc(c.test)}</td>'
            f'<td class="num split">{c.n_ref:,} / {c.n_cur:,}</td>'
            f'<td class="num">{_fmt(c.statistic)}</td><td class="num">{_p(c.p_value)}</td>'
            f'<td class="num">{_p(c.p_adjusted)}</td><td>{_effects(c)}</td>'
            f'<td class="num split">{_pct(c.missing_ref)} &rarr; {_pct(c.missing_cur)}</td>'
            f'<td class="num">{_pct(c.unseen_cur)}</td>'
            f'<td><span class="badge {esc(c.status)}">{esc(c.status.replace("_", " "))}'
            f"</span></td></tr>"
        )
    return f'<table class="columns">{head}{"".join(rows)}</table>'


def _performance(perf: PerformanceDrift) -> str:
    status = {"degraded": "drift", "ok": "no_drift"}.get(perf.status, "not_enough_data")
    return (
        f'<p class="summary"><span class="badge {status}">{esc(perf.status)}</span> '
        f"{esc(perf.reason)}</p>"
    )


def _bias(reports: Sequence[GroupReport]) -> str:
    """One table per sensitive feature: each group's metrics, then the gaps."""
    return "".join(htmlpage.group_table(r.feature, r.by_group, r.gaps) for r in reports)


def _images(images: Sequence[str | Path]) -> str:
    out = []
    for path in images:
        data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
        out.append(
            f'<img class="plot" alt="{esc(Path(path).stem)}" src="data:image/png;base64,{data}">'
        )
    return "".join(out)


def render_report(
    result: DriftResult,
    *,
    title: str,
    subtitle: str = "",
    performance: PerformanceDrift | None = None,
    images: Sequence[str | Path] = (),
    bias: Sequence[GroupReport] = (),
) -> str:
    """One self-contained HTML page: verdict, drifted columns with their distributions, every
    column's evidence, optional performance drift and PNGs (embedded as data: URIs).

    Args:
        result: The check's result.
        title: Page title (e.g. "Drift: churn v7, 2024-06-01 window").
        subtitle: One line under the title (e.g. model version and window).
        performance: Performance drift on the labelled window, if any.
        images: PNG files to embed (e.g. from `plots`); the page still needs no other file.
        bias: Group metrics of the sensitive features on the labelled window.
    """
    cfg = result.config
    drifted = [result.column(n) for n in result.drifted]
    checked = sum(c.p_value is not None for c in result.columns)
    if result.status == "drift":
        names = ", ".join(c.column for c in drifted)
        verdict = f"DRIFT in {len(drifted)} column(s): {names}"
    else:
        verdict = _VERDICTS.get(result.status, result.status)
    small = esc(result.summary())
    facts = [
        (f"{result.n_cur:,}", "current rows"),
        (f"{result.n_ref:,}", "reference rows"),
        (str(checked), "columns checked"),
        (str(len(drifted)), "drifted"),
        (f"{cfg.fdr:g}", "false discovery rate"),
    ]
    facts_html = "".join(
        f'<div class="fact"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in facts
    )
    cards = "".join(_card(c) for c in drifted) or '<p class="none">No column drifted.</p>'
    perf = f"<h2>Performance</h2>{_performance(performance)}" if performance else ""
    imgs = f"<h2>Plots</h2>{_images(images)}" if images else ""
    groups = f"<h2>Bias (labelled rows)</h2>{_bias(bias)}" if bias else ""
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    legend = (
        f'<p class="legend">bars:<span style="background:{REF_COLOUR}"></span>reference'
        f'<span style="background:{CUR_COLOUR}"></span>current</p>'
    )
    body = f"""{sub}
<div class="verdict {esc(result.status)}">{esc(verdict)}<small>{small}</small></div>
<div class="facts">{facts_html}</div>
<h2>Drifted columns</h2>
{legend if drifted else ""}
<div class="cards">{cards}</div>
{perf}
{groups}
<h2>All columns</h2>
{_table(result)}
{imgs}
<footer>Drift check of the airmlops pack. A column drifts when its p-value survives a
Benjamini-Hochberg correction across the {checked} checked columns at FDR {cfg.fdr:g} AND an
effect size reaches its minimum (numeric: Wasserstein distance / reference std &ge;
{cfg.min_wasserstein:g} or PSI &ge; {cfg.min_psi:g}; categorical: Jensen-Shannon distance
(base 2) &ge; {cfg.min_js:g} or PSI &ge; {cfg.min_psi:g}); fewer than {cfg.min_rows:,} current
rows: not enough data. Numeric: two-sample Kolmogorov-Smirnov test against the profile's
reference sample (n ref); categorical: chi-square test of homogeneity, unseen categories and
missing values counted. This page is self-contained and needs no network.</footer>
"""
    return htmlpage.page(title, body, css=_CSS)


# --------------------------------------------------------------------------------------------
# PNG plots


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:60] or "column"


def plots(
    result: DriftResult,
    reference: ReferenceProfile,
    current: pd.DataFrame,
    out_dir: str | Path,
    *,
    top: int = 6,
) -> list[Path]:
    """Write PNGs: an overview of every column's effect (relative to its minimum) and, for the
    `top` most drifted columns (drifted first, then the largest effects), the reference and
    current distributions.

    Returns:
        The paths written, overview first.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [_overview(result, out / "drift_overview.png", plt)]
    for i, col in enumerate(c for c in _ordered(result)[:top] if c.p_value is not None):
        path = out / f"drift_{i + 1:02d}_{_safe(col.column)}.png"
        prof = reference.columns.get(col.column)
        fig = (
            _numeric_figure(col, prof, current[col.column], plt)
            if isinstance(prof, NumericProfile) and col.column in current.columns
            else _categorical_figure(col, plt)
        )
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def _relative(col: ColumnDrift, result: DriftResult) -> float:
    mins = result.config.minimums(col.kind)
    vals = [v / mins[k] for k, v in col.effects.items() if v is not None and mins.get(k, 0) > 0]
    return max(vals, default=0.0)


def _overview(result: DriftResult, path: Path, plt: Any) -> Path:
    cols = [c for c in _ordered(result) if c.p_value is not None][::-1]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.28 * len(cols) + 1)))
    vals = [min(_relative(c, result), 10.0) for c in cols]
    colours = [RED if c.drifted else (AMBER if c.significant else GREEN) for c in cols]
    ax.barh([c.column for c in cols], vals, color=colours)
    ax.axvline(1.0, color="#1f2328", lw=1, ls="--")
    ax.set_xlabel(
        "largest effect / its minimum (capped at 10); red: drift, amber: "
        "significant but small, green: no drift",
        fontsize=8,
    )
    ax.set_title(f"Drift: {result.summary()[:90]}", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _numeric_figure(col: ColumnDrift, prof: NumericProfile, series: pd.Series, plt: Any) -> Any:
    values = series.to_numpy(dtype=np.float64, na_value=np.nan)
    cur = np.sort(values[np.isfinite(values)])
    ref = prof.sample
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    both = np.concatenate([ref, cur]) if cur.size else ref
    if both.size:
        lo, hi = np.quantile(both, [0.005, 0.995])
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        bins = np.linspace(lo, hi, 50)
        ax1.hist(ref, bins=bins, density=True, alpha=0.55, color=REF_COLOUR, label="reference")
        if cur.size:
            ax1.hist(cur, bins=bins, density=True, alpha=0.55, color=CUR_COLOUR, label="current")
        ax1.legend(fontsize=8)
        for arr, colour, label in ((ref, REF_COLOUR, "reference"), (cur, CUR_COLOUR, "current")):
            if arr.size:
                ax2.step(
                    arr,
                    np.arange(1, arr.size + 1) / arr.size,
                    where="post",
                    color=colour,
                    label=label,
                )
        ax2.set_xlim(lo, hi)
    ax1.set_title("density (0.5-99.5 percentile range)", fontsize=9)
    eff = ", ".join(f"{k} {v:.3g}" for k, v in col.effects.items() if v is not None)
    ax2.set_title(f"ECDF: KS D={col.statistic or 0:.3g}, {eff}", fontsize=9)
    fig.suptitle(
        f"{col.column}: {col.status.replace('_', ' ')} "
        f"(missing {100 * col.missing_ref:.1f}% -> {100 * col.missing_cur:.1f}%)",
        fontsize=11,
        color=RED if col.drifted else "#1f2328",
    )
    fig.tight_layout()
    return fig


def _categorical_figure(col: ColumnDrift, plt: Any) -> Any:
    top = col.details.get("top", [])[:15][::-1]
    fig, ax = plt.subplots(figsize=(8, max(2.5, 0.35 * len(top) + 1.2)))
    y = np.arange(len(top))
    labels = [t["category"] + (" (unseen)" if t["unseen"] else "") for t in top]
    ax.barh(y + 0.2, [t["ref"] for t in top], height=0.4, color=REF_COLOUR, label="reference")
    ax.barh(y - 0.2, [t["cur"] for t in top], height=0.4, color=CUR_COLOUR, label="current")
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlabel("share of rows")
    ax.legend(fontsize=8)
    eff = ", ".join(f"{k} {v:.3g}" for k, v in col.effects.items() if v is not None)
    ax.set_title(
        f"{col.column}: {col.status.replace('_', ' ')} ({eff})",
        fontsize=10,
        color=RED if col.drifted else "#1f2328",
    )
    fig.tight_layout()
    return fig
