"""The spec's `estimator:` section: the class, its params and the optional hyperparameter search.

Cheap to import (pydantic only); kept apart from spec.py, which is near the module size limit.
Whether the names in `search.space` are parameters of the class is checked where the class is
imported (airmlops_core.train.search.check_space, `airmlops validate --deep`), never at parse
time.
"""

from __future__ import annotations

import json
import math
import re
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from airmlops_core.yaml_schema import StrictModel, in_range

DOTTED_PATH_RE = re.compile(r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)+$")
# a parameter of the estimator, or of an estimator nested in it (`estimator__max_depth`)
PARAM_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_CANDIDATES = 200  # a larger grid belongs in a notebook, not in a scheduled train task
MAX_BUDGET_SECONDS = 7 * 24 * 3600.0

Values = Annotated[list[Any], Field(min_length=1, max_length=MAX_CANDIDATES)]


class Search(StrictModel):
    """Hyperparameter search over the estimator's params (airmlops_core.train.search).

    `space` maps parameter names of the estimator (plain names, as in `params`; the pipeline's
    `model__` prefix is added) to the values to try. `grid` scores every combination with
    `cv`-fold cross-validation on the training split, one at a time, and starts no candidate
    once `budget_seconds` have passed; `halving` is scikit-learn's HalvingGridSearchCV
    (successive halving over training rows, factor 3), which has no time budget. The best
    candidate by `scoring` (default `metrics.primary`) is refitted on the whole training split.
    """

    method: Literal["grid", "halving"] = "grid"
    space: dict[str, Values] = Field(min_length=1)
    cv: Annotated[int, in_range(2, 20)] = 3
    budget_seconds: Annotated[float, in_range(0, MAX_BUDGET_SECONDS, lo_open=True)] | None = None
    scoring: str | None = None  # a metric of the task; default metrics.primary

    @field_validator("space")
    @classmethod
    def _space(cls, space: dict[str, list[Any]]) -> dict[str, list[Any]]:
        bad = [k for k in space if not PARAM_NAME_RE.match(k) or k.startswith("model__")]
        if bad:
            raise ValueError(
                f"{bad}: a key is a parameter name of the estimator as in `params` "
                "(e.g. C, max_depth, or estimator__max_depth for a nested one), "
                "without the pipeline's 'model__' prefix"
            )
        for name, values in space.items():
            seen = [json.dumps(v, sort_keys=True, default=str) for v in values]
            dup = sorted({s for s in seen if seen.count(s) > 1})
            if dup:
                raise ValueError(f"{name} lists these values twice: {', '.join(dup)}")
        n = math.prod(len(v) for v in space.values())
        if n > MAX_CANDIDATES:
            raise ValueError(
                f"{n} candidates (the product of the list lengths); at most {MAX_CANDIDATES}"
            )
        return space

    @model_validator(mode="after")
    def _budget(self) -> Search:
        if self.method == "halving" and self.budget_seconds is not None:
            raise ValueError(
                "budget_seconds applies to method 'grid' only: HalvingGridSearchCV cannot "
                "stop at a time budget"
            )
        return self

    @property
    def candidates(self) -> int:
        """How many parameter combinations the space holds."""
        return math.prod(len(v) for v in self.space.values())


class Estimator(StrictModel):
    """A scikit-learn estimator class (a subclass of sklearn.base.BaseEstimator), by dotted
    import path, with its params; any other callable is refused before it is called
    (airmlops_core.train.estimator.estimator_class, `airmlops validate --deep`)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    class_path: str = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)
    search: Search | None = None

    @field_validator("class_path")
    @classmethod
    def _dotted(cls, v: str) -> str:
        if not DOTTED_PATH_RE.match(v):
            raise ValueError(f"'{v}' is not a dotted import path like sklearn.linear_model.Ridge")
        return v

    @model_validator(mode="after")
    def _searched_or_fixed(self) -> Estimator:
        both = sorted(set(self.params) & set(self.search.space)) if self.search else []
        if both:
            raise ValueError(
                f"search.space and params both set {both}: a parameter is either fixed "
                "(params) or searched (search.space)"
            )
        return self
