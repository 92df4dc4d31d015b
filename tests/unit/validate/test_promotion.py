"""Tests of airmlops_core.validate.promotion: the decision, its tags and message, segment floors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from airmlops_core.stats.comparison import compare
from airmlops_core.stats.fairness import GroupReport, fairness_gate
from airmlops_core.train.generalization import CrossValidation, OverfitCheck
from airmlops_core.validate.promotion import (
    TAG_VALUE_LIMIT,
    Decision,
    decide,
    segment_floor_failures,
)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@pytest.fixture(scope="module")
def models() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(12)
    n = 2000
    y = (rng.random(n) < 0.4).astype(int)
    return y, _sigmoid(rng.normal(size=n) + 0.7 * y), _sigmoid(rng.normal(size=n) + 1.5 * y)


def _report(gap: float) -> GroupReport:
    return GroupReport(
        feature="sex",
        by_group={
            "F": {"true_positive_rate": 0.5, "count": 80.0},
            "M": {"true_positive_rate": 0.5 + gap, "count": 90.0},
        },
        gaps={"true_positive_rate": gap},
        gap_between={"true_positive_rate": ("F", "M")},
    )


def _decide(**overrides) -> Decision:
    kw = dict(
        data_check_passed=True,
        data_check_summary="12/12 expectations met",
        floor_failures=[],
        segment_floor_failures=[],
        comparison=None,
        fairness=None,
    )
    return decide(**(kw | overrides))


def test_clearly_better_challenger_is_promoted(models) -> None:
    y, champ, chall = models
    comp = compare(y, champ, chall, "roc_auc", margin=0.0, n_boot=300)
    decision = _decide(
        comparison=comp, fairness=fairness_gate([_report(0.1)], [_report(0.1)], tolerance=0.02)
    )
    assert decision.promote
    assert comp.reason in decision.reasons
    assert any(r.startswith("data check passed") for r in decision.reasons)
    assert any(r.startswith("fairness:") for r in decision.reasons)
    assert decision.evidence["comparison"]["interval"]["test"] == "delong"


def test_tie_keeps_the_champion_and_worse_is_rejected(models) -> None:
    y, champ, chall = models
    tie = _decide(comparison=compare(y, champ, champ, "roc_auc", margin=0.0, n_boot=200))
    assert not tie.promote
    assert tie.reasons == [tie.evidence["comparison"]["reason"]]
    assert "a tie keeps the champion" in tie.reasons[0]
    worse = _decide(comparison=compare(y, chall, champ, "roc_auc", margin=0.0, n_boot=200))
    assert not worse.promote
    assert "worse" in worse.reasons[0]


def test_margin_decides_between_promote_and_keep(models) -> None:
    y, champ, chall = models
    low = compare(y, champ, chall, "roc_auc", margin=0.0, n_boot=300).interval.low
    assert _decide(
        comparison=compare(y, champ, chall, "roc_auc", margin=low / 2, n_boot=300)
    ).promote
    assert not _decide(
        comparison=compare(y, champ, chall, "roc_auc", margin=low + 0.01, n_boot=300)
    ).promote


def test_lower_is_better_metric_promotes_the_smaller_error() -> None:
    rng = np.random.default_rng(3)
    y = rng.normal(size=1500)
    champ, chall = y + rng.normal(0, 1.0, 1500), y + rng.normal(0, 0.6, 1500)
    assert _decide(comparison=compare(y, champ, chall, "rmse", margin=0.0, n_boot=300)).promote
    assert not _decide(comparison=compare(y, chall, champ, "rmse", margin=0.0, n_boot=300)).promote


def test_no_champion_floors_decide() -> None:
    first = _decide()
    assert first.promote
    assert "no champion" in " ".join(first.reasons)
    assert "no champion before it" in first.message("churn", "1")
    missed = _decide(floor_failures=["roc_auc=0.6100 misses the floor >= 0.7"])
    assert not missed.promote
    assert missed.reasons == ["floor: roc_auc=0.6100 misses the floor >= 0.7"]


def test_every_failing_check_is_a_reason(models) -> None:
    y, champ, _ = models
    fairness = fairness_gate([_report(0.0)], [_report(0.4)], tolerance=0.05, max_gap=0.3)
    decision = _decide(
        data_check_passed=False,
        data_check_summary="2 of 12 expectations failed",
        floor_failures=["f1=0.4000 misses the floor >= 0.5"],
        segment_floor_failures=["region=north: f1=0.3000 misses the floor >= 0.5"],
        comparison=compare(y, champ, champ, "accuracy", margin=0.0, n_boot=100),
        fairness=fairness,
    )
    assert not decision.promote
    assert len(decision.reasons) == 1 + 1 + 1 + 1 + 2
    assert decision.reasons[0] == "data check failed: 2 of 12 expectations failed"
    assert "segment floor: region=north" in decision.reasons[2]
    assert decision.evidence["decision"] == "reject"


def test_fairness_alone_can_block() -> None:
    decision = _decide(fairness=fairness_gate(None, [_report(0.4)], tolerance=0.0, max_gap=0.2))
    assert not decision.promote
    assert decision.reasons[0].startswith("fairness:")


def test_overfit_gap_over_its_limit_blocks_and_is_evidence() -> None:
    cv = CrossValidation("roc_auc", [0.80, 0.82, 0.78])
    over = OverfitCheck("roc_auc", train=0.99, holdout=0.80, max_gap=0.05, cv=cv)
    decision = _decide(overfit=over)
    assert not decision.promote
    assert decision.reasons == [
        "overfit: the train-versus-holdout gap of roc_auc 0.1900 exceeds max_overfit_gap 0.05 "
        "(train 0.9900, holdout 0.8000); 3-fold CV roc_auc 0.8000 ± 0.0200"
    ]
    tag = json.loads(decision.tags()["gate.overfit"])
    assert tag["gap"] == pytest.approx(0.19)
    assert tag["max_gap"] == 0.05
    assert tag["passed"] is False
    assert tag["cv"]["mean"] == pytest.approx(0.80)
    assert tag["cv"]["std"] == pytest.approx(np.std([0.80, 0.82, 0.78], ddof=1))
    within = _decide(overfit=OverfitCheck("roc_auc", train=0.83, holdout=0.80, max_gap=0.05))
    assert within.promote
    assert any("0.0300 is within max_overfit_gap 0.05" in r for r in within.reasons)


def test_an_unmeasured_overfit_gap_blocks_only_under_a_limit() -> None:
    unknown = OverfitCheck("rmse", train=float("nan"), holdout=2.0, max_gap=0.5, note="no split")
    decision = _decide(overfit=unknown)
    assert not decision.promote
    assert "unknown (no split; max_overfit_gap 0.5)" in decision.reasons[0]
    assert json.loads(decision.tags()["gate.overfit"])["gap"] is None  # NaN is no JSON
    no_limit = OverfitCheck("rmse", train=float("nan"), holdout=2.0, max_gap=None)
    assert _decide(overfit=no_limit).promote


def test_tags_are_short_strings_and_json(models) -> None:
    y, champ, chall = models
    decision = _decide(
        comparison=compare(y, champ, chall, "roc_auc", margin=0.0, n_boot=100),
        fairness=fairness_gate(None, [_report(0.1)], tolerance=0.0),
    )
    tags = decision.tags()
    assert set(tags) == {
        "gate.decision",
        "gate.reasons",
        "gate.data_check",
        "gate.floors",
        "gate.comparison",
        "gate.fairness",
        "gate.overfit",
        "gate.shadow",
    }
    assert all(isinstance(v, str) and len(v) <= TAG_VALUE_LIMIT for v in tags.values())
    assert tags["gate.decision"] == "promote"
    assert json.loads(tags["gate.reasons"]) == decision.reasons
    assert json.loads(tags["gate.comparison"])["challenger_better"] is True
    assert json.loads(tags["gate.fairness"])["passed"] is True
    assert json.loads(_decide().tags()["gate.comparison"]) is None  # always set, never stale
    assert json.loads(_decide().tags()["gate.overfit"]) is None
    assert json.loads(json.dumps(decision.evidence, allow_nan=False))["decision"] == "promote"


def test_tags_stay_within_the_limit_with_huge_evidence() -> None:
    many_groups = GroupReport(
        feature="zip",
        by_group={f"{i:05d}": {"selection_rate": i / 1000, "count": 50.0} for i in range(1000)},
        gaps={"selection_rate": 0.999},
        gap_between={"selection_rate": ("00000", "00999")},
    )
    reports = [
        GroupReport(
            feature=f"feature_{j}",
            by_group=many_groups.by_group,
            gaps={f"metric_{k}": 0.5 for k in range(100)},
        )
        for j in range(20)
    ]
    decision = _decide(
        floor_failures=[f"metric_{i} misses the floor " + "x" * 300 for i in range(100)],
        fairness=fairness_gate(None, [many_groups, *reports], tolerance=0.0, max_gap=float("nan")),
    )
    tags = decision.tags()
    assert all(isinstance(v, str) and len(v) <= TAG_VALUE_LIMIT for v in tags.values())
    reasons = json.loads(tags["gate.reasons"])  # shortened, still JSON, says what it left out
    assert reasons[-1].endswith("more")
    assert len(reasons) < len(decision.reasons)
    assert json.loads(tags["gate.floors"])["failures"][-1].endswith("more")
    assert json.loads(tags["gate.fairness"])["passed"] is True  # NaN max_gap: never blocks


def test_message_names_the_decision_and_every_reason(models) -> None:
    y, champ, _ = models
    decision = _decide(
        data_check_passed=False,
        data_check_summary="row count too low",
        floor_failures=["rmse=3.1 misses the floor <= 2"],
        comparison=compare(y, champ, champ, "roc_auc", margin=0.0, n_boot=50),
    )
    text = decision.message("diamond_price", "7")
    assert "*diamond_price* version 7 rejected" in text
    for reason in decision.reasons:
        assert reason in text
    promoted = _decide().message("diamond_price", "8")
    assert "version 8 promoted to champion" in promoted
    assert all(r in promoted for r in _decide().reasons)


# ---------------------------------------------------------------- segment floors


def test_segment_floors_against_sklearn_per_segment() -> None:
    rng = np.random.default_rng(5)
    n = 900
    region = pd.Series(np.repeat(["north", "south", "tiny"], [450, 420, 30]), name="region")
    y = rng.integers(0, 2, size=n)
    signal = np.where(region == "north", 2.0, 0.1)  # the model is weak in the south
    score = _sigmoid(rng.normal(size=n) + signal * y)
    failures = segment_floor_failures(y, score, region, "roc_auc", 0.7, min_rows=50)
    south = (region == "south").to_numpy()
    expected = skm.roc_auc_score(y[south], score[south])
    assert expected < 0.7 < skm.roc_auc_score(y[~south], score[~south])
    assert failures == [f"region=south: roc_auc={expected:.4f} misses the floor >= 0.7 (n=420)"]
    tiny = (region == "tiny").to_numpy()
    tiny_fails = skm.roc_auc_score(y[tiny], score[tiny]) < 0.7
    with_tiny = segment_floor_failures(y, score, region, "roc_auc", 0.7, min_rows=10)
    assert any(f.startswith("region=tiny") for f in with_tiny) == tiny_fails
    assert len(with_tiny) == 1 + tiny_fails


def test_segment_floors_lower_is_better_and_undefined_segments() -> None:
    rng = np.random.default_rng(6)
    seg = pd.Series(np.repeat(["a", "b", None], 100), name="shop", dtype="str")
    y = rng.normal(size=300)
    pred = y + np.r_[rng.normal(0, 0.5, 100), rng.normal(0, 3.0, 100), rng.normal(0, 0.5, 100)]
    failures = segment_floor_failures(y, pred, seg, "rmse", 1.0)
    assert len(failures) == 1
    assert failures[0].startswith("shop=b: rmse=")
    assert "<= 1.0" in failures[0]
    worse = segment_floor_failures(y, pred, seg, "rmse", 0.1)
    assert [f.split(":")[0] for f in worse] == ["shop=(missing)", "shop=a", "shop=b"]
    one_class = pd.Series(np.repeat(["a", "b"], 100))  # no name: "segment"
    y01 = np.r_[np.ones(100, dtype=int), rng.integers(0, 2, 100)]
    failures = segment_floor_failures(y01, rng.random(200), one_class, "roc_auc", 0.99)
    assert len(failures) == 1
    assert failures[0].startswith("segment=b: roc_auc=")
    with pytest.raises(ValueError, match="unknown metric"):
        segment_floor_failures(y01, rng.random(200), one_class, "auc", 0.5)
