"""The deploy's pure decisions: deployable or not, tags that travel, golden request, verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from airmlops_core.deploy import evidence
from airmlops_core.validate.shadow_evidence import ShadowEvidence

LABEL = "model m version 3 in dev"


@pytest.mark.parametrize(
    ("tags", "expected"),
    [
        ({"gate.decision": "promote"}, None),
        ({"gate.decision": "reject", "gate.reasons": '["floor: auc"]'}, "gate.decision=reject"),
        ({"gate.decision": "shadow"}, "did not pass its gate"),
        ({}, "never passed the gate"),
        ({"gate.decision": "promote", "rejected": '["no"]'}, "was rejected in its environment"),
    ],
)
def test_only_a_version_that_passed_its_gate_is_deployable(tags, expected) -> None:
    refusal = evidence.gate_refusal(tags, LABEL)
    if expected is None:
        assert refusal is None
    else:
        assert refusal is not None
        assert expected in refusal
        assert LABEL in refusal


def test_lineage_and_gate_evidence_travel_registry_bookkeeping_does_not() -> None:
    source = {
        "gate.decision": "promote",
        "gate.comparison": "{}",
        "metric.roc_auc": "0.8",
        "airmlops.holdout_sha256": "abc",
        "airmlops.data_sha256": "def",
        "airmlops.model_sha256": "digest",
        "airmlops.idempotency_key": "m__train/run",
        "airmlops.dag_id": "m__train",
        "airmlops.run_id": "run",
        "airmlops.triggered_by": "alice",
        "airmlops.lease.holder": "x",
    }
    carried = evidence.carried_tags(source)
    assert carried == {
        "gate.decision": "promote",
        "gate.comparison": "{}",
        "metric.roc_auc": "0.8",
        "airmlops.holdout_sha256": "abc",
        "airmlops.data_sha256": "def",
        "airmlops.deploy.trained_by": "alice",
    }


def test_provenance_names_source_registry_version_run_digest_and_requester() -> None:
    tags = evidence.provenance_tags(
        source_environment="staging",
        source_registry="http://staging:5000",
        source_version="7",
        source_run_id="r1",
        digest="d" * 64,
        target_environment="production",
        requested_by="bob",
        deploy_run="m__deploy/run1",
    )
    assert tags == {
        "airmlops.deploy.source_environment": "staging",
        "airmlops.deploy.source_registry": "http://staging:5000",
        "airmlops.deploy.source_version": "7",
        "airmlops.deploy.source_run_id": "r1",
        "airmlops.model_sha256": "d" * 64,
        "airmlops.deploy.environment": "production",
        "airmlops.deploy.requested_by": "bob",
        "airmlops.deploy.run": "m__deploy/run1",
    }


def test_golden_check_matches_identical_outputs_and_measures_differences() -> None:
    rng = np.random.default_rng(0)
    source = rng.random((5, 2))
    same = evidence.golden_check(source.tolist(), source.copy())
    assert (same.rows, same.max_abs_diff, same.passed) == (5, 0.0, True)
    changed = source.copy()
    changed[3, 1] += 0.25
    diff = evidence.golden_check(source, changed)
    assert diff.max_abs_diff == pytest.approx(float(np.max(np.abs(source - changed))))
    assert not diff.passed
    assert "differs from" in diff.reason


def test_golden_check_shape_or_nan_mismatch_fails() -> None:
    assert evidence.golden_check([[0.1, 0.9]], [0.9]).max_abs_diff == math.inf
    nan = evidence.golden_check([0.1, float("nan")], [0.1, 0.2])
    assert nan.max_abs_diff == math.inf
    assert not nan.passed
    both_nan = evidence.golden_check([0.1, float("nan")], [0.1, float("nan")])
    assert both_nan.passed
    assert not evidence.golden_check([], []).passed  # nothing was compared


def shadow(agreement: float, minimum: float | None) -> ShadowEvidence:
    return ShadowEvidence(
        runs=1,
        rows=100,
        agreement=agreement,
        mean_abs_diff=0.01,
        min_agreement=minimum,
        drift=None,
        comparison=None,
        labelled_rows=0,
    )


def test_decision_needs_golden_data_check_and_shadow() -> None:
    ok = evidence.GoldenCheck(rows=3, max_abs_diff=0.0)
    bad = evidence.GoldenCheck(rows=3, max_abs_diff=0.5)
    check_ok = {"success": True, "summary": "12/12 passed"}
    check_bad = {"success": False, "summary": "tenure: 3 nulls"}
    passing = evidence.decide(golden=ok, data_check=check_ok, shadow=shadow(0.97, 0.9))
    assert passing.promote
    assert len(passing.reasons) == 3
    assert passing.tags()["airmlops.deploy.decision"] == "promote"
    for golden, check, sh, why in [
        (bad, check_ok, shadow(0.97, 0.9), "golden request"),
        (ok, check_bad, shadow(0.97, 0.9), "tenure: 3 nulls"),
        (ok, check_ok, shadow(0.5, 0.9), "agreement with the champion 0.5000"),
    ]:
        d = evidence.decide(golden=golden, data_check=check, shadow=sh)
        assert not d.promote
        assert len(d.reasons) == 1
        assert why in d.reasons[0], d.reasons
        assert "failed verification" in d.message("m", "2", "dev -> prod")


def test_without_a_scored_batch_the_golden_request_decides_and_says_why() -> None:
    ok = evidence.GoldenCheck(rows=3, max_abs_diff=0.0)
    d = evidence.decide(golden=ok, data_check=None, shadow=None, batch_note="no scored batch")
    assert d.promote
    assert d.reasons[-1] == "no scored batch"
    assert d.evidence["data_check"] is None
    assert d.evidence["shadow"] is None
