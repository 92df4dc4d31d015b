"""The shadow evidence's figures against independent computations, and what they block."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airmlops_core.io import data
from airmlops_core.spec import ModelSpec
from airmlops_core.stats import comparison
from airmlops_core.validate import promotion
from airmlops_core.validate import shadow_evidence as ev


def _spec(**promotion_fields: object) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "m",
            "task": "binary",
            "target": "y",
            "row_key": "id",
            "source": {"kind": "file", "uri": "train.parquet"},
            "features": {"numeric": ["x"]},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "metrics": {"primary": "roc_auc"},
            "promotion": {"shadow_runs": 2, "n_boot": 300, **promotion_fields},
        }
    )


def test_agreement_is_the_share_of_equal_hard_predictions() -> None:
    champ = np.array(["a", "b", "a", "a", "b", "b", "a", "a", "b", "a"])
    chall = np.array(["a", "b", "b", "a", "b", "a", "a", "a", "b", "b"])
    by_hand = sum(c == d for c, d in zip(champ, chall, strict=True)) / len(champ)
    assert ev.agreement(champ, chall) == pytest.approx(by_hand) == pytest.approx(0.7)
    assert ev.agreement([1, 0, 1], ["1", "0", "0"]) == pytest.approx(2 / 3)  # 1 == "1"
    with pytest.raises(ValueError, match="non-empty"):
        ev.agreement([], [])


def test_mean_absolute_difference_of_probabilities_cell_by_cell() -> None:
    rng = np.random.default_rng(3)
    a, b = rng.random((50, 3)), rng.random((50, 3))
    by_hand = sum(abs(x - y) for x, y in zip(a.ravel(), b.ravel(), strict=True)) / a.size
    assert ev.mean_abs_difference(a, b) == pytest.approx(by_hand)
    with pytest.raises(ValueError, match="equal"):
        ev.mean_abs_difference(a, b[:10])


def test_the_production_comparison_is_stats_comparison_on_the_labelled_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path))
    rng = np.random.default_rng(7)
    n = 400
    ids = np.arange(n) + 1000
    y = rng.integers(0, 2, n)
    p_champ = np.clip(0.5 * y + 0.5 * rng.random(n), 0, 1)
    p_chall = np.clip(0.2 * y + 0.8 * rng.random(n), 0, 1)

    def out(p: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {"id": ids, "prediction": (p > 0.5).astype(int), "proba_0": 1 - p, "proba_1": p}
        )

    # labels landed for every other row, out of order, plus rows never scored
    lab = pd.DataFrame({"id": ids[::2], "y": y[::2]}).sample(frac=1, random_state=1)
    lab = pd.concat([lab, pd.DataFrame({"id": [1, 2], "y": [0, 1]})])
    spec = _spec()
    comp, labelled = ev.production_comparison(spec, [0, 1], out(p_champ), out(p_chall), lab)
    rows = np.arange(0, n, 2)
    direct = comparison.compare(
        y[rows],
        p_champ[rows],
        p_chall[rows],
        "roc_auc",
        margin=0.0,
        n_boot=300,
        level=0.95,
        seed=spec.split.seed,
    )
    assert labelled == n // 2
    assert comp is not None
    assert comp.to_dict() == direct.to_dict()
    assert comp.interval.high < 0  # the challenger is clearly worse on these rows


def test_too_few_labelled_rows_make_no_comparison(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path))
    frame = pd.DataFrame({"id": [1, 2, 3], "prediction": [0, 1, 1], "proba_1": [0.1, 0.8, 0.9]})
    labels = pd.DataFrame({"id": [1, 2], "y": [0, 1]})
    assert ev.production_comparison(_spec(), [0, 1], frame, frame, labels) == (None, 2)


def _evidence(**kw: object) -> ev.ShadowEvidence:
    base: dict[str, object] = {
        "runs": 2,
        "rows": 1000,
        "agreement": 0.97,
        "mean_abs_diff": 0.02,
        "min_agreement": 0.9,
        "drift": {"status": "no_drift", "drifted": [], "reason": ""},
        "comparison": None,
        "labelled_rows": 0,
    }
    return ev.ShadowEvidence(**{**base, **kw})  # type: ignore[arg-type]


def _decide(shadow: ev.ShadowEvidence | None) -> promotion.Decision:
    return promotion.decide(
        data_check_passed=True,
        data_check_summary="ok",
        floor_failures=[],
        segment_floor_failures=[],
        comparison=None,
        fairness=None,
        shadow=shadow,
    )


def test_low_agreement_rejects_naming_the_figure() -> None:
    decision = _decide(_evidence(agreement=0.8123))
    assert not decision.promote
    assert any("agreement with the champion 0.8123" in r for r in decision.reasons)
    assert any("shadow_min_agreement 0.9" in r for r in decision.reasons)
    assert json.loads(decision.tags()["gate.shadow"])["agreement"] == 0.8123


def test_a_worse_interval_on_production_rows_rejects_and_a_good_shadow_passes() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 300)
    good, bad = 0.6 * y + 0.4 * rng.random(300), rng.random(300)
    worse = comparison.compare(y, good, bad, "roc_auc", margin=0.0, n_boot=200)
    decision = _decide(_evidence(comparison=worse, labelled_rows=300))
    assert not decision.promote
    assert any("300 labelled production rows" in r and "worse" in r for r in decision.reasons)
    passing = _decide(_evidence())
    assert passing.promote
    assert any(
        r.startswith("shadow: 2 shadow run(s), 1,000 production rows") for r in passing.reasons
    )
    assert json.loads(passing.tags()["gate.shadow"])["passed"] is True


def test_no_paired_rows_is_no_evidence_and_rejects() -> None:
    decision = _decide(_evidence(rows=0, agreement=None, mean_abs_diff=None))
    assert not decision.promote
    assert any("no production row" in r for r in decision.reasons)


def test_a_passing_challenger_waits_and_the_wait_is_recorded() -> None:
    waiting = promotion.wait_for_shadow(_decide(None), 1, 3)
    assert not waiting.promote
    assert waiting.tags()["gate.decision"] == "shadow"
    assert "waiting for 3 shadow score run(s) (1 done)" in waiting.reasons[-1]
    assert "shadow of the champion" in waiting.message("m", "4")
    with pytest.raises(ValueError, match="passing"):
        promotion.wait_for_shadow(_decide(_evidence(agreement=0.1)), 0, 2)


def test_paired_outputs_align_by_partition_and_leave_out_mismatched_rows(tmp_path: Path) -> None:
    spec = _spec()

    def part(root: Path, name: str, ids: list[int], pred: list[int]) -> dict[str, object]:
        uri = str(root / f"{name}.parquet")
        frame = pd.DataFrame({"id": ids, "prediction": pred, "proba_1": [p / 2 for p in pred]})
        data.write_frame(frame, uri)
        return {"partition": name, "status": "scored", "output_uri": uri}

    prod, shadow = tmp_path / "prod", tmp_path / "shadow"
    manifests = {}
    for label, root, parts in (
        ("prod", prod, [part(prod, "a", [1, 2], [0, 1]), part(prod, "b", [3, 4], [1, 1])]),
        ("shadow", shadow, [part(shadow, "a", [1, 2], [1, 1]), part(shadow, "b", [4, 3], [1, 1])]),
    ):
        manifests[label] = str(root / "_manifest.json")
        Path(manifests[label]).write_text(json.dumps({"partitions": parts}))
    run: ev.ShadowRun = {
        "run_id": "r1",
        "manifest_uri": manifests["prod"],
        "shadow_manifest_uri": manifests["shadow"],
    }
    champ, chall, skipped = ev.paired_outputs(spec, [run])
    assert champ["id"].tolist() == chall["id"].tolist() == [1, 2]
    assert ev.agreement(champ["prediction"], chall["prediction"]) == 0.5
    assert len(skipped) == 1
    assert skipped[0].startswith("b (run r1)")


def test_shadow_fields_are_range_checked_in_the_spec() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="shadow_runs"):
        _spec(shadow_runs=0)
    with pytest.raises(ValidationError, match="shadow_min_agreement"):
        _spec(shadow_min_agreement=1.5)
    with pytest.raises(ValidationError, match="applies with shadow_runs only"):
        _spec(shadow_runs=None, shadow_min_agreement=0.9)
    assert _spec(shadow_min_agreement=0.95).promotion.shadow_runs == 2
