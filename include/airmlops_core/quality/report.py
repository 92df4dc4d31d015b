"""A data check as an offline HTML page, and as evidence on the active MLflow run.

The page shell (base style, escaping) is `airmlops_core.htmlpage`.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from airmlops_core import htmlpage
from airmlops_core.htmlpage import esc
from airmlops_core.quality.results import SAMPLE_SIZE, CheckResult, Failure

_CSS = """
.pass{background:#1a7f37} .fail{background:#cf222e} .warnonly{background:#9a6700}
th,td{text-align:left;vertical-align:top;padding:8px 10px;border-bottom:1px solid #d8dee4}
th{background:#eaeef2;font-size:13px;text-transform:uppercase;letter-spacing:.03em}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;
  color:#fff} .badge.block{background:#cf222e} .badge.warn{background:#9a6700}
"""


def _values_html(values: Any) -> str:
    if values is None or values == []:
        return ""
    if not isinstance(values, list):
        values = [values]
    shown = values[:SAMPLE_SIZE]
    return " ".join(f"<code>{esc(json.dumps(v, default=str))}</code>" for v in shown)


def _failure_rows(failures: list[Failure]) -> str:
    rows = []
    for f in failures:
        pct = "" if f.unexpected_percent is None else f"{f.unexpected_percent:.2f}%"
        count = "" if f.unexpected_count is None else f"{f.unexpected_count:,}"
        rows.append(
            "<tr>"
            f'<td><span class="badge {esc(f.severity)}">{esc(f.severity)}</span></td>'
            f"<td><b>{esc(f.rule)}</b><br><code>{esc(f.expectation)}</code></td>"
            f"<td>{esc(f.column or '(table)')}</td>"
            f"<td>{esc(f.expected)}</td>"
            f'<td class="num">{count}</td><td class="num">{pct}</td>'
            f"<td>{_values_html(f.sample_values)}</td>"
            f"<td>{_values_html(f.observed) if f.unexpected_count is None else ''}</td>"
            "</tr>"
        )
    return "\n".join(rows)


def _table(failures: list[Failure], empty: str) -> str:
    if not failures:
        return f'<p class="none">{esc(empty)}</p>'
    head = (
        "<tr><th>Severity</th><th>Rule / expectation</th><th>Column</th><th>Expected</th>"
        "<th>Unexpected</th><th>% rows</th><th>Sample values</th><th>Observed</th></tr>"
    )
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n{_failure_rows(failures)}\n</tbody>\n</table>"


def render_html(result: CheckResult, *, title: str) -> str:
    """One self-contained HTML page (inline CSS, no external resources, no JavaScript).

    Shows the verdict, the key numbers, the summary paragraph and a table of every failure and
    warning with counts, percentages, sample values and observations.
    """
    if result.success and result.warnings:
        cls, verdict = "warnonly", "PASSED with warnings"
    elif result.success:
        cls, verdict = "pass", "PASSED"
    else:
        cls, verdict = "fail", "FAILED: data rejected"
    variant = "scoring batch (target not checked)" if result.batch else "training data"
    facts = [
        (f"{result.rows:,}", "rows"),
        (str(result.evaluated), "expectations"),
        (str(len(result.failures)), "blocking failures"),
        (str(len(result.warnings)), "warnings"),
    ]
    facts_html = "".join(
        f'<div class="fact"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in facts
    )
    source = f" &middot; source <code>{esc(result.source)}</code>" if result.source else ""
    body = f"""<p class="sub">Suite <b>{esc(result.suite)}</b> &middot; {esc(variant)}{source}</p>
<div class="verdict {cls}">{esc(verdict)}<small>{len(result.failures)} blocking failure(s),
{len(result.warnings)} warning(s) in {result.evaluated} expectations on {result.rows:,} rows</small>
</div>
<div class="facts">{facts_html}</div>
<h2>Blocking failures</h2>
{_table(result.failures, "No blocking failures.")}
<h2>Warnings</h2>
{_table(result.warnings, "No warnings.")}
<h2>Summary</h2>
<p class="summary">{esc(result.summary())}</p>
<footer>Data gate of the airmlops pack, checked with Great Expectations.
This page is self-contained and needs no network.</footer>
"""
    return htmlpage.page(title, body, css=_CSS)


def log_check(result: CheckResult, name: str, *, tag_prefix: str) -> None:
    """Log a data-check result to the active MLflow run as JSON and an offline HTML page.

    Args:
        result: the check.
        name: the artifact name under data_checks/ (e.g. training_data, holdout).
        tag_prefix: the pack's tag prefix; the run gets `<prefix>data_check.<name>`: pass|fail.
    """
    import mlflow

    mlflow.log_dict(result.to_dict(), f"data_checks/{name}.json")
    with tempfile.TemporaryDirectory() as tmp:
        page = Path(tmp) / f"{name}.html"
        page.write_text(render_html(result, title=f"{name}: data check"))
        mlflow.log_artifact(str(page), artifact_path="data_checks")
    mlflow.set_tag(f"{tag_prefix}data_check.{name}", "pass" if result.success else "fail")
