"""Hyperparameter search over the spec's pipeline (`estimator.search`), and its MLflow record.

Names in `search.space` are the estimator's own parameter names, as in `estimator.params`; they
address the pipeline's final step, which build_pipeline names `model` (`C` becomes `model__C`).
They are checked against the pipeline's `get_params()` before anything is fitted.

`grid` scores the candidates one at a time, in ParameterGrid order (the order GridSearchCV
uses), with `cross_val_score` on the same folds: `cv`-fold, shuffled with `split.seed`,
stratified on the target for classifiers. With `budget_seconds`, no candidate starts once the
budget has passed (the search overruns it by at most one candidate); the skipped ones are
counted. `halving` is scikit-learn's HalvingGridSearchCV (factor 3, training rows as the
resource, the same folds and scorer) and has no time budget. Either way the best candidate
(ties: the first in grid order) is refitted on the whole training split.

Each candidate evaluated is an MLflow child run of the training run, keyed by the tag
`airmlops.search_candidate=<index>`: a retried task finds and reuses its children (and deletes
any a previous try evaluated that this one did not), so there are never duplicates.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.model_selection import KFold, ParameterGrid, StratifiedKFold, cross_val_score

from airmlops_core.errors import EstimatorError
from airmlops_core.spec import LOWER_IS_BETTER, ModelSpec
from airmlops_core.spec_estimator import Search
from airmlops_core.tracking.runs import TAG_PREFIX, RunContext
from airmlops_core.train import estimator as training
from airmlops_core.train import evaluation

log = logging.getLogger(__name__)

STEP = "model"  # the name build_pipeline gives the estimator step
SEARCH_ARTIFACT = "search/summary.json"
CANDIDATE_TAG = f"{TAG_PREFIX}search_candidate"
CANDIDATE_PURPOSE = "search_candidate"
PARENT_TAG = "mlflow.parentRunId"
HALVING_FACTOR = 3


def search_of(spec: ModelSpec) -> Search:
    """The spec's `estimator.search` section.

    Raises:
        ValueError: the spec has none.
    """
    if spec.estimator.search is None:
        raise ValueError(f"{spec.name}: estimator.search is not set")
    return spec.estimator.search


def scoring_metric(spec: ModelSpec) -> str:
    """The metric candidates are ranked on: `search.scoring`, else `metrics.primary`."""
    return search_of(spec).scoring or spec.metrics.primary


def pipeline_space(search: Search) -> dict[str, list[Any]]:
    """`search.space` with the pipeline's names: `C` -> `model__C`."""
    return {f"{STEP}__{k}": list(v) for k, v in search.space.items()}


def chosen_params(spec: ModelSpec, model: Any) -> dict[str, Any] | None:
    """The searched parameters of a fitted pipeline (pipeline names, `model__C`), to refit it
    the way it was chosen; None when the spec has no search."""
    if spec.estimator.search is None or not hasattr(model, "get_params"):
        return None
    own = model.get_params(deep=True)
    return {k: own[k] for k in pipeline_space(spec.estimator.search) if k in own}


def check_space(spec: ModelSpec, pipeline: Any) -> None:
    """Every name in `search.space` is a parameter of the pipeline's estimator step.

    Raises:
        EstimatorError: naming the first unknown key and the estimator's parameters.
    """
    known = pipeline.get_params(deep=True)
    for name in search_of(spec).space:
        if f"{STEP}__{name}" not in known:
            own = sorted(pipeline.named_steps[STEP].get_params(deep=False))
            raise EstimatorError(
                f"estimator.search.space.{name}: {spec.estimator.class_path} has no "
                f"parameter '{name}'; its parameters are {own}"
            )


def folds(spec: ModelSpec, n_splits: int) -> KFold | StratifiedKFold:
    """Shuffled k-fold (stratified for classifiers), seeded with `split.seed`."""
    kind = StratifiedKFold if spec.is_classifier else KFold
    return kind(n_splits=n_splits, shuffle=True, random_state=spec.split.seed)


def scorer(spec: ModelSpec, metric: str) -> Callable[[Any, pd.DataFrame, Any], float]:
    """A scikit-learn scorer (greater is better) of the pack's own `metric`: the same number
    evaluate() reports, negated for lower-is-better metrics."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0

    def score(estimator: Any, X: pd.DataFrame, y: Any) -> float:
        return sign * evaluation.evaluate_xy(spec, estimator, X, y)[metric]

    return score


@dataclass(frozen=True)
class Candidate:
    """One parameter combination and its cross-validated metric (halving: at the last round
    it reached, on `n_resources` training rows)."""

    index: int  # position in ParameterGrid order
    params: dict[str, Any]  # the spec's plain names
    scores: list[float]  # the metric on each held-out fold
    seconds: float
    round: int = 0
    n_resources: int | None = None

    @property
    def mean(self) -> float:
        return float(np.mean(self.scores))

    @property
    def std(self) -> float:
        """Population standard deviation across folds (ddof=0, as GridSearchCV reports)."""
        return float(np.std(self.scores))

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "params": self.params,
            "mean": self.mean,
            "std": self.std,
            "scores": self.scores,
            "seconds": round(self.seconds, 3),
            "round": self.round,
            "n_resources": self.n_resources,
        }


@dataclass
class SearchResult:
    """What a search tried and found; `model` is the best candidate refitted on all rows."""

    method: str
    metric: str
    cv: int
    budget_seconds: float | None
    total: int  # candidates in the space
    candidates: list[Candidate]
    best_index: int
    seconds: float
    model: Any = field(default=None, repr=False)

    @property
    def best(self) -> Candidate:
        return next(c for c in self.candidates if c.index == self.best_index)

    @property
    def skipped(self) -> int:
        """Candidates never started (the time budget ran out)."""
        return self.total - len(self.candidates)

    def summary(self) -> dict[str, Any]:
        """The JSON table logged as SEARCH_ARTIFACT."""
        return {
            "method": self.method,
            "metric": self.metric,
            "cv": self.cv,
            "budget_seconds": self.budget_seconds,
            "candidates": self.total,
            "evaluated": len(self.candidates),
            "skipped": self.skipped,
            "seconds": round(self.seconds, 3),
            "best_index": self.best_index,
            "best_params": self.best.params,
            "best_score": self.best.mean,
            "columns": ["index", "params", "mean", "std", "scores", "seconds", "round"],
            "rows": [c.to_dict() for c in self.candidates],
        }


def _best(candidates: list[Candidate], metric: str) -> int:
    """The index of the best mean (first in grid order on ties), as GridSearchCV ranks."""
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    finite = [c for c in candidates if math.isfinite(c.mean)]
    if not finite:
        raise EstimatorError(f"estimator.search: no candidate has a finite {metric}")
    return max(finite, key=lambda c: sign * c.mean).index


def _grid(
    spec: ModelSpec,
    pipeline: Any,
    X: pd.DataFrame,
    y: Any,
    clock: Callable[[], float],
) -> list[Candidate]:
    search = search_of(spec)
    metric = scoring_metric(spec)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    start = clock()
    out: list[Candidate] = []
    for index, params in enumerate(ParameterGrid(search.space)):
        elapsed = clock() - start
        if search.budget_seconds is not None and elapsed >= search.budget_seconds:
            log.warning(
                "search budget of %gs used after %d of %d candidates: the rest are skipped",
                search.budget_seconds,
                index,
                search.candidates,
            )
            break
        began = clock()
        model = clone(pipeline).set_params(**{f"{STEP}__{k}": v for k, v in params.items()})
        try:
            signed = cross_val_score(
                model, X, y, cv=folds(spec, search.cv), scoring=scorer(spec, metric)
            )
        except ValueError as exc:  # an invalid value for the estimator
            raise EstimatorError(f"estimator.search: candidate {params} failed: {exc}") from exc
        scores = [float(sign * s) for s in signed]
        out.append(Candidate(index, dict(params), scores, clock() - began))
        log.info("candidate %d %s: %s %.4f", index, params, metric, out[-1].mean)
    return out


def _halving(
    spec: ModelSpec, pipeline: Any, X: pd.DataFrame, y: Any
) -> tuple[list[Candidate], int]:
    from sklearn.experimental import enable_halving_search_cv  # noqa: F401
    from sklearn.model_selection import HalvingGridSearchCV

    search = search_of(spec)
    metric = scoring_metric(spec)
    sign = -1.0 if metric in LOWER_IS_BETTER else 1.0
    grid = list(ParameterGrid(search.space))
    hs = HalvingGridSearchCV(
        pipeline,
        pipeline_space(search),
        factor=HALVING_FACTOR,
        cv=folds(spec, search.cv),
        scoring=scorer(spec, metric),
        refit=False,
        random_state=spec.split.seed,
        error_score="raise",
    )
    try:
        hs.fit(X, y)
    except ValueError as exc:
        raise EstimatorError(f"estimator.search: halving search failed: {exc}") from exc
    res = hs.cv_results_
    out: list[Candidate] = []
    for index, params in enumerate(grid):
        named = {f"{STEP}__{k}": v for k, v in params.items()}
        rows = [i for i, p in enumerate(res["params"]) if p == named]
        last = max(rows, key=lambda i: int(res["iter"][i]))
        seconds = sum(
            float(res["mean_fit_time"][i] + res["mean_score_time"][i]) * search.cv for i in rows
        )
        scores = [float(sign * res[f"split{k}_test_score"][last]) for k in range(search.cv)]
        out.append(
            Candidate(
                index,
                dict(params),
                scores,
                seconds,
                round=int(res["iter"][last]),
                n_resources=int(res["n_resources"][last]),
            )
        )
    # HalvingGridSearchCV picks the best among the candidates of its last round
    best = _plain(res["params"][hs.best_index_])
    return out, next(i for i, p in enumerate(grid) if p == best)


def _plain(named: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix(f"{STEP}__"): v for k, v in named.items()}


def run_search(
    spec: ModelSpec, train: pd.DataFrame, *, clock: Callable[[], float] = time.monotonic
) -> SearchResult:
    """Search the spec's space on the training rows and refit the best candidate on all of them.

    Raises:
        EstimatorError: a key of the space the estimator does not have, or a candidate the
            estimator refuses.
    """
    search = search_of(spec)
    metric = scoring_metric(spec)
    pipeline = training.build_pipeline(spec)
    check_space(spec, pipeline)
    X = training.feature_frame(spec, train)
    y = train[spec.target]
    began = clock()
    if search.method == "grid":
        candidates = _grid(spec, pipeline, X, y, clock)
        best_index = _best(candidates, metric)
    else:
        candidates, best_index = _halving(spec, pipeline, X, y)
    seconds = clock() - began
    best = next(c for c in candidates if c.index == best_index)
    log.info(
        "search: %d of %d candidates in %.1fs; best %s %s %.4f",
        len(candidates),
        search.candidates,
        seconds,
        best.params,
        metric,
        best.mean,
    )
    model = training.fit(spec, train, params={f"{STEP}__{k}": v for k, v in best.params.items()})
    return SearchResult(
        method=search.method,
        metric=metric,
        cv=search.cv,
        budget_seconds=search.budget_seconds,
        total=search.candidates,
        candidates=candidates,
        best_index=best_index,
        seconds=seconds,
        model=model,
    )


def _param_value(value: Any) -> str:
    return (value if isinstance(value, str) else json.dumps(value, default=str))[:6000]


def candidate_runs(client: Any, parent_run_id: str) -> dict[int, list[Any]]:
    """The active child runs of `parent_run_id` made for search candidates, by candidate index,
    earliest first."""
    from mlflow.entities import ViewType

    parent = client.get_run(parent_run_id)
    runs = client.search_runs(
        [parent.info.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'",
        run_view_type=ViewType.ACTIVE_ONLY,
        order_by=["attributes.start_time ASC"],
        max_results=5000,
    )
    out: dict[int, list[Any]] = {}
    for run in runs:
        index = run.data.tags.get(CANDIDATE_TAG)
        if index is not None and index.isdigit():
            out.setdefault(int(index), []).append(run)
    return out


def log_search(client: Any, parent_run_id: str, ctx: RunContext, result: SearchResult) -> None:
    """One child run per evaluated candidate (params, mean/std and per-fold metric), the best
    params and the summary on the parent run; idempotent per parent run."""
    from mlflow.entities import Metric, Param, RunTag

    parent = client.get_run(parent_run_id)
    existing = candidate_runs(client, parent_run_id)
    evaluated = {c.index for c in result.candidates}
    for index, runs in existing.items():  # twins, and children of a previous try's candidates
        for run in runs[0 if index not in evaluated else 1 :]:
            client.delete_run(run.info.run_id)
    now = int(time.time() * 1000)
    m = result.metric
    for c in result.candidates:
        if c.index in existing:
            child = existing[c.index][0].info.run_id
        else:
            tags = {
                **ctx.tags(),
                f"{TAG_PREFIX}purpose": CANDIDATE_PURPOSE,
                PARENT_TAG: parent_run_id,
                CANDIDATE_TAG: str(c.index),
            }
            name = f"{parent.info.run_name or 'train'}-candidate-{c.index}"
            run = client.create_run(parent.info.experiment_id, run_name=name, tags=tags)
            child = run.info.run_id
        metrics = [
            Metric(f"cv_{m}_mean", c.mean, now, 0),
            Metric(f"cv_{m}_std", c.std, now, 0),
            Metric("search_seconds", c.seconds, now, 0),
            Metric("search_round", float(c.round), now, 0),
            *(Metric(f"cv_{m}", s, now, k) for k, s in enumerate(c.scores)),
        ]
        params = [Param(k, _param_value(v)) for k, v in c.params.items()]
        tags_ = [RunTag(f"{TAG_PREFIX}try_number", str(ctx.try_number))]
        client.log_batch(
            child, metrics=[x for x in metrics if math.isfinite(x.value)], params=params, tags=tags_
        )
        client.set_terminated(child, status="FINISHED")
    best = json.dumps(result.best.params, sort_keys=True, default=str)
    logged = parent.data.params.get("best_params")
    if logged is not None and logged != best:  # params are immutable: the tag is the truth
        log.warning("best_params %s of an earlier try differ from this try's %s", logged, best)
    search_params = {
        "search.method": result.method,
        "search.cv": str(result.cv),
        "search.scoring": m,
        "search.candidates": str(result.total),
        **({"best_params": best[:6000]} if logged is None else {}),
    }
    search_metrics = {
        "search_best_score": result.best.mean,
        "search_evaluated_candidates": float(len(result.candidates)),
        "search_skipped_candidates": float(result.skipped),
        "search_seconds": result.seconds,
    }
    client.log_batch(
        parent_run_id,
        metrics=[Metric(k, v, now, 0) for k, v in search_metrics.items()],
        params=[Param(k, v) for k, v in search_params.items() if parent.data.params.get(k) != v],
        tags=[RunTag(f"{TAG_PREFIX}search_best_params", best[:5000])],
    )
    client.log_dict(parent_run_id, result.summary(), SEARCH_ARTIFACT)
