"""`estimator.search`: the same best candidate as scikit-learn's own search, one MLflow child
run per candidate evaluated (no duplicates on retry), and a time budget that holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from sklearn.experimental import enable_halving_search_cv  # noqa: F401
from sklearn.model_selection import (
    GridSearchCV,
    HalvingGridSearchCV,
    KFold,
    StratifiedKFold,
    cross_val_score,
)

from airmlops_core import cli
from airmlops_core.errors import EstimatorError
from airmlops_core.io import data
from airmlops_core.spec import ModelSpec
from airmlops_core.tracking import registry
from airmlops_core.tracking.runs import RunContext
from airmlops_core.train import estimator as training
from airmlops_core.train import flow as train_flow
from airmlops_core.train import generalization, search
from paths import PROJECT_DIR
from score_helpers import mlflow_sklearn_load

SEED = 7


def _spec(
    estimator: str,
    space: dict[str, list[Any]],
    *,
    task: str = "binary",
    primary: str = "roc_auc",
    name: str = "toy",
    params: dict[str, Any] | None = None,
    **options: Any,
) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": name,
            "task": task,
            "source": {"kind": "file", "uri": "toy/toy.parquet"},
            "target": "y",
            "features": {"numeric": ["x1", "x2", "noise"], "categorical": ["colour"]},
            "estimator": {
                "class": estimator,
                "params": params or {},
                "search": {"space": space, **options},
            },
            "split": {"seed": SEED, "test_size": 0.25},
            "metrics": {"primary": primary},
        }
    )


def _frame(n: int, seed: int, *, regression: bool = False) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    signal = 1.5 * x1 - x2 + rng.normal(scale=1.5, size=n)
    return pd.DataFrame(
        {
            "x1": x1,
            "x2": x2,
            "noise": rng.normal(size=n),
            "colour": rng.choice(["red", "blue", "green"], size=n),
            "y": signal if regression else np.where(signal > 0.3, "yes", "no"),
        }
    )


LOGIT = "sklearn.linear_model.LogisticRegression"
LOGIT_SPACE = {"C": [0.001, 0.01, 1.0], "class_weight": [None, "balanced"]}


def _sklearn_grid(spec: ModelSpec, train: pd.DataFrame, scoring: str, cv: Any) -> GridSearchCV:
    """scikit-learn's own GridSearchCV on the same pipeline, rows, folds and metric."""
    grid = {f"model__{k}": v for k, v in spec.estimator.search.space.items()}  # type: ignore[union-attr]
    gs = GridSearchCV(training.build_pipeline(spec), grid, cv=cv, scoring=scoring)
    return gs.fit(training.feature_frame(spec, train), train[spec.target])


def test_grid_finds_what_sklearn_grid_search_cv_finds() -> None:
    spec = _spec(LOGIT, LOGIT_SPACE, cv=3)
    train = _frame(300, 1)
    found = search.run_search(spec, train)
    want = _sklearn_grid(
        spec, train, "roc_auc", StratifiedKFold(3, shuffle=True, random_state=SEED)
    )
    assert {f"model__{k}": v for k, v in found.best.params.items()} == want.best_params_
    assert [c.params for c in found.candidates] == [
        {k.removeprefix("model__"): v for k, v in p.items()} for p in want.cv_results_["params"]
    ]
    np.testing.assert_allclose(
        [c.mean for c in found.candidates], want.cv_results_["mean_test_score"], atol=1e-12
    )
    np.testing.assert_allclose(
        [c.std for c in found.candidates], want.cv_results_["std_test_score"], atol=1e-12
    )
    assert found.best.mean == pytest.approx(want.best_score_, abs=1e-12)
    assert found.skipped == 0
    assert found.total == 6
    # the refitted model is the best candidate's, fitted on every training row
    assert found.model.named_steps["model"].get_params()["C"] == want.best_params_["model__C"]
    assert hasattr(found.model.named_steps["model"], "coef_")


def test_a_lower_is_better_metric_picks_the_smallest() -> None:
    spec = _spec(
        "sklearn.linear_model.Ridge",
        {"alpha": [0.01, 30.0, 3000.0]},
        task="regression",
        primary="rmse",
        cv=4,
    )
    train = _frame(200, 2, regression=True)
    found = search.run_search(spec, train)
    want = _sklearn_grid(
        spec, train, "neg_root_mean_squared_error", KFold(4, shuffle=True, random_state=SEED)
    )
    assert found.best.params == {"alpha": want.best_params_["model__alpha"]}
    np.testing.assert_allclose(
        [c.mean for c in found.candidates], -want.cv_results_["mean_test_score"], atol=1e-9
    )


def test_halving_finds_what_sklearn_halving_grid_search_cv_finds() -> None:
    space = {"C": [0.0005, 0.002, 0.01, 0.1, 1.0, 10.0]}
    spec = _spec(LOGIT, space, method="halving", cv=3)
    train = _frame(600, 3)
    found = search.run_search(spec, train)
    hs = HalvingGridSearchCV(
        training.build_pipeline(spec),
        {"model__C": space["C"]},
        factor=3,
        cv=StratifiedKFold(3, shuffle=True, random_state=SEED),
        scoring="roc_auc",
        random_state=SEED,
    ).fit(training.feature_frame(spec, train), train["y"])
    assert found.best.params == {"C": hs.best_params_["model__C"]}
    assert len(found.candidates) == 6  # every candidate ran in the first round
    assert max(c.round for c in found.candidates) == hs.n_iterations_ - 1


def test_an_unknown_parameter_is_named_before_anything_fits() -> None:
    spec = _spec(LOGIT, {"C": [1.0], "max_depth": [2, 3]})
    problem = r"estimator\.search\.space\.max_depth: .* no parameter 'max_depth'.*\['C'"
    with pytest.raises(EstimatorError, match=problem):
        search.run_search(spec, _frame(60, 4))


def test_an_invalid_value_names_the_candidate() -> None:
    spec = _spec(LOGIT, {"C": [1.0, -1.0]})
    with pytest.raises(EstimatorError, match=r"candidate \{'C': -1.0\}"):
        search.run_search(spec, _frame(60, 4))


# --- against a real MLflow server ---------------------------------------------------------


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    data.write_frame(_frame(240, 5), str(tmp_path / "data" / "toy" / "toy.parquet"))
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("AIRMLOPS_WORK_URI", str(tmp_path / "work"))
    return tmp_path


def _ctx(model: str, run_id: str, try_number: int = 1) -> RunContext:
    return RunContext(
        model=model,
        dag_id=f"{model}__train",
        run_id=run_id,
        task_id="train",
        try_number=try_number,
    )


def _children(client: MlflowClient, parent: str) -> dict[str, str]:
    """Candidate index -> child run id, for the active child runs of `parent`."""
    runs = search.candidate_runs(client, parent)
    assert all(len(v) == 1 for v in runs.values())  # no duplicates
    return {str(i): v[0].info.run_id for i, v in sorted(runs.items())}


def _register(spec: ModelSpec, c: RunContext, refs: Any, trained: Any, url: str) -> Any:
    evaluated: train_flow.Evaluated = {"metrics": {}, "floor_failures": []}
    return train_flow.register_step(
        spec, c, refs, trained, evaluated, tracking_uri=url, spec_sha="s"
    )


def test_candidates_are_child_runs_and_a_retry_duplicates_none(env, mlflow_url: str) -> None:
    spec = _spec(LOGIT, LOGIT_SPACE, name="toy_search", cv=2)
    c = _ctx(spec.name, "manual__s1")
    refs = train_flow.extract_step(spec, c)
    first = train_flow.train_step(spec, c, refs, tracking_uri=mlflow_url)
    client = MlflowClient(mlflow_url)
    parent = first["mlflow_run_id"]
    children = _children(client, parent)
    assert sorted(children, key=int) == [str(i) for i in range(6)]

    retried = train_flow.train_step(
        spec, _ctx(spec.name, "manual__s1", try_number=2), refs, tracking_uri=mlflow_url
    )
    assert retried["mlflow_run_id"] == parent
    assert _children(client, parent) == children  # the same six runs, reused

    run = client.get_run(parent)
    table = json.loads(
        Path(client.download_artifacts(parent, search.SEARCH_ARTIFACT, str(env))).read_text()
    )
    best = table["rows"][table["best_index"]]
    assert json.loads(run.data.params["best_params"]) == best["params"] == table["best_params"]
    assert run.data.metrics["search_best_score"] == pytest.approx(best["mean"])
    assert run.data.metrics["search_skipped_candidates"] == 0
    assert best["mean"] == max(r["mean"] for r in table["rows"])
    for row in table["rows"]:
        child = client.get_run(children[str(row["index"])])
        assert child.data.tags["mlflow.parentRunId"] == parent
        assert child.data.tags["airmlops.purpose"] == "search_candidate"
        assert child.data.params["C"] == json.dumps(row["params"]["C"])
        assert child.data.metrics["cv_roc_auc_mean"] == pytest.approx(row["mean"])
        assert child.data.metrics["cv_roc_auc_std"] == pytest.approx(row["std"])
        assert child.info.status == "FINISHED"

    reg = _register(spec, c, refs, retried, mlflow_url)
    model = mlflow_sklearn_load(f"models:/{spec.name}/{reg['version']}")
    assert model.named_steps["model"].C == best["params"]["C"]
    assert model.named_steps["model"].class_weight == best["params"]["class_weight"]


def test_a_retry_that_evaluated_fewer_candidates_leaves_only_its_own_and_no_twin(
    env, mlflow_url: str
) -> None:
    spec = _spec(LOGIT, {"C": [0.01, 0.1, 1.0]}, name="toy_fewer", cv=2)
    c = _ctx(spec.name, "manual__f1")
    refs = train_flow.extract_step(spec, c)
    trained = train_flow.train_step(spec, c, refs, tracking_uri=mlflow_url)
    client = MlflowClient(mlflow_url)
    parent = trained["mlflow_run_id"]
    before = _children(client, parent)
    assert len(before) == 3
    found = search.run_search(spec, data.read_ref(data.DataRef.from_dict(refs["train"])))
    found.candidates = found.candidates[:2]  # as if the budget had run out sooner
    found.best_index = found.candidates[0].index
    twin_tags = {"mlflow.parentRunId": parent, search.CANDIDATE_TAG: "0"}  # a lost response's twin
    client.create_run(client.get_run(parent).info.experiment_id, tags=twin_tags)
    search.log_search(client, parent, _ctx(spec.name, "manual__f1", try_number=2), found)
    assert _children(client, parent) == {k: before[k] for k in ("0", "1")}
    assert client.get_run(parent).data.metrics["search_skipped_candidates"] == 1


def test_the_budget_stops_a_slow_search_and_the_best_tried_is_registered(
    env, mlflow_url: str
) -> None:
    delay, cv, budget = 0.25, 2, 1.6  # each candidate: two fits of at least 0.25 s each
    space = {"C": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0]}
    spec = _spec(
        "slow_estimators.SlowClassifier",
        space,
        name="toy_budget",
        params={"delay": delay},
        cv=cv,
        budget_seconds=budget,
    )
    c = _ctx(spec.name, "manual__b1")
    refs = train_flow.extract_step(spec, c)
    trained = train_flow.train_step(spec, c, refs, tracking_uri=mlflow_url)

    client = MlflowClient(mlflow_url)
    parent = trained["mlflow_run_id"]
    table = json.loads(
        Path(client.download_artifacts(parent, search.SEARCH_ARTIFACT, str(env))).read_text()
    )
    tried = table["rows"]
    slowest = max(r["seconds"] for r in tried)
    assert 2 <= len(tried) < 12  # the whole grid takes at least 12 * 0.5 s
    assert all(r["seconds"] >= cv * delay for r in tried)
    assert table["seconds"] <= budget + slowest + 0.1  # at most one candidate over
    assert table["seconds"] >= budget  # and it did use its budget
    run = client.get_run(parent)
    assert run.data.metrics["search_skipped_candidates"] == 12 - len(tried) == table["skipped"]
    assert run.data.metrics["search_evaluated_candidates"] == len(tried)
    assert len(_children(client, parent)) == len(tried)

    best = max(tried, key=lambda r: r["mean"])  # the best of those tried, first on ties
    assert table["best_params"] == best["params"]
    reg = _register(spec, c, refs, trained, mlflow_url)
    version = client.get_model_version(spec.name, reg["version"])
    assert version.run_id == parent
    assert registry.alias_version(client, spec.name, "challenger") == reg["version"]
    assert json.loads(client.get_run(version.run_id).data.params["best_params"]) == best["params"]


def test_validate_deep_names_a_search_key_the_estimator_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    raw = yaml.safe_load((PROJECT_DIR / "include" / "models" / "customer_churn.yaml").read_text())
    raw["estimator"]["search"] = {"space": {"max_dept": [2, 3]}}  # a typo of max_depth
    path = tmp_path / "customer_churn.yaml"
    path.write_text(yaml.safe_dump(raw))
    assert cli.main(["validate", str(path)]) == 0  # the schema cannot know the class's params
    capsys.readouterr()
    assert cli.main(["validate", "--deep", str(path)]) == 1
    err = capsys.readouterr().err
    assert f"{path}: estimator.search.space.max_dept: " in err
    assert "has no parameter 'max_dept'" in err


def test_the_gates_k_fold_estimate_refits_the_chosen_params_not_the_specs() -> None:
    spec = _spec(LOGIT, {"C": [0.0005, 1.0]}, cv=2)
    spec = spec.model_copy(update={"promotion": spec.promotion.model_copy(update={"cv_folds": 3})})
    train = _frame(300, 6)
    chosen = training.fit(spec, train, params={"model__C": 0.0005})  # as if the search chose it
    assert search.chosen_params(spec, chosen) == {"model__C": 0.0005}
    check = generalization.overfit_check(spec, chosen, train, {"roc_auc": 0.5})
    assert check.cv is not None
    X, y = training.feature_frame(spec, train), train["y"]
    folds = StratifiedKFold(3, shuffle=True, random_state=SEED)
    pipeline = training.build_pipeline(spec)
    want = cross_val_score(pipeline.set_params(model__C=0.0005), X, y, cv=folds, scoring="roc_auc")
    np.testing.assert_allclose(check.cv.values, want, atol=1e-12)
    default = cross_val_score(training.build_pipeline(spec), X, y, cv=folds, scoring="roc_auc")
    assert not np.allclose(default, want)  # the spec's own C would give other numbers
