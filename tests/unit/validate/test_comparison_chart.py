"""The gate's champion-versus-challenger chart, rendered in headless Chromium."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import browser
from airmlops_core.stats import comparison
from airmlops_core.validate import comparison_chart

BLUE, RED, PURPLE = (9, 105, 218), (207, 34, 46), (130, 80, 223)


@pytest.fixture(scope="module")
def case() -> tuple[np.ndarray, np.ndarray, np.ndarray, comparison.Comparison]:
    rng = np.random.default_rng(7)
    y = rng.integers(0, 2, 800)
    champion = np.clip(0.5 + 0.15 * (y - 0.5) + rng.normal(0, 0.25, 800), 0, 1)
    challenger = np.clip(0.5 + 0.45 * (y - 0.5) + rng.normal(0, 0.25, 800), 0, 1)
    comp = comparison.compare(y, champion, challenger, "roc_auc", margin=0.01, n_boot=300, seed=3)
    return y, champion, challenger, comp


def test_resamples_drawn_again_give_the_gates_interval(case) -> None:
    y, champion, challenger, comp = case
    diffs = comparison.paired_differences(y, champion, challenger, "roc_auc", n_boot=300, seed=3)
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert (low, high) == pytest.approx((comp.interval.low, comp.interval.high), abs=1e-12)
    assert diffs.size == comp.interval.n_boot


def test_chart_shows_both_roc_curves_and_the_bootstrap_in_chromium(case, tmp_path: Path) -> None:
    y, champion, challenger, comp = case
    args = dict(n_boot=300, seed=3, title="churn: challenger v2 vs champion v1")
    png = comparison_chart.plot(
        y, champion, challenger, comp, binary=True, out_dir=tmp_path / "roc", **args
    )
    assert png.name == "champion_vs_challenger.png"
    pixels = browser.screenshot(png, tmp_path)
    assert browser.colour_pixels(pixels, BLUE) > 300, "the champion's ROC curve is missing"
    assert browser.colour_pixels(pixels, RED) > 300, "the challenger's ROC curve is missing"
    assert browser.colour_pixels(pixels, PURPLE) > 2000, "the bootstrap histogram is missing"
    # the check can fail: without the ROC panel (a regressor) there is no champion curve
    bare = comparison_chart.plot(
        y, champion, challenger, comp, binary=False, out_dir=tmp_path / "bare", **args
    )
    bare_pixels = browser.screenshot(bare, tmp_path / "bare")
    assert browser.colour_pixels(bare_pixels, BLUE) < 50
    assert browser.colour_pixels(bare_pixels, PURPLE) > 2000


def test_artifact_url_is_the_run_pages_artifact_view() -> None:
    run = "http://127.0.0.1:5000/#/experiments/3/runs/abc"
    assert comparison_chart.artifact_url(run + "/") == (
        run + "/artifacts/plots/champion_vs_challenger.png"
    )
