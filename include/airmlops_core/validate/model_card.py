"""A model version's card, as Markdown and as one offline HTML page: pure rendering, no MLflow.

`CardFacts` holds what the card says (gathered from the spec and MLflow by
`airmlops_core.validate.card_mlflow`); `to_markdown` and `to_html` render it. Every text from
outside (spec fields, column and group names, reasons) is escaped for its format.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from airmlops_core import htmlpage
from airmlops_core.htmlpage import esc

NOT_COMPUTED = "not computed"
DASH = "\u2013"


@dataclass(frozen=True)
class Dataset:
    """One input of the training run: train or holdout file, its rows and sha256."""

    context: str
    rows: int | None
    sha256: str
    source: str


@dataclass(frozen=True)
class DriftRun:
    """One drift check logged for the model (airmlops.purpose = drift)."""

    version: str
    status: str
    started: str
    rows: float | None
    n_drifted: float | None
    url: str


@dataclass(frozen=True)
class Importance:
    """Permutation importance of the training run (`evaluation/permutation_importance.json`)."""

    metric: str
    n_repeats: int
    features: list[tuple[str, float, float]]  # (feature, importance_mean, importance_std)


@dataclass(frozen=True)
class CardFacts:
    """Everything a card shows. `evidence` is the gate's `gate/evidence.json` (None: missing);
    `importance` None means not computed, with `importance_note` saying why."""

    model: str
    version: str
    outcome: str  # "promoted" or "rejected"
    reasons: list[str]
    owner: str
    description: str = ""
    intended_use: str | None = None
    limitations: list[str] = field(default_factory=list)
    approved_by: str | None = None
    champion_before: str | None = None
    task: str = ""
    target: str = ""
    features: list[str] = field(default_factory=list)
    sensitive_features: list[str] = field(default_factory=list)
    segments: list[str] = field(default_factory=list)
    estimator: str = ""
    sources: list[str] = field(default_factory=list)
    window: str | None = None
    retrain_reason: str | None = None
    datasets: list[Dataset] = field(default_factory=list)
    data_sha256: str | None = None
    spec_sha: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    floors: dict[str, float] = field(default_factory=dict)
    evidence: dict[str, Any] | None = None
    importance: Importance | None = None
    importance_note: str = NOT_COMPUTED
    drift_runs: list[DriftRun] = field(default_factory=list)
    links: dict[str, str] = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return self.outcome == "promoted"

    @property
    def headline(self) -> str:
        """One line: what happened to this version."""
        if self.promoted:
            before = f" (replacing version {self.champion_before})" if self.champion_before else ""
            by = f", approved by {self.approved_by}" if self.approved_by else ""
            return f"PROMOTED to champion{before}{by}"
        stays = f": version {self.champion_before} stays champion" if self.champion_before else ""
        return f"REJECTED{stays}"


def read_importance(obj: Any) -> Importance:
    """The permutation importance artifact, shape-checked, most important feature first.

    Raises:
        ValueError: naming the first field that does not match
            {"metric": str, "n_repeats": int, "features": [{"feature", "importance_mean",
            "importance_std"}]}.
    """
    if not isinstance(obj, dict):
        raise ValueError("not a JSON object")
    if not isinstance(obj.get("metric"), str):
        raise ValueError("metric: not a string")
    if not isinstance(obj.get("n_repeats"), int) or isinstance(obj.get("n_repeats"), bool):
        raise ValueError("n_repeats: not an integer")
    rows = obj.get("features")
    if not isinstance(rows, list):
        raise ValueError("features: not a list")
    out = []
    for i, row in enumerate(rows):
        ok = isinstance(row, dict) and isinstance(row.get("feature"), str)
        nums = [row.get(k) for k in ("importance_mean", "importance_std")] if ok else []
        if not ok or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in nums):
            raise ValueError(f"features[{i}]: needs feature, importance_mean, importance_std")
        out.append((row["feature"], float(nums[0]), float(nums[1])))
    out.sort(key=lambda r: -r[1])
    return Importance(metric=obj["metric"], n_repeats=obj["n_repeats"], features=out)


def auto_limitations(facts: CardFacts) -> list[str]:
    """Limits the evidence itself shows: checks that did not run, groups too small to judge."""
    out = []
    ev = facts.evidence or {}
    holdout = next((d.rows for d in facts.datasets if d.context == "holdout"), None)
    if holdout:
        out.append(f"Metrics come from one holdout of {holdout:,} rows from the training window.")
    if not facts.sensitive_features:
        out.append("No sensitive features are declared: fairness was not checked.")
    if not facts.segments:
        out.append("No promotion segments are declared: floors were checked overall only.")
    if ev.get("comparison") is None:
        out.append("No champion to compare with: no paired confidence interval.")
    fair = ev.get("fairness") or {}
    for report in (fair.get("reports") or {}).get("challenger") or []:
        small = report.get("small_groups") or []
        if small:
            out.append(
                f"{report.get('feature')}: groups {', '.join(map(str, small))} have fewer than "
                f"{report.get('min_group_size')} rows and are in no gap."
            )
    return out


# --------------------------------------------------------------------------------------------
# Markdown

_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|#!~{}])")


def _md(text: Any) -> str:
    """Prose for Markdown: one line, Markdown and HTML syntax escaped."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def _code(text: Any) -> str:
    """A name as an inline code span (safe in a table cell)."""
    s = " ".join(str(text).split()).replace("|", "\\|")
    ticks = "`" * (max((len(r) for r in re.findall(r"`+", s)), default=0) + 1)
    pad = " " if s.startswith("`") or s.endswith("`") else ""
    return f"{ticks}{pad}{s}{pad}{ticks}"


def _n(x: float | None) -> str:
    return htmlpage.num(x, dash=DASH)


def _count(x: float | None) -> str:
    return DASH if x is None or x != x else f"{int(x):,}"


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return lines + ["| " + " | ".join(r) + " |" for r in rows]


def _metric_rows(facts: CardFacts) -> list[tuple[str, float, float | None, dict[str, Any] | None]]:
    """(metric, challenger value, floor, comparison interval when it is the gate metric)."""
    iv = ((facts.evidence or {}).get("comparison") or {}).get("interval")
    return [
        (m, v, facts.floors.get(m), iv if iv and iv.get("metric") == m else None)
        for m, v in sorted(facts.metrics.items())
    ]


def _ci(iv: Mapping[str, Any] | None) -> tuple[str, str, str]:
    if not iv:
        return DASH, DASH, DASH
    level = f"{100 * iv['level']:g}% CI" if iv.get("level") else "CI"
    return (
        _n(iv.get("champion")),
        _n(iv.get("diff")),
        f"{_n(iv['low'])} to {_n(iv['high'])} ({level})",
    )


def to_markdown(facts: CardFacts) -> str:
    """The card as Markdown (GitHub flavour)."""
    ev = facts.evidence or {}
    out = [f"# Model card: {_md(facts.model)} version {_md(facts.version)}", ""]
    out += [f"**Decision: {_md(facts.headline)}**", ""]
    out += ["## Intended use", ""]
    out.append(
        f"- Intended use: {_md(facts.intended_use or 'not stated (spec card.intended_use)')}"
    )
    out.append(f"- Owner: {_md(facts.owner)}")
    if facts.description:
        out.append(f"- Description: {_md(facts.description)}")
    out.append(f"- Task: {_md(facts.task)}; target {_code(facts.target)}")
    out.append(f"- Estimator: {_code(facts.estimator)}")
    out.append("- Features: " + (", ".join(_code(f) for f in facts.features) or DASH))
    out += ["", "## Decision and evidence", ""]
    out += [f"- {_md(r)}" for r in facts.reasons] or ["- (no reasons recorded)"]
    if not facts.evidence:
        out.append("- The gate's evidence (gate/evidence.json) was not found.")
    out += ["", "## Metrics on the holdout", ""]
    rows = []
    for m, v, floor, iv in _metric_rows(facts):
        champ, diff, ci = _ci(iv)
        rows.append([_code(m), _n(v), _n(floor), champ, diff, ci])
    head = ["metric", "challenger", "floor", "champion", "improvement", "interval"]
    out += _md_table(head, rows) if rows else ["No metrics recorded."]
    out += ["", "## Segments", ""]
    floors = ev.get("floors") or {}
    if facts.segments:
        out.append("Floors checked per segment of: " + ", ".join(_code(s) for s in facts.segments))
        out.append("")
        fails = floors.get("segment_failures") or []
        out += [f"- {_md(f)}" for f in fails] or ["- every segment meets every floor"]
    else:
        out.append("No segments declared (spec promotion.segments).")
    out += ["", "## Fairness", ""]
    out += _md_fairness(ev.get("fairness"))
    out += ["", "## Permutation importance", ""]
    out += _md_importance(facts)
    out += ["", "## Data", ""]
    out += [f"- Source: {_md(s)}" for s in facts.sources]
    out.append(f"- Training window: {_md(facts.window or 'the whole source (no window)')}")
    if facts.retrain_reason:
        out.append(f"- Retrained because: {_md(facts.retrain_reason)}")
    if facts.data_sha256:
        out.append(f"- Extracted window sha256: {_code(facts.data_sha256)}")
    if facts.spec_sha:
        out.append(f"- Spec sha: {_code(facts.spec_sha)}")
    out.append("")
    ds = [
        [
            _md(d.context),
            f"{d.rows:,}" if d.rows is not None else DASH,
            _code(d.sha256),
            _code(d.source),
        ]
        for d in facts.datasets
    ]
    out += _md_table(["input", "rows", "sha256", "source"], ds) if ds else ["No inputs logged."]
    out += ["", "## Known limitations", ""]
    out += [f"- {_md(x)}" for x in [*facts.limitations, *auto_limitations(facts)]] or ["- none"]
    out += ["", "## Drift history", ""]
    out += _md_drift(facts)
    if facts.links:
        out += ["", "## Links", ""]
        out += [f"- {_md(k)}: <{v.replace('>', '%3E')}>" for k, v in facts.links.items()]
    return "\n".join(out) + "\n"


def _md_fairness(fair: Mapping[str, Any] | None) -> list[str]:
    if not fair:
        return ["Not checked: the spec declares no sensitive features."]
    out = [f"- {_md(r)}" for r in fair.get("reasons") or []]
    for report in (fair.get("reports") or {}).get("challenger") or []:
        groups = report.get("by_group") or {}
        metrics = [m for m in next(iter(groups.values()), {}) if m != "count"]
        rows = [
            [_code(g), f"{int(v.get('count') or 0):,}", *(_n(v.get(m)) for m in metrics)]
            for g, v in groups.items()
        ]
        rows.append(["**gap**", "", *(_n((report.get("gaps") or {}).get(m)) for m in metrics)])
        out += ["", f"Challenger by {_code(report.get('feature'))}:", ""]
        out += _md_table(["group", "rows", *(_code(m) for m in metrics)], rows)
    return out


def _md_importance(facts: CardFacts) -> list[str]:
    imp = facts.importance
    if imp is None:
        return [_md(facts.importance_note.capitalize()) + "."]
    head = [
        f"Drop in {_code(imp.metric)} when a feature is shuffled ({imp.n_repeats} repeats):",
        "",
    ]
    rows = [[_code(f), _n(m), _n(s)] for f, m, s in imp.features]
    return head + _md_table(["feature", "importance (mean)", "std"], rows)


def _md_drift(facts: CardFacts) -> list[str]:
    own = [r for r in facts.drift_runs if r.version == facts.version]
    out = [] if own else [f"None yet for version {_md(facts.version)}."]
    if facts.drift_runs:
        out += ["", "Latest drift checks of the model:", ""]
        rows = [
            [_md(r.started), _md(r.version), _md(r.status), _count(r.rows), _count(r.n_drifted)]
            for r in facts.drift_runs
        ]
        out += _md_table(["checked", "version", "status", "rows", "drifted columns"], rows)
    return out


# --------------------------------------------------------------------------------------------
# HTML

_CSS = """
.promoted{background:#1a7f37} .rejected{background:#cf222e}
th,td{text-align:left;vertical-align:top;padding:7px 9px;border-bottom:1px solid #d8dee4;
  overflow-wrap:anywhere}
th{background:#eaeef2;font-size:12px;text-transform:uppercase;letter-spacing:.03em}
table{margin:6px 0 12px;table-layout:auto} ul{margin:6px 0;padding-left:22px}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 14px;background:#fff;
  border:1px solid #d0d7de;border-radius:8px;padding:12px 16px;margin:0}
dt{color:#57606a} dd{margin:0;overflow-wrap:anywhere}
section{margin-bottom:8px}
"""


def _ul(items: list[str]) -> str:
    return "<ul>" + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>"


def _table(head: list[str], rows: list[list[str]]) -> str:
    """A table of already-escaped cells."""
    h = "".join(f"<th>{c}</th>" for c in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{h}</tr>{body}</table>"


def _section(ident: str, title: str, body: str) -> str:
    return f'<section id="{ident}"><h2>{esc(title)}</h2>{body}</section>'


def _none(text: str) -> str:
    return f'<p class="none">{esc(text)}</p>'


def to_html(facts: CardFacts) -> str:
    """The card as one self-contained HTML page (inline CSS, no script, no network)."""
    ev = facts.evidence or {}
    about = [
        ("Intended use", facts.intended_use or "not stated (spec card.intended_use)"),
        ("Owner", facts.owner),
        ("Description", facts.description or DASH),
        ("Task", f"{facts.task}; target {facts.target}"),
        ("Estimator", facts.estimator),
        ("Features", ", ".join(facts.features) or DASH),
        ("Sensitive features", ", ".join(facts.sensitive_features) or "none declared"),
    ]
    dl = "<dl>" + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in about) + "</dl>"
    missing = (
        "" if facts.evidence else _none("The gate's evidence (gate/evidence.json) was not found.")
    )
    metric_rows = []
    for m, v, floor, iv in _metric_rows(facts):
        champ, diff, ci = _ci(iv)
        metric_rows.append([f"<code>{esc(m)}</code>", _n(v), _n(floor), champ, diff, esc(ci)])
    metrics = (
        _table(
            ["metric", "challenger", "floor", "champion", "improvement", "interval"], metric_rows
        )
        if metric_rows
        else _none("No metrics recorded.")
    )
    if facts.segments:
        fails = (ev.get("floors") or {}).get("segment_failures") or []
        segments = (
            "<p>Floors checked per segment of: "
            + ", ".join(f"<code>{esc(s)}</code>" for s in facts.segments)
            + "</p>"
            + _ul(fails or ["every segment meets every floor"])
        )
    else:
        segments = _none("No segments declared (spec promotion.segments).")
    body = "".join(
        [
            f'<div class="verdict {esc(facts.outcome)}">{esc(facts.headline)}'
            f"<small>{esc(facts.model)} version {esc(facts.version)}</small></div>",
            _facts(facts),
            _section("intended-use", "Intended use", dl),
            _section("decision", "Decision and evidence", _ul(facts.reasons) + missing),
            _section("metrics", "Metrics on the holdout", metrics),
            _section("segments", "Segments", segments),
            _section("fairness", "Fairness", _html_fairness(ev.get("fairness"))),
            _section("importance", "Permutation importance", _html_importance(facts)),
            _section("data", "Data", _html_data(facts)),
            _section(
                "limitations",
                "Known limitations",
                _ul([*facts.limitations, *auto_limitations(facts)] or ["none"]),
            ),
            _section("drift", "Drift history", _html_drift(facts)),
            _links(facts.links),
            "<footer>Model card of the airmlops pack, written when the validate gate decided. "
            "This page is self-contained and needs no network.</footer>",
        ]
    )
    return htmlpage.page(f"Model card: {facts.model} version {facts.version}", body, css=_CSS)


def _facts(facts: CardFacts) -> str:
    rows = {d.context: d.rows for d in facts.datasets}
    items = [
        (facts.version, "version"),
        (facts.outcome, "decision"),
        (f"{rows['training']:,}" if rows.get("training") else DASH, "training rows"),
        (f"{rows['holdout']:,}" if rows.get("holdout") else DASH, "holdout rows"),
        (str(len(facts.drift_runs)), "recent drift checks of the model"),
    ]
    return (
        '<div class="facts">'
        + "".join(f'<div class="fact"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in items)
        + "</div>"
    )


def _html_fairness(fair: Mapping[str, Any] | None) -> str:
    if not fair:
        return _none("Not checked: the spec declares no sensitive features.")
    out = _ul(list(fair.get("reasons") or []))
    for report in (fair.get("reports") or {}).get("challenger") or []:
        out += f"<p>Challenger by <code>{esc(report.get('feature'))}</code>:</p>"
        out += htmlpage.group_table(
            str(report.get("feature")), report.get("by_group") or {}, report.get("gaps") or {}
        )
    return out


def _html_importance(facts: CardFacts) -> str:
    imp = facts.importance
    if imp is None:
        return _none(facts.importance_note.capitalize() + ".")
    rows = [[f"<code>{esc(f)}</code>", _n(m), _n(s)] for f, m, s in imp.features]
    return (
        f"<p>Drop in <code>{esc(imp.metric)}</code> when a feature is shuffled "
        f"({imp.n_repeats} repeats):</p>" + _table(["feature", "importance (mean)", "std"], rows)
    )


def _html_data(facts: CardFacts) -> str:
    items = [f"Source: {s}" for s in facts.sources]
    items.append(f"Training window: {facts.window or 'the whole source (no window)'}")
    if facts.retrain_reason:
        items.append(f"Retrained because: {facts.retrain_reason}")
    if facts.data_sha256:
        items.append(f"Extracted window sha256: {facts.data_sha256}")
    if facts.spec_sha:
        items.append(f"Spec sha: {facts.spec_sha}")
    rows = [
        [
            esc(d.context),
            f"{d.rows:,}" if d.rows is not None else DASH,
            f"<code>{esc(d.sha256)}</code>",
            f"<code>{esc(d.source)}</code>",
        ]
        for d in facts.datasets
    ]
    table = (
        _table(["input", "rows", "sha256", "source"], rows) if rows else _none("No inputs logged.")
    )
    return _ul(items) + table


def _html_drift(facts: CardFacts) -> str:
    own = [r for r in facts.drift_runs if r.version == facts.version]
    out = "" if own else _none(f"None yet for version {facts.version}.")
    if facts.drift_runs:
        rows = [
            [
                _link(r.url, r.started),
                esc(r.version),
                esc(r.status),
                _count(r.rows),
                _count(r.n_drifted),
            ]
            for r in facts.drift_runs
        ]
        out += "<p>Latest drift checks of the model:</p>" + _table(
            ["checked", "version", "status", "rows", "drifted columns"], rows
        )
    return out


def _links(links: Mapping[str, str]) -> str:
    if not links:
        return ""
    items = "".join(f"<li>{_link(v, k)}</li>" for k, v in links.items())
    return _section("links", "Links", f"<ul>{items}</ul>")


def _link(url: str, text: str) -> str:
    """An anchor for http(s) URLs; any other scheme stays plain text."""
    if not url.startswith(("http://", "https://")):
        return esc(text)
    return f'<a href="{esc(url)}">{esc(text)}</a>'
