"""Shadow scoring end to end on a real MLflow server, through the steps the DAGs run: the gate
parks a passing challenger in the shadow, two score runs score it apart from production, and
the gate then decides with the production evidence."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from airmlops_core.io import data
from airmlops_core.score import flow as score_flow
from airmlops_core.score.results import Published
from airmlops_core.spec import ModelSpec, load_spec
from airmlops_core.stats import comparison
from airmlops_core.stats.metrics import encode_labels
from airmlops_core.tracking import registry
from airmlops_core.tracking.runs import RunContext, experiment_id, experiment_name
from airmlops_core.train import flow as train_flow
from airmlops_core.validate import flow as validate_flow
from airmlops_core.validate import shadow_evidence as ev
from paths import MODELS_DIR

D1, D2 = "2024-05-01T00:00:00+00:00", "2024-06-01T00:00:00+00:00"
CHECKED: validate_flow.Checked = {"success": True, "summary": "ok", "failures": 0, "warnings": 0}


def _spec(name: str, c: float, shadow_runs: int | None) -> ModelSpec:
    """The churn spec, lean (no rebalancing, floors or fairness), any challenger clears the
    holdout comparison (margin -0.5): the shadow evidence is what decides."""
    churn = load_spec(MODELS_DIR / "customer_churn.yaml")
    shadow = {"shadow_runs": shadow_runs} if shadow_runs else {}
    return ModelSpec.model_validate(
        {
            **churn.model_dump(by_alias=True, exclude_unset=True),
            "name": name,
            "estimator": {
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 1000, "C": c},
            },
            "rebalance": None,
            "sensitive_features": [],
            "metrics": {"primary": "roc_auc"},
            "promotion": {"margin": -0.5, "n_boot": 300, **shadow},
            "data_checks": {"suite": "include/expectations/customer_churn.yaml"},
        }
    )


def _ctx(name: str, pipeline: str, run_id: str, date: str | None = None) -> RunContext:
    return RunContext(
        model=name, dag_id=f"{name}__{pipeline}", run_id=run_id, task_id="t", logical_date=date
    )


def _train(spec: ModelSpec, run_id: str, url: str) -> str:
    c = _ctx(spec.name, "train", run_id)
    refs = train_flow.extract_step(spec, c)
    trained = train_flow.train_step(spec, c, refs, tracking_uri=url)
    evaluated = train_flow.evaluate_step(spec, c, refs, trained, tracking_uri=url)
    reg = train_flow.register_step(
        spec, c, refs, trained, evaluated, tracking_uri=url, spec_sha="s"
    )
    return reg["version"]


def _gate(spec: ModelSpec, run_id: str, url: str) -> validate_flow.Gated:
    resolved = validate_flow.resolve_step(spec, tracking_uri=url)
    return validate_flow.gate_step(
        spec, _ctx(spec.name, "validate", run_id), resolved, CHECKED, tracking_uri=url
    )


def _score(spec: ModelSpec, run_id: str, date: str, url: str) -> Published:
    c = _ctx(spec.name, "score", run_id, date)
    resolved = score_flow.resolve_step(spec, c, tracking_uri=url)
    parts = score_flow.partitions_step(spec, c)
    results = [score_flow.score_step(spec, c, p, resolved, tracking_uri=url) for p in parts]
    return score_flow.publish_step(spec, c, resolved, results, tracking_uri=url)


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    from airmlops_dev import demo_data

    churn = demo_data.churn()
    data.write_frame(churn, str(tmp_path / "data" / "demo" / "churn.parquet"))
    batch = churn.drop(columns=["churn"])
    for i, rows in enumerate((slice(0, 700), slice(700, 1500)), start=1):
        data.write_frame(batch.iloc[rows], str(tmp_path / "data" / "landing" / "x" / f"b{i}.pq"))
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIRMLOPS_WORK_URI", str(tmp_path / "work"))
    return {"root": tmp_path / "data", "churn": churn}


def test_a_challenger_shadows_two_score_runs_then_the_gate_decides_on_their_evidence(
    mlflow_url: str, env: dict[str, Any]
) -> None:
    url, root = mlflow_url, env["root"]
    name = f"shadow_{secrets.token_hex(3)}"
    (root / "landing" / "x").rename(root / "landing" / name)
    client = MlflowClient(url)

    plain = _spec(name, 1.0, None)
    v1 = _train(plain, "manual__1", url)
    first = _gate(plain, "manual__1", url)
    assert first["promote"], first["reasons"]  # no champion: nothing to shadow against
    validate_flow.promote_step(
        plain, _ctx(name, "validate", "manual__1"), first, tracking_uri=url, approved_by="gate"
    )

    spec = _spec(name, 0.02, 2)
    v2 = _train(spec, "manual__2", url)
    waiting = _gate(spec, "manual__2", url)
    assert not waiting["promote"]
    assert waiting.get("shadow_wait") is True
    assert "waiting for 2 shadow score run(s) (0 done)" in waiting["message"]
    assert registry.alias_version(client, name, registry.SHADOW) == v2
    assert registry.alias_version(client, name, registry.CHAMPION) == v1
    tags = client.get_model_version(name, v2).tags
    assert tags["gate.decision"] == "shadow"
    assert tags[ev.WAITING_TAG] == "0/2"

    # the production output of a run without shadow scoring ...
    out = root / "scored"
    baseline = _score(plain, "baseline__1", D1, url)
    assert "shadow" not in baseline
    production = _files(out / name)
    # ... is byte for byte what the same run writes while the challenger shadows it
    run1 = _score(spec, "scheduled__1", D1, url)
    assert _files(out / name) == production
    assert run1["manifest_uri"] == baseline["manifest_uri"]
    assert run1["outputs"] == baseline["outputs"]
    shadow1 = run1["shadow"]
    assert shadow1["status"] == "complete", shadow1["errors"]
    assert (shadow1["runs"], shadow1["ready"]) == (1, False)
    shadow_dir = out / "_shadow" / f"v{v2}" / name
    assert shadow1["manifest_uri"] == str(shadow_dir / "2024-05-01T00-00-00Z" / "_manifest.json")
    assert {p.name for p in (shadow_dir / "2024-05-01T00-00-00Z").iterdir()} == {
        "b1.parquet",
        "b2.parquet",
        "_manifest.json",
    }
    assert set(
        pd.read_parquet(shadow_dir / "2024-05-01T00-00-00Z" / "b1.parquet")["model_version"].astype(
            str
        )
    ) == {v2}

    run2 = _score(spec, "scheduled__2", D2, url)
    assert (run2["shadow"]["runs"], run2["shadow"]["ready"]) == (2, True)
    tags = client.get_model_version(name, v2).tags
    assert tags[ev.WAITING_TAG] == "2/2"
    assert tags[ev.HANDOFF_TAG] == f"{name}__score/scheduled__2"

    # labels land for the scored rows; the gate decides again, now with production evidence
    churn = env["churn"]
    data.write_frame(churn[["customer_id", "churn"]], str(root / "labels" / name / "l.parquet"))
    final = _gate(spec, "manual__3", url)
    evidence = json.loads(final["tags"]["gate.shadow"])
    assert evidence["runs"] == 2
    assert evidence["rows"] == 2 * 1500

    # independently: the two runs' production and shadow files, joined by hand
    champ = pd.concat(
        [
            pd.read_parquet(out / name / d / f"b{i}.parquet")
            for d in ("2024-05-01T00-00-00Z", "2024-06-01T00-00-00Z")
            for i in (1, 2)
        ],
        ignore_index=True,
    )
    chall = pd.concat(
        [
            pd.read_parquet(out / "_shadow" / f"v{v2}" / name / d / f"b{i}.parquet")
            for d in ("2024-05-01T00-00-00Z", "2024-06-01T00-00-00Z")
            for i in (1, 2)
        ],
        ignore_index=True,
    )
    assert (champ["customer_id"].to_numpy() == chall["customer_id"].to_numpy()).all()
    agree = np.mean(champ["prediction"].to_numpy() == chall["prediction"].to_numpy())
    assert evidence["agreement"] == pytest.approx(agree)
    probas = [c for c in champ.columns if c.startswith("proba_")]
    mad = np.abs(champ[probas].to_numpy() - chall[probas].to_numpy()).mean()
    assert evidence["mean_abs_diff"] == pytest.approx(mad)
    assert evidence["drift"]["status"] in {"drift", "no_drift"}

    labels = churn.set_index("customer_id")["churn"]
    y_raw = labels.loc[champ["customer_id"]].to_numpy()
    classes = sorted(churn["churn"].unique().tolist())
    direct = comparison.compare(
        encode_labels(y_raw, classes),
        champ[probas[1]].to_numpy(),
        chall[probas[1]].to_numpy(),
        "roc_auc",
        margin=-0.5,
        n_boot=300,
        level=spec.promotion.level,
        seed=spec.split.seed,
    )
    assert evidence["labelled_rows"] == 2 * 1500
    assert evidence["comparison"] == json.loads(json.dumps(direct.to_dict()))
    worse = direct.interval.high < 0
    assert final["promote"] is not worse
    assert final.get("shadow_wait") is None

    # the evidence is on the gate's MLflow run; the decision ends the wait
    exp = experiment_id(client, experiment_name(name))
    (vrun,) = client.search_runs(
        [exp], "tags.`airmlops.purpose` = 'validate' and tags.`airmlops.run_id` = 'manual__3'"
    )
    assert vrun.data.metrics["shadow.agreement"] == pytest.approx(agree)
    step = validate_flow.promote_step if final["promote"] else validate_flow.reject_step
    kw = {"approved_by": "gate"} if final["promote"] else {}
    step(spec, _ctx(name, "validate", "manual__3"), final, tracking_uri=url, **kw)
    assert registry.alias_version(client, name, registry.SHADOW) is None
    assert client.get_model_version(name, v2).tags["gate.shadow"] == final["tags"]["gate.shadow"]
    assert "shadow" not in _score(spec, "scheduled__3", "2024-07-01T00:00:00+00:00", url)
