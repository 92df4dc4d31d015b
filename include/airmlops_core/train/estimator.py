"""Build and fit the scikit-learn Pipeline a spec describes."""

from __future__ import annotations

import importlib
import inspect
import logging
from typing import Any

import pandas as pd
from sklearn.base import BaseEstimator, is_classifier, is_regressor
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from airmlops_core.errors import EstimatorError
from airmlops_core.spec import ModelSpec

log = logging.getLogger(__name__)


def import_object(dotted: str) -> Any:
    """Import `package.module.Name` and return Name (nothing is called).

    Raises:
        EstimatorError: the module or attribute does not exist.
    """
    module_name, _, attr = dotted.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise EstimatorError(
            f"estimator.class: cannot import module '{module_name}': {exc}"
        ) from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise EstimatorError(f"estimator.class: module '{module_name}' has no '{attr}'") from None


def estimator_class(dotted: str) -> type[BaseEstimator]:
    """The scikit-learn estimator class at `dotted`, checked before anything is called.

    `estimator.class` names a class to instantiate with `estimator.params`, so any other
    callable (`subprocess.Popen` with `params: {args: [...]}`, `os.system`, `builtins.eval`, a
    function, a class that is not an estimator) is refused here, before it can run.

    Raises:
        EstimatorError: naming the spec field and the dotted path: not importable, or not a
            subclass of sklearn.base.BaseEstimator.
    """
    obj = import_object(dotted)
    if not inspect.isclass(obj):
        if inspect.isbuiltin(obj):
            kind = "a builtin function"
        elif inspect.isfunction(obj):
            kind = "a function"
        else:
            kind = f"a {type(obj).__name__} object"
        raise EstimatorError(
            f"estimator.class: '{dotted}' is {kind}, not a scikit-learn estimator class "
            "(a subclass of sklearn.base.BaseEstimator); nothing was called"
        )
    if not issubclass(obj, BaseEstimator):
        raise EstimatorError(
            f"estimator.class: '{dotted}' is a class but not a scikit-learn estimator "
            "(not a subclass of sklearn.base.BaseEstimator); nothing was instantiated"
        )
    return obj


def task_mismatch(spec: ModelSpec, estimator: Any) -> str | None:
    """Why `estimator` cannot serve the spec's task (a regressor for a classification task or
    the reverse), or None."""

    if spec.is_classifier and is_regressor(estimator):
        return f"is a regressor but task is '{spec.task}'"
    if not spec.is_classifier and is_classifier(estimator):
        return "is a classifier but task is 'regression'"
    return None


def build_estimator(spec: ModelSpec) -> BaseEstimator:
    """Instantiate the spec's estimator with its params, seeded when it takes a random_state.

    Raises:
        EstimatorError: not an estimator class (checked before instantiating), params it
            rejects, no fit/predict, or the wrong kind for the task.
    """
    cls = estimator_class(spec.estimator.class_path)
    params = dict(spec.estimator.params)
    try:
        est = cls(**params)
    except TypeError as exc:
        raise EstimatorError(
            f"estimator.params: {spec.estimator.class_path} rejects {sorted(params)}: {exc}"
        ) from exc
    if not (hasattr(est, "fit") and hasattr(est, "predict")):
        raise EstimatorError(f"estimator.class: {spec.estimator.class_path} has no fit/predict")
    mismatch = task_mismatch(spec, est)
    if mismatch:
        raise EstimatorError(f"estimator.class: {spec.estimator.class_path} {mismatch}")
    if "random_state" in est.get_params() and "random_state" not in params:
        est.set_params(random_state=spec.split.seed)
    return est


def _numeric_steps() -> Pipeline:
    return Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])


def _categorical_impute() -> SimpleImputer:
    return SimpleImputer(strategy="constant", fill_value="__missing__")


def _onehot() -> OneHotEncoder:
    return OneHotEncoder(handle_unknown="ignore", min_frequency=5, sparse_output=False)


def _preprocess(spec: ModelSpec) -> ColumnTransformer:
    """Impute + scale numeric, impute + one-hot categorical."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if spec.features.numeric:
        transformers.append(("numeric", _numeric_steps(), spec.features.numeric))
    if spec.features.categorical:
        categorical = Pipeline([("impute", _categorical_impute()), ("onehot", _onehot())])
        transformers.append(("categorical", categorical, spec.features.categorical))
    return ColumnTransformer(transformers, remainder="drop", verbose_feature_names_out=False)


def _sampler(spec: ModelSpec) -> Any:
    from imblearn.over_sampling import SMOTE, SMOTENC, RandomOverSampler

    rb = spec.rebalance
    assert rb is not None
    common = {"sampling_strategy": rb.sampling_strategy, "random_state": spec.split.seed}
    if rb.method == "smote":
        return SMOTE(k_neighbors=rb.k_neighbors, **common)
    if rb.method == "smote_nc":
        return SMOTENC(
            categorical_features=spec.features.categorical, k_neighbors=rb.k_neighbors, **common
        )
    return RandomOverSampler(**common)


def _rebalanced_pipeline(spec: ModelSpec) -> Any:
    """An imbalanced-learn Pipeline: the sampler runs in fit only, never in predict."""
    from imblearn.pipeline import Pipeline as SamplingPipeline

    if spec.rebalance is not None and spec.rebalance.method == "smote_nc":
        # SMOTE-NC interpolates raw numeric values and picks categories by majority among
        # neighbours: impute first (it rejects missing values), encode and scale after
        impute = ColumnTransformer(
            [
                ("numeric", SimpleImputer(strategy="median"), spec.features.numeric),
                ("categorical", _categorical_impute(), spec.features.categorical),
            ],
            remainder="drop",
            verbose_feature_names_out=False,
        ).set_output(transform="pandas")
        encode = ColumnTransformer(
            [
                ("numeric", StandardScaler(), spec.features.numeric),
                ("categorical", _onehot(), spec.features.categorical),
            ],
            remainder="drop",
            verbose_feature_names_out=False,
        )
        steps = [("impute", impute), ("rebalance", _sampler(spec)), ("encode", encode)]
    else:
        steps = [("preprocess", _preprocess(spec)), ("rebalance", _sampler(spec))]
    return SamplingPipeline([*steps, ("model", build_estimator(spec))])


def build_pipeline(spec: ModelSpec) -> Pipeline:
    """Preprocessing + the estimator, with the spec's oversampler (fit only) when it has one."""
    if spec.rebalance is not None:
        return _rebalanced_pipeline(spec)
    return Pipeline([("preprocess", _preprocess(spec)), ("model", build_estimator(spec))])


def class_balance(spec: ModelSpec, pipeline: Any, train: pd.DataFrame) -> dict[str, Any]:
    """Class counts of the training fold before and after the pipeline's oversampler.

    "after" replays the fitted steps before the sampler and the sampler itself (seeded, so it
    resamples exactly as in fit); without a sampler the counts are unchanged.
    """
    y = train[spec.target]
    before = {str(k): int(v) for k, v in y.value_counts().sort_index().items()}
    if "rebalance" not in getattr(pipeline, "named_steps", {}):
        return {"before": before, "after": before}
    from sklearn.base import clone

    names = [name for name, _ in pipeline.steps]
    upstream = pipeline[: names.index("rebalance")]
    Xt = upstream.transform(feature_frame(spec, train))
    _, y_after = clone(pipeline.named_steps["rebalance"]).fit_resample(Xt, y)
    after = {str(k): int(v) for k, v in pd.Series(y_after).value_counts().sort_index().items()}
    return {"before": before, "after": after}


def feature_frame(spec: ModelSpec, df: pd.DataFrame) -> pd.DataFrame:
    """The model's input columns with stable dtypes: float64 numerics, object categoricals.

    Categoricals are cast to object so that the logged signature says `string` and the
    imputer treats pandas 3 `str` and object columns alike.
    """
    missing = [c for c in spec.features.all if c not in df.columns]
    if missing:
        raise ValueError(f"input lacks feature columns {missing}")
    out = pd.DataFrame(index=df.index)
    for col in spec.features.numeric:
        out[col] = pd.to_numeric(df[col], errors="raise").astype("float64")
    for col in spec.features.categorical:
        values = df[col].astype("object")
        out[col] = values.where(values.notna(), None)
    return out


def fit(spec: ModelSpec, train: pd.DataFrame, params: dict[str, Any] | None = None) -> Pipeline:
    """Fit the spec's pipeline on a training frame (features + target); `params` (pipeline
    names such as `model__C`, e.g. a search's best candidate) override the spec's."""
    pipeline = build_pipeline(spec)
    if params:
        pipeline.set_params(**params)
    X = feature_frame(spec, train)
    y = train[spec.target]
    if y.isna().any():
        raise ValueError(f"target '{spec.target}' has {int(y.isna().sum())} missing values")
    log.info("fitting %s on %d rows, %d features", spec.estimator.class_path, len(X), X.shape[1])
    pipeline.fit(X, y)
    return pipeline


def trusted_types(pipeline: Pipeline) -> list[str]:
    """Fully qualified names of every non-builtin type skops must trust to load this pipeline."""
    from skops.io import dumps, get_untrusted_types

    return sorted(get_untrusted_types(data=dumps(pipeline)))
