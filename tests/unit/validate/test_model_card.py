"""Tests of airmlops_core.validate.model_card: what the card says, escaping of outside text in
Markdown and HTML, and the HTML page rendered offline in real Chromium."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

import browser
from airmlops_core.validate import model_card as mc

HOSTILE = "<script>alert(1)</script>"
SHA = "ab" * 32


def evidence(promote: bool = True) -> dict:
    """What gate_step logs as gate/evidence.json (promotion.decide), with fairness reports."""
    group = {
        "feature": "female",
        "by_group": {
            "0": {"count": 900.0, "tpr": 0.71, "selection_rate": 0.3},
            HOSTILE: {"count": 12.0, "tpr": None, "selection_rate": 0.25},
            "1": {"count": 870.0, "tpr": 0.69, "selection_rate": 0.28},
        },
        "gaps": {"tpr": 0.02, "selection_rate": 0.02},
        "gap_between": {"tpr": ["1", "0"]},
        "small_groups": [HOSTILE],
        "min_group_size": 30,
    }
    return {
        "decision": "promote" if promote else "reject",
        "data_check": {"passed": True, "summary": "12 expectations passed"},
        "floors": {"failures": [], "segment_failures": ["contract=Month: f1=0.41 < 0.5 (n=80)"]},
        "comparison": {
            "interval": {
                "metric": "roc_auc",
                "champion": 0.8312,
                "challenger": 0.8457,
                "diff": 0.0145,
                "low": 0.0061,
                "high": 0.0233,
                "level": 0.95,
                "method": "paired_bootstrap",
                "n": 1761,
                "n_boot": 1000,
                "p_value": 0.001,
                "test": "delong",
            },
            "margin": 0.0,
            "challenger_better": True,
            "reason": "roc_auc improves by 0.0145",
        },
        "fairness": {
            "passed": True,
            "worst_gap_challenger": 0.02,
            "worst_gap_champion": 0.03,
            "reasons": ["fairness: the challenger's worst gap 0.02 is within 0.05"],
            "reports": {"challenger": [group], "champion": None},
            "summary": {},
        },
    }


def facts(**overrides) -> mc.CardFacts:
    base = {
        "model": "customer_churn",
        "version": "7",
        "outcome": "promoted",
        "reasons": ["roc_auc improves by 0.0145 (95% CI 0.0061 to 0.0233)"],
        "owner": "churn-team <a@b>",
        "description": "Telco churn | with *markdown* and <b>html</b>",
        "intended_use": f"Rank customers for retention calls {HOSTILE}",
        "limitations": ["Trained on one telco's 2019 customers; not for other markets"],
        "approved_by": "gate (automatic)",
        "champion_before": "6",
        "task": "binary",
        "target": "churn",
        "features": ["tenure", "monthly_charges", HOSTILE],
        "sensitive_features": ["female"],
        "segments": ["contract"],
        "estimator": "sklearn.linear_model.LogisticRegression",
        "sources": ["file demo/churn.parquet (parquet)"],
        "window": "month in [1, 9]",
        "datasets": [
            mc.Dataset("training", 5282, SHA, "/work/train.parquet"),
            mc.Dataset("holdout", 1761, "cd" * 32, "/work/holdout.parquet"),
        ],
        "data_sha256": "ef" * 32,
        "spec_sha": "0123456789abcdef",
        "metrics": {"roc_auc": 0.8457, "f1": 0.612},
        "floors": {"roc_auc": 0.75, "f1": 0.5},
        "evidence": evidence(),
        "importance": mc.read_importance(
            {
                "metric": "roc_auc",
                "n_repeats": 5,
                "features": [
                    {"feature": "tenure", "importance_mean": 0.05, "importance_std": 0.004},
                    {"feature": HOSTILE, "importance_mean": 0.11, "importance_std": 0.01},
                ],
            }
        ),
        "drift_runs": [
            mc.DriftRun("6", "drift", "2026-11-30 06:00 UTC", 5000.0, 2.0, "http://m/#/r/1"),
        ],
        "links": {"model version": "http://mlflow:5000/#/models/customer_churn/versions/7"},
    }
    return mc.CardFacts(**{**base, **overrides})


def test_markdown_card_has_every_section_and_the_evidence() -> None:
    md = mc.to_markdown(facts())
    for section in (
        "## Intended use",
        "## Decision and evidence",
        "## Metrics on the holdout",
        "## Segments",
        "## Fairness",
        "## Permutation importance",
        "## Data",
        "## Known limitations",
        "## Drift history",
    ):
        assert section in md, section
    assert "**Decision: PROMOTED to champion (replacing version 6), approved by gate" in md
    # the gate metric's row carries the champion, the improvement and its interval
    auc = next(ln for ln in md.splitlines() if ln.startswith("| `roc_auc`"))
    assert "0.8457" in auc
    assert "0.8312" in auc
    assert "0.0061 to 0.0233 (95% CI)" in auc
    assert "contract=Month: f1=0.41" in md
    assert "Trained on one telco" in md
    assert "Metrics come from one holdout of 1,761 rows" in md  # a limit the evidence shows
    assert SHA in md
    assert "5,282" in md
    assert "month in \\[1, 9\\]" in md
    assert "None yet for version 7." in md  # the drift runs are of version 6
    assert "| 2026-11-30 06:00 UTC | 6 | drift | 5,000 | 2 |" in md
    # importance: the largest drop first
    rows = [ln for ln in md.split("## Permutation importance")[1].splitlines() if "| `" in ln]
    assert "script" in rows[0]
    assert "tenure" in rows[1]


def test_markdown_escapes_outside_text() -> None:
    md = mc.to_markdown(facts())
    rendered = MarkdownIt("commonmark").enable("table").render(md)
    assert "<script>" not in rendered
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in rendered
    assert "<b>html</b>" not in rendered
    assert "*markdown*" in rendered  # shown as typed, not as emphasis
    # a pipe in a description or a name never splits a table row
    table = mc.to_markdown(facts(features=["a|b"], importance=None))
    assert "`a\\|b`" in table


def test_html_card_escapes_a_hostile_feature_name_everywhere() -> None:
    page = mc.to_html(facts())
    assert "<script" not in page
    assert (
        page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 4
    )  # use, features, fairness, importance
    assert "<b>html</b>" not in page
    for bad in ("http://m", "https://", "<link", "@import", "url(", "<img"):
        assert bad not in page.replace('href="http://m', ""), bad
    # a link with another scheme than http(s) is not a link
    page = mc.to_html(facts(links={"x": "javascript:alert(1)"}))
    assert 'href="javascript' not in page


def test_rejected_card_and_missing_pieces_say_so() -> None:
    card = facts(
        outcome="rejected",
        reasons=["floor: f1=0.41 misses the floor >= 0.5"],
        approved_by=None,
        evidence=None,
        importance=None,
        drift_runs=[],
        sensitive_features=[],
        segments=[],
    )
    md, page = mc.to_markdown(card), mc.to_html(card)
    assert "**Decision: REJECTED: version 6 stays champion**" in md
    assert '<div class="verdict rejected">REJECTED: version 6 stays champion' in page
    for text in (md, page):
        assert "Not computed." in text
        assert "None yet for version 7." in text
        assert "gate/evidence.json) was not found" in text
        assert "fairness was not checked" in text
        assert "No segments declared" in text


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ([], "not a JSON object"),
        ({"n_repeats": 5, "features": []}, "metric: not a string"),
        ({"metric": "r2", "n_repeats": "5", "features": []}, "n_repeats: not an integer"),
        ({"metric": "r2", "n_repeats": 5, "features": {}}, "features: not a list"),
        (
            {"metric": "r2", "n_repeats": 5, "features": [{"feature": "a", "importance_mean": 1}]},
            r"features\[0\]: needs feature, importance_mean, importance_std",
        ),
    ],
)
def test_a_malformed_importance_artifact_names_the_field(raw: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        mc.read_importance(raw)


# the page's width against the window's, and each section's box
LAYOUT = """(() => {
  const ids = ["intended-use", "decision", "metrics", "segments", "fairness", "importance",
               "data", "limitations", "drift"];
  const boxes = {};
  for (const id of ids) {
    const el = document.getElementById(id);
    const r = el ? el.getBoundingClientRect() : null;
    boxes[id] = r ? {right: r.right, height: r.height,
                     visible: getComputedStyle(el).display !== "none"} : null;
  }
  const widest = Math.max(...[...document.querySelectorAll("table, dl")].map(
    e => e.getBoundingClientRect().right));
  return {boxes, widest, viewport: document.documentElement.clientWidth,
          scroll: document.documentElement.scrollWidth};
})()"""


def test_html_card_renders_offline_without_horizontal_overflow(tmp_path: Path) -> None:
    """Long unbreakable names and hashes: every section is visible and nothing scrolls sideways."""
    long_name = "payment_method_electronic_check_" * 6
    card = facts(
        features=[long_name, *facts().features],
        sources=["s3 s3://bucket/" + "very-long-prefix/" * 12 + "churn.parquet"],
        datasets=[mc.Dataset("training", 5282, SHA, "s3://bucket/" + "x" * 300)],
        intended_use="y" * 400,
    )
    page = tmp_path / "card.html"
    page.write_text(mc.to_html(card), "utf-8")
    got = browser.measure(page, tmp_path, LAYOUT, size=(1300, 900))
    for section, box in got["boxes"].items():
        assert box is not None, section
        assert box["visible"], section
        assert box["height"] > 20, (section, box)
        assert box["right"] <= got["viewport"], (section, box)
    assert got["widest"] <= got["viewport"], got
    assert got["scroll"] <= got["viewport"], got  # nothing to scroll sideways to
    pixels = browser.screenshot(page, tmp_path)
    green = browser.colour_pixels(pixels, (26, 127, 55))
    assert green > 5000, f"the green PROMOTED banner is missing ({green} green pixels)"
    # the check can fail: without the card's wrapping rules the same page overflows
    css = re.sub(r"overflow-wrap:anywhere", "", page.read_text("utf-8"))
    (tmp_path / "unwrapped.html").write_text(css, "utf-8")
    unwrapped = browser.measure(tmp_path / "unwrapped.html", tmp_path, LAYOUT, (1300, 900))
    assert unwrapped["scroll"] > unwrapped["viewport"], unwrapped
