"""Tests of airmlops_core.drift.report: the HTML report rendered offline in real Chromium, its
self-containment, and the PNG plots."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import browser
from airmlops_core.drift import report as dr
from airmlops_core.stats.drift import check_drift
from airmlops_core.stats.performance import PerformanceDrift
from airmlops_core.stats.profile import ReferenceProfile, build_reference
from airmlops_core.stats.verdict import DriftResult


@pytest.fixture(scope="module")
def case() -> tuple[ReferenceProfile, pd.DataFrame, DriftResult]:
    rng = np.random.default_rng(3)
    n = 20_000

    def frame(shifted: bool) -> pd.DataFrame:
        cat = rng.choice(
            np.array(["red", "green", "blue"]), n, p=[0.3, 0.5, 0.2] if shifted else [0.5, 0.3, 0.2]
        ).astype(object)
        if shifted:
            cat[:1000] = "<b>new</b>"  # an unseen category with markup in its name
        return pd.DataFrame(
            {
                "income": rng.lognormal(10 + (0.3 if shifted else 0), 0.5, n),
                "age": rng.normal(40, 10, n),
                "colour": cat,
                "score": rng.beta(2, 5, n),
            }
        )

    prof = build_reference(frame(False), numeric=["income", "age"], categorical=["colour"])
    prof = prof.merge(build_reference(frame(False), numeric=["score"], role="prediction"))
    cur = frame(True)
    return prof, cur, check_drift(prof, cur)


def test_report_renders_offline_and_names_the_drifted_columns(case, tmp_path: Path) -> None:
    _, _, result = case
    assert set(result.drifted) == {"income", "colour"}
    page = tmp_path / "drift.html"
    page.write_text(dr.render_report(result, title="Drift: churn v7"), "utf-8")
    text = page.read_text()
    banner = re.search(r'<div class="verdict drift">(.*?)<small>', text, re.S)
    assert banner
    assert "income" in banner.group(1)
    assert "colour" in banner.group(1)
    assert "age" not in banner.group(1)
    assert "score" not in banner.group(1)
    assert text.count('<div class="card">') == 2  # one card per drifted column
    assert "&lt;b&gt;new&lt;/b&gt;" in text
    assert "<b>new</b>" not in text
    pixels = browser.screenshot(page, tmp_path)
    assert pixels.shape[:2] == (900, 1200)
    assert pixels.std() > 20
    red = browser.colour_pixels(pixels, (207, 34, 46))
    assert red > 5000, f"the red DRIFT banner is missing ({red} red pixels)"
    blue = browser.colour_pixels(pixels, (9, 105, 218))  # the current-distribution bars
    assert blue > 200
    # the check can fail: without its inline styles the page has no banner and no bars
    bare = tmp_path / "bare.html"
    bare.write_text(re.sub(r"<style>.*?</style>", "", text, flags=re.S), "utf-8")
    bare_pixels = browser.screenshot(bare, tmp_path)
    assert browser.colour_pixels(bare_pixels, (207, 34, 46)) < 100
    assert browser.colour_pixels(bare_pixels, (9, 105, 218)) < 50


def test_report_is_self_contained_with_embedded_plots(case, tmp_path: Path) -> None:
    prof, cur, result = case
    paths = dr.plots(result, prof, cur, tmp_path / "plots", top=3)
    perf = PerformanceDrift(
        metric="roc_auc",
        status="degraded",
        reference=0.9,
        current=0.8,
        low=0.78,
        high=0.82,
        level=0.95,
        n=5000,
        n_boot=1000,
        max_drop=0.02,
        reason="roc_auc 0.8 vs holdout 0.9: worse",
    )
    page = dr.render_report(result, title="t", subtitle="v7", performance=perf, images=paths[:2])
    assert page.count("data:image/png;base64,") == 2
    assert "roc_auc 0.8 vs holdout 0.9" in page
    for bad in ("http://", "https://", "<script", "<link", "@import", "url("):
        assert bad not in page, bad
    srcs = re.findall(r'src="([^"]*)"', page)
    assert srcs
    assert all(s.startswith("data:image/png;base64,") for s in srcs)


def test_plots_write_the_most_drifted_columns(case, tmp_path: Path) -> None:
    from PIL import Image

    prof, cur, result = case
    paths = dr.plots(result, prof, cur, tmp_path, top=3)
    names = [p.name for p in paths]
    assert names[0] == "drift_overview.png"
    assert {n.split("_", 2)[2] for n in names[1:3]} == {"income.png", "colour.png"}
    assert len(paths) == 4
    for path in paths:
        with Image.open(path) as img:
            arr = np.asarray(img.convert("RGB"), dtype=float)
        assert img.format == "PNG"
        assert arr.shape[0] > 150
        assert arr.std() > 10


def test_not_enough_data_and_no_drift_verdicts() -> None:
    rng = np.random.default_rng(4)
    prof = build_reference(pd.DataFrame({"x": rng.normal(size=5000)}), numeric=["x"])
    calm = check_drift(prof, pd.DataFrame({"x": rng.normal(size=5000)}))
    tiny = check_drift(prof, pd.DataFrame({"x": rng.normal(size=50)}))
    calm_page = dr.render_report(calm, title="calm")
    assert '<div class="verdict no_drift">NO DRIFT' in calm_page
    assert "No column drifted." in calm_page
    tiny_page = dr.render_report(tiny, title="tiny")
    assert '<div class="verdict not_enough_data">NOT ENOUGH DATA' in tiny_page
    assert "fewer than min_rows" in tiny_page


def test_bias_section_lists_each_group_and_the_gap() -> None:
    from airmlops_core.stats import fairness

    rng = np.random.default_rng(5)
    prof = build_reference(pd.DataFrame({"x": rng.normal(size=2000)}), numeric=["x"])
    calm = check_drift(prof, pd.DataFrame({"x": rng.normal(size=2000)}))
    y = np.array([1, 0, 1, 0] * 100)
    pred = np.array([1, 1, 0, 0] * 100)
    group = pd.Series(["a"] * 200 + ["b"] * 200)
    report = fairness.group_metrics(y, pred, group, task="binary", feature="region")
    page = dr.render_report(calm, title="calm", bias=[report])
    assert "<h2>Bias (labelled rows)</h2>" in page
    assert "<th>region</th>" in page
    assert "<td>a</td>" in page
    assert "<td>b</td>" in page
    assert "Bias" not in dr.render_report(calm, title="calm")


# the all-columns table's right edge, its status cells' right edge, and the window's width
TABLE_EDGES = """(() => {
  const table = document.querySelector("table.columns");
  const status = [...table.querySelectorAll("tr td:last-child")];
  return {table: table.getBoundingClientRect().right,
          status: Math.max(...status.map(td => td.getBoundingClientRect().right)),
          badges: status.filter(td => td.querySelector(".badge")).length,
          viewport: document.documentElement.clientWidth,
          scroll: document.documentElement.scrollWidth};
})()"""


def test_all_columns_table_fits_a_1300px_window(tmp_path: Path) -> None:
    """Long column and category names, every column of the table: the status stays visible."""
    rng = np.random.default_rng(6)
    n = 5000
    payment = np.array(["Electronic check", "Mailed check", "Bank transfer (automatic)"])

    def frame(shift: float) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "scheduled_departure_time": rng.normal(1300 + shift, 300, n),
                "payment_method_electronic_check": rng.choice(payment, n).astype(object),
                "monthly_charges_in_local_currency": rng.normal(60, 20 + shift / 10, n),
                "income": rng.lognormal(10, 0.5, n),
            }
        )

    prof = build_reference(
        frame(0),
        numeric=["scheduled_departure_time", "monthly_charges_in_local_currency", "income"],
        categorical=["payment_method_electronic_check"],
    )
    result = check_drift(prof, frame(200))
    page = tmp_path / "drift.html"
    page.write_text(dr.render_report(result, title="Drift: flight_delay v1"), "utf-8")
    edges = browser.measure(page, tmp_path, TABLE_EDGES, size=(1300, 900))
    assert edges["badges"] == 4, edges
    assert edges["table"] <= edges["viewport"], edges
    assert edges["status"] <= edges["viewport"], edges
    assert edges["scroll"] <= edges["viewport"], edges  # nothing to scroll sideways to
    # the check can fail: without the table's own rules the same page overflows at 1300 px
    css = re.sub(r"table\.columns[^{]*\{[^}]*\}", "", page.read_text("utf-8"))
    (tmp_path / "unfitted.html").write_text(css, "utf-8")
    unfitted = browser.measure(tmp_path / "unfitted.html", tmp_path, TABLE_EDGES, (1300, 900))
    assert unfitted["status"] > unfitted["viewport"], unfitted
