"""The model card against a real MLflow server: the validate steps log it to the validation run
and link it from the version, on promotion and on rejection, and a card failure never blocks
or undoes the decision."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import mlflow
import pytest
from mlflow import MlflowClient

from airmlops_core.io import data
from airmlops_core.spec import load_spec
from airmlops_core.spec_card import Card
from airmlops_core.tracking import registry
from airmlops_core.tracking.runs import RunContext, experiment_id, experiment_name
from airmlops_core.train import flow as train_flow
from airmlops_core.validate import card_mlflow
from airmlops_core.validate import flow as validate_flow
from paths import MODELS_DIR

HOSTILE = "<script>alert(1)</script>"
CHECKED: validate_flow.Checked = {
    "success": True,
    "summary": "holdout passed its suite",
    "failures": 0,
    "warnings": 0,
}


@pytest.fixture(scope="module")
def churn_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from airmlops_dev import demo_data

    root = tmp_path_factory.mktemp("data")
    data.write_frame(demo_data.churn(), str(root / "demo" / "churn.parquet"))
    return root


@pytest.fixture
def trained(mlflow_url: str, churn_data: Path, tmp_path: Path, monkeypatch) -> dict[str, Any]:
    """A churn model (unique name, a card section) trained and registered as `challenger`."""
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(churn_data))
    monkeypatch.setenv("AIRMLOPS_WORK_URI", str(tmp_path / "work"))
    name = f"card_{secrets.token_hex(3)}"
    card = Card(intended_use=f"Retention calls {HOSTILE}", limitations=["US customers only"])
    spec = load_spec(MODELS_DIR / "customer_churn.yaml").model_copy(
        update={"name": name, "card": card}
    )
    ctx = RunContext(model=name, dag_id=f"{name}__train", run_id="manual__1", task_id="train")
    refs = train_flow.extract_step(spec, ctx)
    run = train_flow.train_step(spec, ctx, refs, tracking_uri=mlflow_url)
    evaluated = train_flow.evaluate_step(spec, ctx, refs, run, tracking_uri=mlflow_url)
    reg = train_flow.register_step(
        spec, ctx, refs, run, evaluated, tracking_uri=mlflow_url, spec_sha="s1"
    )
    return {"spec": spec, "refs": refs, "run": run, "reg": reg, "url": mlflow_url}


def validate(t: dict[str, Any], run_id: str) -> validate_flow.Gated:
    spec, url = t["spec"], t["url"]
    ctx = RunContext(model=spec.name, dag_id=f"{spec.name}__validate", run_id=run_id, task_id="g")
    resolved = validate_flow.resolve_step(spec, tracking_uri=url)
    return validate_flow.gate_step(spec, ctx, resolved, CHECKED, tracking_uri=url)


def vctx(t: dict[str, Any], run_id: str, task_id: str) -> RunContext:
    name = t["spec"].name
    return RunContext(model=name, dag_id=f"{name}__validate", run_id=run_id, task_id=task_id)


def card_text(url: str, uri: str, tmp_path: Path, suffix: str) -> str:
    target = uri.removesuffix(".html") + suffix
    return Path(mlflow.artifacts.download_artifacts(target, dst_path=str(tmp_path))).read_text()


def test_promotion_and_rejection_log_a_card_linked_from_the_version(
    trained: dict[str, Any], tmp_path: Path
) -> None:
    spec, url, refs = trained["spec"], trained["url"], trained["refs"]
    client = MlflowClient(url)
    train_run = trained["run"]["mlflow_run_id"]
    # what the parallel branch adds to the training run, with a hostile feature name
    importance = {
        "metric": "roc_auc",
        "n_repeats": 5,
        "features": [
            {"feature": HOSTILE, "importance_mean": 0.12, "importance_std": 0.01},
            {"feature": "tenure", "importance_mean": 0.04, "importance_std": 0.003},
        ],
    }
    client.log_dict(train_run, importance, card_mlflow.IMPORTANCE_ARTIFACT)
    # an earlier drift check of the model
    exp = experiment_id(client, experiment_name(spec.name))
    drift = client.create_run(
        exp,
        tags={
            "airmlops.purpose": "drift",
            "airmlops.model_version": "0",
            "airmlops.drift_status": "drift",
        },
    )
    client.log_metric(drift.info.run_id, "window.rows", 4321)

    v1 = trained["reg"]["version"]
    gated = validate(trained, "manual__v1")
    assert gated["promote"], gated["reasons"]  # no champion yet: the floors decide
    promoted = validate_flow.promote_step(
        spec, vctx(trained, "manual__v1", "promote"), gated, tracking_uri=url, approved_by="gate"
    )
    assert promoted["champion"] == v1
    validate_run = client.search_runs(
        [exp], "tags.`airmlops.purpose` = 'validate' and tags.`airmlops.run_id` = 'manual__v1'"
    )
    assert len(validate_run) == 1  # the card went to the gate's own run
    uri = f"runs:/{validate_run[0].info.run_id}/model_card/model_card.html"
    assert promoted["model_card"] == uri
    mv = client.get_model_version(spec.name, v1)
    assert mv.tags[card_mlflow.CARD_TAG] == uri
    assert card_mlflow.CARD_ERROR_TAG not in mv.tags
    assert f"Model card: {uri}" in mv.description
    assert mv.description.startswith("sklearn.linear_model.LogisticRegression trained by")

    md = card_text(url, uri, tmp_path / "v1", ".md")
    page = card_text(url, uri, tmp_path / "v1", ".html")
    assert "**Decision: PROMOTED to champion, approved by gate**" in md
    assert "Retention calls \\<script\\>" in md
    assert "US customers only" in md
    train_ref, holdout_ref = refs["train"], refs["holdout"]
    assert train_ref["sha256"] in md  # read back from the training run's inputs
    assert f"| holdout | {holdout_ref['rows']:,} | `{holdout_ref['sha256']}`" in md
    assert refs["extract"]["sha256"] in md
    roc = next(ln for ln in md.splitlines() if ln.startswith("| `roc_auc`"))
    assert f"{gated['metrics']['roc_auc']:.4g}" in roc
    assert "Challenger by `female`" in md  # fairness from gate/evidence.json
    assert "| `<script>alert(1)</script>` | 0.12 | 0.01 |" in md
    assert "None yet for version" in md
    assert "| drift | 4,321 |" in md
    assert "<script" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page

    # a second version of the same model: a tie with the champion is rejected
    ctx2 = RunContext(
        model=spec.name, dag_id=f"{spec.name}__train", run_id="manual__2", task_id="train"
    )
    v2 = train_flow.register_step(
        spec,
        ctx2,
        refs,
        trained["run"],
        {"metrics": gated["metrics"], "floor_failures": []},
        tracking_uri=url,
        spec_sha="s1",
    )["version"]
    gated2 = validate(trained, "manual__v2")
    assert not gated2["promote"]
    # the champion-versus-challenger chart is on the gate's run, and its message links it
    run2 = client.search_runs(
        [exp], "tags.`airmlops.purpose` = 'validate' and tags.`airmlops.run_id` = 'manual__v2'"
    )[0]
    plots = {a.path for a in client.list_artifacts(run2.info.run_id, "plots")}
    assert "plots/champion_vs_challenger.png" in plots
    assert gated2["chart_url"] == (
        f"{url}/#/experiments/{exp}/runs/{run2.info.run_id}"
        "/artifacts/plots/champion_vs_challenger.png"
    )
    assert f"chart: {gated2['chart_url']}" in gated2["message"]
    assert "chart_url" not in gated  # no champion to compare with: no chart
    rejected = validate_flow.reject_step(
        spec, vctx(trained, "manual__v2", "reject"), gated2, tracking_uri=url
    )
    uri2 = rejected["model_card"]
    assert uri2 is not None
    assert uri2 != uri
    assert client.get_model_version(spec.name, v2).tags[card_mlflow.CARD_TAG] == uri2
    md2 = card_text(url, uri2, tmp_path / "v2", ".md")
    assert f"**Decision: REJECTED: version {v1} stays champion**" in md2
    assert "a tie keeps the champion" in md2
    assert registry.alias_version(client, spec.name, registry.CHAMPION) == v1


def test_a_card_failure_neither_blocks_nor_undoes_a_promotion(
    mlflow_url: str, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    client = MlflowClient(mlflow_url)
    name = f"cardfail_{secrets.token_hex(3)}"
    client.create_registered_model(name)
    run = client.create_run(client.create_experiment(experiment_name(name)))
    v1 = client.create_model_version(name, f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    spec = load_spec(MODELS_DIR / "customer_churn.yaml").model_copy(update={"name": name})

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("renderer bug")

    monkeypatch.setattr(card_mlflow, "gather", broken)
    gated: validate_flow.Gated = {
        "promote": True,
        "reasons": ["floors met"],
        "tags": {"gate.decision": "promote"},
        "message": "promote",
        "challenger": str(v1.version),
        "champion": None,
        "data_sha256": "0" * 64,
        "metrics": {},
    }
    ctx = RunContext(model=name, dag_id=f"{name}__validate", run_id="manual__1", task_id="p")
    with caplog.at_level("WARNING"):
        promoted = validate_flow.promote_step(
            spec, ctx, gated, tracking_uri=mlflow_url, approved_by="gate"
        )
    assert promoted["champion"] == str(v1.version)
    assert promoted["model_card"] is None
    assert registry.alias_version(client, name, registry.CHAMPION) == str(v1.version)
    tags = client.get_model_version(name, str(v1.version)).tags
    assert tags[card_mlflow.CARD_ERROR_TAG] == "RuntimeError: renderer bug"
    assert card_mlflow.CARD_TAG not in tags
    assert tags["gate.decision"] == "promote"
    assert "model card of" in caplog.text
    assert "renderer bug" in caplog.text
    # the next run writes the card and clears the error
    monkeypatch.undo()
    uri = validate_flow.write_model_card(
        spec,
        ctx,
        gated,
        promoted=True,
        reasons=["floors met"],
        approved_by="gate",
        tracking_uri=mlflow_url,
    )
    tags = client.get_model_version(name, str(v1.version)).tags
    assert tags[card_mlflow.CARD_TAG] == uri
    assert card_mlflow.CARD_ERROR_TAG not in tags
    assert json.dumps(tags)  # plain strings only
