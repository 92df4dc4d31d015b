"""The gate's overfitting check against a real MLflow server: train a version through the train
steps, then resolve, check and gate it, and read the evidence back from MLflow."""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from mlflow import MlflowClient
from sklearn import metrics as skm
from sklearn.model_selection import StratifiedKFold, cross_val_score

from airmlops_core.io import data
from airmlops_core.spec import ModelSpec, load_spec
from airmlops_core.tracking import model_metrics
from airmlops_core.tracking.runs import RunContext
from airmlops_core.train import estimator as training
from airmlops_core.train import flow as train_flow
from airmlops_core.train import importance
from airmlops_core.validate import flow
from airmlops_dev import demo_data
from paths import MODELS_DIR


def _spec(name: str) -> ModelSpec:
    """The churn spec as a deep decision tree (it memorises its training rows), no floors."""
    churn = load_spec(MODELS_DIR / "customer_churn.yaml")
    return ModelSpec.model_validate(
        {
            **churn.model_dump(by_alias=True, exclude_unset=True),
            "name": name,
            "estimator": {"class": "sklearn.tree.DecisionTreeClassifier", "params": {}},
            "rebalance": None,
            "metrics": {"primary": "roc_auc"},
            "promotion": {"max_overfit_gap": 0.05, "cv_folds": 3},
            "data_checks": {"suite": "include/expectations/customer_churn.yaml"},
        }
    )


def _ctx(name: str, pipeline: str) -> RunContext:
    return RunContext(model=name, dag_id=f"{name}__{pipeline}", run_id="manual__1", task_id="t")


def test_an_overfitting_challenger_is_rejected_with_its_gap_and_cv_as_evidence(
    mlflow_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data.write_frame(demo_data.churn(), str(tmp_path / "data" / "demo" / "churn.parquet"))
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path / "data"))
    name = f"overfit_{secrets.token_hex(3)}"
    spec = _spec(name)
    c = _ctx(name, "train")
    refs = train_flow.extract_step(spec, c, work_uri=str(tmp_path / "work"))
    trained = train_flow.train_step(spec, c, refs, tracking_uri=mlflow_url)
    evaluated = train_flow.evaluate_step(spec, c, refs, trained, tracking_uri=mlflow_url)
    reg = train_flow.register_step(
        spec, c, refs, trained, evaluated, tracking_uri=mlflow_url, spec_sha="s"
    )
    client = MlflowClient(mlflow_url)

    # the permutation importance table travels with the version's run
    table = importance.read_importance(client, trained["mlflow_run_id"])
    assert table is not None
    assert sorted(table) == sorted(spec.features.all)
    arts = {a.path for a in client.list_artifacts(trained["mlflow_run_id"], "plots")}
    assert "plots/permutation_importance.png" in arts

    v = _ctx(name, "validate")
    resolved = flow.resolve_step(spec, tracking_uri=mlflow_url)
    assert resolved["train"]["uri"] == refs["train"]["uri"]
    checked = flow.check_holdout_step(spec, v, resolved, tracking_uri=mlflow_url)
    gated = flow.gate_step(spec, v, resolved, checked, tracking_uri=mlflow_url)
    assert not gated["promote"]
    reason = next(r for r in gated["reasons"] if r.startswith("overfit:"))
    assert "exceeds max_overfit_gap 0.05" in reason
    assert "3-fold CV roc_auc" in reason

    # independent: scikit-learn on the frozen files, with the registered model
    train = data.read_ref(data.DataRef.from_dict(refs["train"]))
    holdout = data.read_ref(data.DataRef.from_dict(refs["holdout"]))
    model = flow._estimator(client, name, reg["version"])
    yes = model.classes_[1]

    def auc(frame) -> float:
        proba = model.predict_proba(training.feature_frame(spec, frame))[:, 1]
        return skm.roc_auc_score(frame["churn"] == yes, proba)

    want_gap = auc(train) - auc(holdout)
    assert want_gap > 0.2
    folds = cross_val_score(
        training.build_pipeline(spec),
        training.feature_frame(spec, train),
        train["churn"],
        cv=StratifiedKFold(n_splits=3, shuffle=True, random_state=spec.split.seed),
        scoring="roc_auc",
    )
    run = client.search_runs(
        [client.get_experiment_by_name(f"airmlops/{name}").experiment_id],
        "tags.`airmlops.purpose` = 'validate'",
    )[0]
    assert run.data.metrics["overfit_gap"] == pytest.approx(want_gap, abs=1e-9)
    assert run.data.metrics["cv_roc_auc_mean"] == pytest.approx(folds.mean(), abs=1e-9)
    assert run.data.metrics["cv_roc_auc_std"] == pytest.approx(folds.std(ddof=1), abs=1e-9)

    # MLflow 3: the evaluation and the gate's numbers are on the challenger's logged model,
    # linked to the frozen holdout they were measured on; the validate run uses the model
    assert model_metrics.version_model_id(client, name, reg["version"]) == trained["model_id"]
    logged = {m.key: m for m in client.get_logged_model(trained["model_id"]).metrics or []}
    holdout_digest = refs["holdout"]["sha256"][:16]
    for key, want in (
        ("holdout_roc_auc", auc(holdout)),
        ("challenger_roc_auc", auc(holdout)),
        ("overfit_gap", want_gap),
    ):
        assert logged[key].value == pytest.approx(want, abs=1e-9), key
        assert (logged[key].dataset_name, logged[key].dataset_digest) == (
            f"{name}-holdout",
            holdout_digest,
        )
    assert logged["challenger_roc_auc"].run_id == run.info.run_id
    used = client.get_run(run.info.run_id).inputs.model_inputs
    assert [m.model_id for m in used] == [trained["model_id"]]

    flow.reject_step(spec, v, gated, tracking_uri=mlflow_url)
    tag = json.loads(client.get_model_version(name, reg["version"]).tags["gate.overfit"])
    assert tag["gap"] == pytest.approx(want_gap, abs=1e-9)
    assert tag["max_gap"] == 0.05
    assert tag["cv"]["mean"] == pytest.approx(folds.mean(), abs=1e-9)

    # a version without the frozen training split tag: the gap is unknown, and under a limit
    # the gate fails closed
    client.delete_model_version_tag(name, reg["version"], "airmlops.train_uri")
    no_cv = spec.model_copy(
        update={"promotion": spec.promotion.model_copy(update={"cv_folds": None})}
    )
    resolved = flow.resolve_step(no_cv, tracking_uri=mlflow_url)
    assert "train" not in resolved
    gated = flow.gate_step(no_cv, v, resolved, checked, tracking_uri=mlflow_url)
    assert not gated["promote"]
    assert any("gap of roc_auc is unknown" in r and "train_uri" in r for r in gated["reasons"])
