"""The shell of the pack's offline HTML reports (data checks, drift): one style, no network."""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

BASE_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:0;
  background:#f4f5f7;color:#1f2328;font-size:15px;line-height:1.45}
main{max-width:1150px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:24px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 10px}
.sub{color:#57606a;margin:0 0 18px}
.verdict{border-radius:8px;padding:16px 20px;color:#fff;font-size:20px;font-weight:600}
.verdict small{display:block;font-size:14px;font-weight:400;opacity:.95;margin-top:4px}
.facts{display:flex;gap:12px;flex-wrap:wrap;margin:16px 0}
.fact{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 16px;min-width:120px}
.fact b{display:block;font-size:22px} .fact span{color:#57606a;font-size:13px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de}
tr:nth-child(even) td{background:#f8f9fa}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code{font-family:ui-monospace,"SFMono-Regular",Menlo,Consolas,monospace;font-size:13px;
  background:#eff1f3;border-radius:4px;padding:1px 4px;word-break:break-word}
.summary{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:12px 16px}
.none{color:#57606a;font-style:italic}
footer{color:#57606a;font-size:12px;margin-top:28px}
"""


def esc(value: Any) -> str:
    """`value` as HTML text (quotes escaped too)."""
    return html.escape(str(value), quote=True)


def num(x: float | None, *, dash: str = "&ndash;") -> str:
    """A number in 4 significant digits (3 in scientific notation); `dash` for None/NaN/inf."""
    if x is None or not math.isfinite(x):
        return dash
    return f"{x:.3g}" if x == 0 or abs(x) >= 1000 or abs(x) < 1e-3 else f"{x:.4g}"


def group_table(
    feature: str,
    by_group: Mapping[str, Mapping[str, float | None]],
    gaps: Mapping[str, float | None],
) -> str:
    """One sensitive feature's groups as a table: rows and each metric per group, then the gap
    of each metric (max - min over groups; see airmlops_core.stats.fairness.GroupReport)."""
    metrics = [m for m in next(iter(by_group.values()), {}) if m != "count"]
    head = (
        f"<tr><th>{esc(feature)}</th><th>rows</th>"
        + "".join(f"<th>{esc(m)}</th>" for m in metrics)
        + "</tr>"
    )
    rows = [
        f'<tr><td>{esc(g)}</td><td class="num">{int(v.get("count") or 0):,}</td>'
        + "".join(f'<td class="num">{num(v.get(m))}</td>' for m in metrics)
        + "</tr>"
        for g, v in by_group.items()
    ]
    gap_row = (
        "<tr><td><b>gap</b></td><td></td>"
        + "".join(f'<td class="num"><b>{num(gaps.get(m))}</b></td>' for m in metrics)
        + "</tr>"
    )
    return f"<table>{head}{''.join(rows)}{gap_row}</table>"


def page(title: str, body: str, *, css: str = "") -> str:
    """A self-contained HTML page: `title` as <title> and <h1>, then `body`, in one <main>."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{BASE_CSS}{css}</style>
</head>
<body>
<main>
<h1>{esc(title)}</h1>
{body}
</main>
</body>
</html>
"""
