"""Derive the exact skops type allow-list from the pipelines the pack builds.

`python -m airmlops_dev.skops_allowlist` fits the pack's own pipeline
(`airmlops_core.train.estimator.fit`) around every scikit-learn classifier and regressor a spec
can name with plain YAML params (binary, multiclass and regression; meta-estimators that need an
estimator object as a param cannot be written in a spec), a few documented param variants, and
each imbalanced-learn oversampler; collects the types skops reports as untrusted for each
(`skops.io.get_untrusted_types`: what skops does not trust by default) and writes them, sorted,
to `include/airmlops_core/tracking/skops_allowlist.py`. Every name must be a class: a function
(`builtins.exec`, `numpy.testing...runstring`) never enters the list. Re-run it after upgrading
scikit-learn, imbalanced-learn or skops, and review the diff.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

TARGET = Path(__file__).resolve().parents[2] / "include/airmlops_core/tracking/skops_allowlist.py"
# (estimator, params): param values a spec can write that need types the defaults do not
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("sklearn.neural_network.MLPClassifier", {"solver": "sgd", "max_iter": 20}),
    ("sklearn.neural_network.MLPRegressor", {"solver": "sgd", "max_iter": 20}),
    ("sklearn.neighbors.KNeighborsClassifier", {"algorithm": "ball_tree"}),
    ("sklearn.neighbors.KNeighborsClassifier", {"metric": "manhattan"}),
    ("sklearn.neighbors.KNeighborsRegressor", {"algorithm": "ball_tree"}),
    ("sklearn.neighbors.KNeighborsRegressor", {"metric": "chebyshev"}),
    ("sklearn.linear_model.TweedieRegressor", {"power": 1.5, "link": "log"}),
    ("sklearn.ensemble.HistGradientBoostingRegressor", {"loss": "poisson"}),
    ("sklearn.ensemble.GradientBoostingRegressor", {"loss": "huber"}),
    ("sklearn.ensemble.GradientBoostingRegressor", {"loss": "quantile"}),
    ("sklearn.ensemble.GradientBoostingRegressor", {"loss": "absolute_error"}),
]
SAMPLERS = ("smote", "smote_nc", "random_over")


def frame(n: int = 240) -> Any:
    """Rows for every task: numeric a, b; categorical c; binary, multi and regression labels."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=n), rng.normal(size=n)
    return pd.DataFrame(
        {
            "a": a,
            "b": b,
            "c": rng.choice(["x", "y", "z"], n),
            "binary": (a + rng.normal(scale=0.5, size=n) > 0).astype(int),
            "multi": np.digitize(a, [-0.5, 0.5]),
            "regression": np.exp(0.3 * a) + rng.uniform(0.1, 1.0, n),  # positive: Poisson/Gamma
        }
    )


def spec_for(cls: str, task: str, params: dict[str, Any], rebalance: str | None = None) -> Any:
    """A spec over `frame()`'s columns with this estimator (and oversampler)."""
    from airmlops_core.spec import ModelSpec

    metric = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}[task]
    categorical = [] if rebalance == "smote" else ["c"]
    doc: dict[str, Any] = {
        "name": "allowlist",
        "task": task,
        "target": "multi" if task == "multiclass" else task,
        "source": {"uri": "x.parquet"},
        "features": {"numeric": ["a", "b"], "categorical": categorical},
        "estimator": {"class": cls, "params": params},
        "metrics": {"primary": metric},
    }
    if rebalance:
        doc["rebalance"] = {"method": rebalance}
    return ModelSpec.model_validate(doc)


def _cases() -> Iterator[tuple[str, str, dict[str, Any], str | None]]:
    from sklearn.utils import all_estimators

    for kind, tasks in (("classifier", ("binary", "multiclass")), ("regressor", ("regression",))):
        for _, cls in all_estimators(type_filter=kind):
            for task in tasks:
                yield f"{cls.__module__}.{cls.__name__}", task, {}, None
    for path, params in VARIANTS:
        yield path, "regression" if "Regressor" in path else "binary", params, None
    for sampler in SAMPLERS:
        yield "sklearn.linear_model.LogisticRegression", "binary", {}, sampler


def _is_class(name: str) -> bool:
    module, _, attr = name.rpartition(".")
    try:
        return isinstance(getattr(importlib.import_module(module), attr), type)
    except (ImportError, AttributeError):
        return False


def derive() -> tuple[dict[str, set[str]], list[str]]:
    """(type name -> the cases that need it, the cases that could not be fitted)."""
    from skops.io import dumps, get_untrusted_types

    from airmlops_core.train import estimator as training

    data = frame()
    needed: dict[str, set[str]] = {}
    skipped = []
    for cls, task, params, rebalance in _cases():
        case = f"{cls} {task} {params or ''} {rebalance or ''}".strip()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                pipeline = training.fit(spec_for(cls, task, params, rebalance), data)
            except Exception as exc:  # noqa: BLE001 - cannot be fitted in the pack's pipeline
                skipped.append(f"{case}: {type(exc).__name__}")
                continue
        for name in get_untrusted_types(data=dumps(pipeline)):
            if not _is_class(name):
                raise SystemExit(f"{case} needs {name}, which is not a class: refusing it")
            needed.setdefault(name, set()).add(case)
    return needed, skipped


def render(needed: dict[str, set[str]]) -> str:
    """The allow-list module's source."""
    lines = [
        '"""The exact types skops may construct beyond its own defaults when the pack loads a',
        "model: generated by `python -m airmlops_dev.skops_allowlist` from the pipelines the pack",
        'builds (see that module). Do not edit by hand; never add a function or a prefix."""',
        "",
        "from __future__ import annotations",
        "",
        "ALLOWED_TYPES: frozenset[str] = frozenset(",
        "    {",
    ]
    lines += [f'        "{name}",' for name in sorted(needed)]
    lines += ["    }", ")", ""]
    return "\n".join(lines)


def main() -> int:
    """Derive the list and write it to TARGET."""
    logging.basicConfig(level=logging.WARNING)
    needed, skipped = derive()
    TARGET.write_text(render(needed))
    for name in sorted(needed):
        print(f"{name}  <- {sorted(needed[name])[0]} (+{len(needed[name]) - 1})")
    print(f"{len(needed)} types written to {TARGET}; {len(skipped)} cases not fittable here")
    return 0


if __name__ == "__main__":
    sys.exit(main())
