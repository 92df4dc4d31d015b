"""Tests of airmlops_core.stats.fairness: per-group metrics against numpy, and the fairness gate."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from airmlops_core.stats.fairness import (
    MISSING_GROUP,
    GroupReport,
    fairness_gate,
    group_metrics,
)


@pytest.fixture
def holdout() -> pd.DataFrame:
    """Binary labels and predictions with a pandas 3 string column, a tiny group and gaps."""
    rng = np.random.default_rng(0)
    n = 1200
    sex = rng.choice(["F", "M"], size=n)
    sex[:12] = "X"  # a small group
    y = (rng.random(n) < 0.4).astype(int)
    # predictions find positives far more often for M than for F
    hit = np.where(sex == "M", 0.9, 0.55)
    pred = np.where(y == 1, rng.random(n) < hit, rng.random(n) < 0.2).astype(int)
    return pd.DataFrame({"sex": pd.Series(sex, dtype="str"), "y": y, "pred": pred})


def _by_hand(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    return {
        "selection_rate": float(np.mean(pred == 1)),
        "true_positive_rate": float(np.mean(pred[y == 1] == 1)),
        "false_positive_rate": float(np.mean(pred[y == 0] == 1)),
        "count": float(len(y)),
    }


def test_binary_group_metrics_equal_numpy_per_group(holdout: pd.DataFrame) -> None:
    report = group_metrics(holdout["y"], holdout["pred"], holdout["sex"], task="binary")
    assert report.feature == "sex"
    assert set(report.by_group) == {"F", "M", "X"}
    for group, values in report.by_group.items():
        rows = (holdout["sex"] == group).to_numpy()
        expected = _by_hand(holdout["y"].to_numpy()[rows], holdout["pred"].to_numpy()[rows])
        assert values == pytest.approx(expected, abs=1e-12)


def test_small_groups_are_reported_but_left_out_of_gaps(holdout: pd.DataFrame) -> None:
    report = group_metrics(
        holdout["y"], holdout["pred"], holdout["sex"], task="binary", min_group_size=30
    )
    assert report.small_groups == ["X"]
    assert "X" in report.by_group
    big = {g: v for g, v in report.by_group.items() if g != "X"}
    for metric in ("selection_rate", "true_positive_rate", "false_positive_rate"):
        vals = [v[metric] for v in big.values()]
        assert report.gaps[metric] == pytest.approx(max(vals) - min(vals), abs=1e-12)
    assert report.gap_between["true_positive_rate"] == ("F", "M")
    assert report.worst() == ("true_positive_rate", report.gaps["true_positive_rate"])
    everyone = group_metrics(
        holdout["y"], holdout["pred"], holdout["sex"], task="binary", min_group_size=1
    )
    tprs = [v["true_positive_rate"] for v in everyone.by_group.values()]
    assert everyone.gaps["true_positive_rate"] == pytest.approx(max(tprs) - min(tprs))


def test_undefined_rates_are_nan_not_zero_and_skip_the_gap() -> None:
    sens = pd.Series(["a"] * 40 + ["b"] * 40 + ["c"] * 40, name="grp")
    y = np.r_[np.zeros(40), np.tile([0, 1], 20), np.tile([0, 1], 20)].astype(int)
    pred = np.r_[np.tile([0, 1], 20), np.tile([1, 1], 20), np.tile([0, 1], 20)]
    report = group_metrics(y, pred, sens, task="binary")
    assert math.isnan(report.by_group["a"]["true_positive_rate"])  # fairlearn would say 0.0
    assert report.gaps["true_positive_rate"] == 0.0  # b and c both find every positive
    assert report.gaps["false_positive_rate"] == pytest.approx(1.0 - 0.0)
    assert json.dumps(report.to_dict(), allow_nan=False)


def test_missing_and_numeric_sensitive_values(holdout: pd.DataFrame) -> None:
    senior = pd.Series(
        np.where(np.arange(len(holdout)) % 3 == 0, np.nan, np.arange(len(holdout)) % 2),
        name="senior_citizen",
    )
    report = group_metrics(holdout["y"], holdout["pred"], senior, task="binary")
    assert set(report.by_group) == {"0.0", "1.0", MISSING_GROUP}
    assert report.by_group[MISSING_GROUP]["count"] == 400
    as_str = group_metrics(holdout["y"], holdout["pred"], senior.astype("str"), task="binary")
    assert as_str.by_group[MISSING_GROUP]["count"] == 400


def test_string_labels_need_the_positive_label(holdout: pd.DataFrame) -> None:
    y = np.where(holdout["y"] == 1, "yes", "no")
    pred = np.where(holdout["pred"] == 1, "yes", "no")
    report = group_metrics(y, pred, holdout["sex"], task="binary", pos_label="yes")
    numeric = group_metrics(holdout["y"], holdout["pred"], holdout["sex"], task="binary")
    assert report.by_group == numeric.by_group
    with pytest.raises(ValueError, match="pos_label"):
        group_metrics(y, pred, holdout["sex"], task="binary")


def test_regression_group_metrics_equal_numpy() -> None:
    rng = np.random.default_rng(4)
    n = 600
    region = pd.Series(rng.choice(["north", "south", "east"], size=n), name="region")
    y = rng.normal(100, 10, size=n)
    pred = y + np.where(region == "south", rng.normal(0, 8, n), rng.normal(0, 2, n))
    report = group_metrics(y, pred, region, task="regression")
    for group, values in report.by_group.items():
        rows = (region == group).to_numpy()
        assert values["mean_absolute_error"] == pytest.approx(
            np.mean(np.abs(y[rows] - pred[rows])), abs=1e-12
        )
        assert values["mean_prediction"] == pytest.approx(np.mean(pred[rows]), abs=1e-12)
        assert values["count"] == rows.sum()
    assert report.gap_between["mean_absolute_error"][1] == "south"


def test_multiclass_reports_accuracy_per_group() -> None:
    sens = pd.Series(["a"] * 50 + ["b"] * 50)
    y = np.tile([0, 1, 2, 0, 1], 20)
    pred = np.r_[y[:50], np.zeros(50, dtype=int)]
    report = group_metrics(y, pred, sens, task="multiclass")
    assert report.by_group["a"]["accuracy"] == 1.0
    assert report.by_group["b"]["accuracy"] == pytest.approx(np.mean(y[50:] == 0))
    assert report.feature == "sensitive"


def test_bad_task_and_lengths_raise(holdout: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="unknown task"):
        group_metrics(holdout["y"], holdout["pred"], holdout["sex"], task="classification")
    with pytest.raises(ValueError, match="lengths"):
        group_metrics(holdout["y"][:-1], holdout["pred"], holdout["sex"], task="binary")


# ---------------------------------------------------------------- the gate


def _report(tpr_gap: float, feature: str = "sex") -> GroupReport:
    return GroupReport(
        feature=feature,
        by_group={
            "F": {"true_positive_rate": 0.5, "count": 100.0},
            "M": {"true_positive_rate": 0.5 + tpr_gap, "count": 100.0},
        },
        gaps={"true_positive_rate": tpr_gap},
        gap_between={"true_positive_rate": ("F", "M")},
    )


def test_challenger_with_a_much_larger_tpr_gap_is_blocked(holdout: pd.DataFrame) -> None:
    fair_pred = np.where(
        holdout["y"] == 1, np.arange(len(holdout)) % 10 < 7, np.arange(len(holdout)) % 10 < 2
    ).astype(int)
    champion = [group_metrics(holdout["y"], fair_pred, holdout["sex"], task="binary")]
    challenger = [group_metrics(holdout["y"], holdout["pred"], holdout["sex"], task="binary")]
    result = fairness_gate(champion, challenger, tolerance=0.05)
    assert not result.passed
    assert result.worst_gap_challenger > 0.3 > 0.1 > result.worst_gap_champion
    assert "true_positive_rate by sex" in result.reasons[0]
    assert "tolerance 0.05" in result.reasons[0]
    assert fairness_gate(challenger, champion, tolerance=0.05).passed  # the other way round


def test_tolerance_is_respected() -> None:
    champion = [_report(0.10)]
    assert fairness_gate(champion, [_report(0.14)], tolerance=0.05).passed
    assert not fairness_gate(champion, [_report(0.16)], tolerance=0.05).passed
    assert fairness_gate(champion, [_report(0.16)], tolerance=0.07).passed


def test_worst_gap_is_taken_over_features() -> None:
    champion = [_report(0.02, "sex"), _report(0.10, "age")]
    result = fairness_gate(champion, [_report(0.01, "sex"), _report(0.2, "age")], tolerance=0.05)
    assert not result.passed
    assert (result.worst_gap_challenger, result.worst_gap_champion) == (0.2, 0.10)
    assert "by age" in result.reasons[0]


def test_without_champion_pass_but_report_unless_max_gap() -> None:
    result = fairness_gate(None, [_report(0.3)], tolerance=0.05)
    assert result.passed
    assert result.worst_gap_champion is None
    assert "no champion" in result.reasons[0]
    assert "0.3" in result.reasons[0]
    capped = fairness_gate(None, [_report(0.3)], tolerance=0.05, max_gap=0.2)
    assert not capped.passed
    assert "maximum 0.2" in capped.reasons[0]


def test_every_blocking_reason_is_listed() -> None:
    result = fairness_gate([_report(0.0)], [_report(0.3)], tolerance=0.05, max_gap=0.2)
    assert not result.passed
    assert len(result.reasons) == 2


def test_no_sensitive_features_pass(holdout: pd.DataFrame) -> None:
    result = fairness_gate(None, [], tolerance=0.0)
    assert result.passed
    assert result.worst_gap_challenger == 0.0


def test_result_serialises(holdout: pd.DataFrame) -> None:
    reports = [group_metrics(holdout["y"], holdout["pred"], holdout["sex"], task="binary")]
    result = fairness_gate(reports, reports, tolerance=0.0)
    assert result.passed
    text = json.dumps(result.to_dict(), allow_nan=False)
    assert json.loads(text)["reports"]["challenger"][0]["small_groups"] == ["X"]
    assert "by_group" not in json.dumps(result.summary())
