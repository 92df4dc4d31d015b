"""`make up`'s seasonal replay report: shadow scoring evidence and the label-free estimate."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from airmlops_core import spec
from airmlops_core.stats import estimate as cbpe
from airmlops_dev import cli, demo_replay
from airmlops_dev.ports import free_ports

MODELS = Path(__file__).resolve().parents[3] / "include" / "models"


def _calibration(ece: float) -> cbpe.Calibration:
    return cbpe.Calibration(
        n=1000,
        ece=ece,
        brier=0.1,
        reliability=[],
        realised={"accuracy": 0.8, "roc_auc": 0.75, "f1": 0.4},
        estimated={},
    )


def test_the_demo_model_of_the_replay_waits_in_the_shadow() -> None:
    """The replay shows shadow evidence only when flight_delay's challenger shadows first."""
    s = spec.load_spec(MODELS / "flight_delay.yaml")
    assert s.promotion.shadow_runs == 1
    assert s.task == "binary"  # the label-free estimate is for classifiers


def test_estimate_line_shows_the_figures_of_the_estimate() -> None:
    rng = np.random.default_rng(0)
    proba = rng.uniform(0, 1, 500)
    est = cbpe.estimate(
        np.column_stack([1 - proba, proba]), _calibration(0.02), max_ece=0.05
    ).to_dict()
    # independent figure: the expected accuracy of calibrated probabilities
    expected_accuracy = float(np.mean(np.maximum(proba, 1 - proba)))
    assert est["estimated"]["accuracy"] == pytest.approx(expected_accuracy)
    line = demo_replay.estimate_line(est)
    assert line.startswith("  estimated before labels (ok, 500 rows; holdout ECE 0.020 <= 0.05)")
    assert f"accuracy {expected_accuracy:.3f} (holdout 0.800)" in line
    assert f"roc_auc {est['estimated']['roc_auc']:.3f} (holdout 0.750)" in line


def test_estimate_line_says_why_there_is_no_estimate() -> None:
    est = cbpe.estimate(np.full((10, 2), 0.5), _calibration(0.12), max_ece=0.05).to_dict()
    line = demo_replay.estimate_line(est)
    assert line.startswith("  estimated before labels: not_calibrated: ")
    assert "holdout ECE 0.12 on 1,000 rows exceeds calibration_max_ece 0.05" in line
    assert demo_replay.estimate_line(None).endswith("none (no estimate in this check)")


def test_month_report_shows_shadow_scoring_the_shadow_gate_and_the_estimate() -> None:
    score = demo_replay.ScoreSummary(
        "scored__1",
        "success",
        {"totals": {"rows_in": 20, "rows_out": 20}, "model_version": "1", "uri": "m.json"},
        {},
        shadow={
            "version": "2",
            "status": "complete",
            "manifest_uri": "/x/_shadow/v2/_manifest.json",
            "errors": [],
            "runs": 1,
            "needed": 1,
            "ready": True,
        },
    )
    report = demo_replay.MonthReport(
        12,
        score,
        "drift__1",
        checked={"status": "drift", "drifted": {}, "rows": 20, "estimate": None},
        shadow_gate=["shadow gate run v__1 (success) on v2: promote", "champion now v2"],
    )
    text = "\n".join(report.lines())
    assert (
        "    shadow: v2 scored the same partitions apart (complete; 1 of 1 shadow run(s); "
        "back to the gate) -> /x/_shadow/v2/_manifest.json"
    ) in text
    assert "  shadow gate run v__1 (success) on v2: promote\n  champion now v2" in text
    assert text.index("shadow gate run") < text.index("drift run drift__1")
    assert "estimated before labels: none" in text


def test_shadow_line_names_failed_partitions() -> None:
    line = demo_replay.shadow_line(
        {"version": "3", "status": "failed", "manifest_uri": None, "errors": ["p1: boom"]}
    )
    assert "(failed; 0 of 0 shadow run(s))" in line
    assert line.endswith("errors: p1: boom")


def test_the_replay_reads_the_batch_source_of_the_drift_check() -> None:
    """The drift check answers per source; a flat answer (the old shape) is refused by name."""
    batch = {"status": "drift", "rows": 28618, "drifted": {"month": "psi 16.2"}}
    assert demo_replay.batch_check({"batch": batch, "online": {"status": "ok"}}) == batch
    assert demo_replay.batch_check(None) == {}
    with pytest.raises(ValueError, match="without a 'batch' source: keys \\['rows', 'status'\\]"):
        demo_replay.batch_check({"status": "drift", "rows": 1})


def test_make_replay_refuses_a_stack_that_is_down_and_says_what_to_run(
    tmp_path, monkeypatch, capsys
) -> None:
    monkeypatch.setenv("AIRMLOPS_LOCAL_DIR", str(tmp_path))
    names = ("AIRFLOW", "MLFLOW", "RECEIVER", "MODEL_API")
    for name, port in zip(names, free_ports(4), strict=True):
        monkeypatch.setenv(f"AIRMLOPS_{name}_PORT", str(port))
    assert cli.cmd_replay(argparse.Namespace(again=True)) == 1
    err = capsys.readouterr().err
    assert "the local stack is not up (" in err, err
    assert "run `make up` first" in err, err
    assert not (tmp_path / "demo").exists()  # nothing landed, no report written
