"""Model spec: the typed schema of include/models/<name>.yaml and its loader.

Cheap to import (pydantic and yaml only): the DAG factory validates specs at parse time.
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from airmlops_core import yaml_schema
from airmlops_core.errors import SpecError
from airmlops_core.spec_alerts import Alerts
from airmlops_core.spec_card import Card
from airmlops_core.spec_estimator import Estimator
from airmlops_core.spec_labels import Labels
from airmlops_core.spec_monitoring import Monitoring, Retrain
from airmlops_core.yaml_schema import (
    Finite,
    NonNegative,
    OpenShare,
    Share,
    StrictModel,
    in_range,
    interval,
    within,
)

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,47}$")
CRON_PRESETS = {"@once", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}
CRON_FIELD_RE = re.compile(r"^[\d*/,\-A-Za-z?LW#]+$")

CLASSIFICATION_METRICS = {"roc_auc", "pr_auc", "f1", "accuracy", "log_loss"}
REGRESSION_METRICS = {"rmse", "mae", "r2"}
LOWER_IS_BETTER = {"log_loss", "rmse", "mae"}
# the values each metric can take: (lowest, highest), None for unbounded
METRIC_RANGES: dict[str, tuple[float | None, float | None]] = {
    **dict.fromkeys(("roc_auc", "pr_auc", "f1", "accuracy"), (0.0, 1.0)),
    **dict.fromkeys(("log_loss", "rmse", "mae"), (0.0, None)),
    "r2": (None, 1.0),
}


def check_model_name(v: str) -> str:
    """`v` itself when it is a valid model name (a spec's name, a suite's model).

    Raises:
        ValueError: saying what a model name may contain.
    """
    if not NAME_RE.match(v):
        raise ValueError(
            f"'{v}' must be lowercase letters, digits and _, "
            "starting with a letter, at most 48 characters"
        )
    return v


class Window(StrictModel):
    """Rows whose `column` lies in [start, end] (inclusive) form the training window."""

    column: str
    start: float | int | str | None = None
    end: float | int | str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        numbers = all(isinstance(v, int | float) for v in (self.start, self.end))
        if numbers and self.start > self.end:  # type: ignore[operator]
            raise ValueError(f"start ({self.start}) is after end ({self.end}): no row would match")
        return self


class Source(StrictModel):
    """Where a model's data comes from.

    kind=file: `uri` is a CSV or Parquet path, absolute or relative to the data directory.
    kind=s3: `uri` is s3://bucket/key, read with the AWS connection `conn_id`.
    kind=sql: `query` runs on the Airflow connection `conn_id`.
    """

    kind: Literal["file", "s3", "sql"] = "file"
    uri: str | None = None
    query: str | None = None
    conn_id: str | None = None
    format: Literal["parquet", "csv"] | None = None
    window: Window | None = None

    @model_validator(mode="after")
    def _check_kind(self) -> Source:
        if self.kind in ("file", "s3") and not self.uri:
            raise ValueError(f"kind '{self.kind}' needs 'uri'")
        if self.kind == "s3" and self.uri and not self.uri.startswith("s3://"):
            raise ValueError(f"kind 's3' needs an s3:// uri, got '{self.uri}'")
        if self.kind == "sql" and not (self.query and self.conn_id):
            raise ValueError("kind 'sql' needs 'query' and 'conn_id'")
        if self.uri and self.format is None and not self.uri.endswith((".parquet", ".csv")):
            raise ValueError(f"cannot tell the format of '{self.uri}': set 'format'")
        return self

    @property
    def resolved_format(self) -> str:
        """parquet or csv: the declared format, else the uri's extension."""
        if self.format:
            return self.format
        return "csv" if (self.uri or "").endswith(".csv") else "parquet"


class Features(StrictModel):
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> Features:
        if not self.numeric and not self.categorical:
            raise ValueError("at least one numeric or categorical feature is required")
        both = set(self.numeric) & set(self.categorical)
        if both:
            raise ValueError(f"listed as both numeric and categorical: {sorted(both)}")
        for kind, cols in (("numeric", self.numeric), ("categorical", self.categorical)):
            dup = sorted({c for c in cols if cols.count(c) > 1})
            if dup:
                raise ValueError(f"{kind} lists these columns twice: {dup}")
        return self

    @property
    def all(self) -> list[str]:
        """Every feature column, numeric first."""
        return [*self.numeric, *self.categorical]


class Split(StrictModel):
    test_size: OpenShare = 0.2
    seed: Annotated[int, in_range(0, 2**32 - 1)] = 42
    stratify: bool = True


class Rebalance(StrictModel):
    """Oversample the minority classes of the training fold (imbalanced-learn), inside the
    pipeline: only `fit` resamples, so the holdout, the reference and scoring never see
    synthetic rows.

    smote: numeric features only (SMOTE after scaling); smote_nc: mixed numeric and
    categorical features (SMOTE-NC on imputed raw columns, before encoding); random_over:
    duplicates minority rows, any features.
    """

    method: Literal["smote", "smote_nc", "random_over"]
    sampling_strategy: float | Literal["auto", "minority", "not majority"] = "auto"
    k_neighbors: Annotated[int, in_range(1, 100)] = 5

    @field_validator("sampling_strategy")
    @classmethod
    def _ratio(cls, v: float | str) -> float | str:
        if isinstance(v, float | int) and not within(v, 0, 1, lo_open=True):
            raise ValueError("a ratio (minority / majority after resampling) must be in (0, 1]")
        return v


class Metrics(StrictModel):
    primary: str
    floors: dict[str, float] = Field(default_factory=dict)

    @field_validator("floors")
    @classmethod
    def _in_metric_range(cls, floors: dict[str, float]) -> dict[str, float]:
        """A floor outside its metric's range would reject (or pass) every version."""
        bad = [
            f"{name} must be {interval(*METRIC_RANGES[name])} (got {value!r})"
            for name, value in floors.items()
            if name in METRIC_RANGES and not within(value, *METRIC_RANGES[name])
        ]
        if bad:
            raise ValueError("; ".join(bad))
        return floors


class Schedules(StrictModel):
    train: str | None = None
    score: str | None = None
    drift: str | None = None
    retrain: str | None = None

    @field_validator("train", "score", "drift", "retrain")
    @classmethod
    def _cron(cls, v: str | None) -> str | None:
        if v is None or v in CRON_PRESETS:
            return v
        fields = v.split()
        if len(fields) != 5 or not all(CRON_FIELD_RE.match(f) for f in fields):
            raise ValueError(
                f"'{v}' is neither a cron preset ({sorted(CRON_PRESETS)}) "
                "nor a 5-field cron expression"
            )
        return v


class Promotion(StrictModel):
    """How the validate gate decides between the champion and a challenger.

    With `human_approval`, a challenger the gate passes waits for a reviewer: no answer within
    `approval_timeout_hours` is a rejection, `reviewers` (Airflow user ids) are the only users
    who may answer when listed, and the user who trained a version never approves it (see
    airmlops_core.validate.review).
    """

    metric: str | None = None  # default: metrics.primary
    margin: Finite = 0.0  # the lower CI bound of the improvement must exceed this
    level: Annotated[float, in_range(0.5, 1, lo_open=True, hi_open=True)] = 0.95
    n_boot: Annotated[int, in_range(200, 20000)] = 1000
    segments: list[str] = Field(default_factory=list)  # metric floors hold per segment too
    fairness_tolerance: Share = 0.05
    fairness_max_gap: Share | None = None
    # reject when the primary metric on the training rows beats the holdout's by more than this
    max_overfit_gap: NonNegative | None = None
    cv_folds: Annotated[int, in_range(2, 20)] | None = None  # k-fold estimate, evidence only
    shadow_runs: Annotated[int, in_range(1, 100)] | None = None  # score runs shadowed first
    shadow_min_agreement: Share | None = None  # reject below this share of equal predictions
    human_approval: bool = False
    # with human_approval: no answer within this many hours is a rejection (at most 30 days)
    approval_timeout_hours: float = Field(default=72.0, gt=0.0, le=720.0)
    # with human_approval: the Airflow user ids who may answer (empty: any user allowed to
    # answer the task); the trainer of a version is never one of them
    reviewers: list[str] = Field(default_factory=list)

    @field_validator("reviewers")
    @classmethod
    def _reviewers(cls, v: list[str]) -> list[str]:
        blank = [r for r in v if not r.strip()]
        if blank:
            raise ValueError("a reviewer is an Airflow user id: an empty one was given")
        dup = sorted({r for r in v if v.count(r) > 1})
        if dup:
            raise ValueError(f"reviewers lists these users twice: {dup}")
        return v

    @model_validator(mode="after")
    def _approval_fields(self) -> Promotion:
        if self.shadow_min_agreement is not None and self.shadow_runs is None:
            raise ValueError("shadow_min_agreement applies with shadow_runs only")
        if not self.human_approval:
            unused = [
                f for f in ("approval_timeout_hours", "reviewers") if f in self.model_fields_set
            ]
            if unused:
                raise ValueError(f"{', '.join(unused)} apply with human_approval: true only")
        return self


class ScoringSink(StrictModel):
    """Upsert each run's scored rows into `table` ("name" or "schema.name") through the Airflow
    SQL connection `conn_id`, keyed on (row key, model_name); see airmlops_core.io.sql_sink."""

    conn_id: str
    table: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


class Scoring(StrictModel):
    """Bulk scoring with the champion: where batches land and where scores go.

    `input` is a file, a directory of .parquet/.csv files, a glob or an s3:// prefix (each file
    is one partition, scored by its own mapped task); relative paths are under the data
    directory. `query` (with `conn_id`: an Airflow SQL connection) reads one partition from a
    database instead. `conn_id` for s3:// URIs is an AWS connection.
    """

    input: str | None = None  # default <data>/landing/<model>/
    output: str | None = None  # default <data>/scored
    query: str | None = None
    conn_id: str | None = None
    chunk_rows: Annotated[int, in_range(1_000, 10_000_000)] = 131_072
    sink: ScoringSink | None = None

    @model_validator(mode="after")
    def _one_source(self) -> Scoring:
        if self.query and self.input:
            raise ValueError("give either input (files) or query (SQL), not both")
        if self.query and not self.conn_id:
            raise ValueError("query needs conn_id: the Airflow connection of the database")
        return self


class DataChecks(StrictModel):
    """The Great Expectations gate: suite file and quarantine location."""

    suite: str | None = None  # default include/expectations/<model>.yaml
    quarantine_uri: str | None = None  # default <local>/quarantine/<model>


class External(StrictModel):
    """A model built elsewhere and monitored here: scored, drift-checked and probed, never
    trained, validated or retrained by the pack (see docs/external-models.md).

    `reference` is the labelled dataset the model is profiled on when it is onboarded (the
    drift reference and the reference metrics performance drift compares with); it has the
    shape of `source`. `origin` says where the model was built, e.g. "vendor X / team Y
    notebook"; it is recorded on every onboarded version.
    """

    reference: Source
    origin: str = Field(min_length=3, max_length=500)


# Fields that only mean something for a model trained here, and why (external specs).
TRAINING_ONLY = {
    "source": "the reference dataset is external.reference",
    "estimator": "the model is built elsewhere",
    "rebalance": "nothing is trained here",
    "split": "nothing is trained here",
    "retrain": "there is no retrain DAG",
    "promotion": "there is no promotion gate: onboarding makes the version champion",
}
EXTERNAL_DEFAULT_METRIC = {"binary": "roc_auc", "multiclass": "log_loss", "regression": "rmse"}


class ModelSpec(StrictModel):
    """One model: what it learns from, how, and what counts as good enough.

    `source`, `estimator` and `metrics` are required for a model trained here; a model built
    elsewhere has an `external:` section instead and none of the training fields
    (TRAINING_ONLY). The checker sees them as always present: only the training path reads
    them, and the DAG factory builds no training DAG for an external spec.
    """

    name: str
    description: str = ""
    owner: str = "ml-team"
    task: Literal["binary", "multiclass", "regression"]
    if TYPE_CHECKING:
        source: Source
        estimator: Estimator
    else:
        source: Source | None = None
        estimator: Estimator | None = None
    target: str
    row_key: str | None = None
    features: Features
    sensitive_features: list[str] = Field(default_factory=list)
    rebalance: Rebalance | None = None
    split: Split = Field(default_factory=Split)
    metrics: Metrics
    external: External | None = None
    schedules: Schedules = Field(default_factory=Schedules)
    promotion: Promotion = Field(default_factory=Promotion)
    data_checks: DataChecks = Field(default_factory=DataChecks)
    scoring: Scoring = Field(default_factory=Scoring)
    monitoring: Monitoring = Field(default_factory=Monitoring)
    retrain: Retrain = Field(default_factory=Retrain)
    labels: Labels = Field(default_factory=Labels)
    alerts: Alerts = Field(default_factory=Alerts)
    card: Card = Field(default_factory=Card)  # intended use, owner, limitations
    tags: list[str] = Field(default_factory=list)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_model_name(v)

    @model_validator(mode="before")
    @classmethod
    def _external_metrics(cls, raw: Any) -> Any:
        """An external spec may omit `metrics`: its primary metric defaults per task."""
        if (
            isinstance(raw, dict)
            and raw.get("external") is not None
            and "metrics" not in raw
            and raw.get("task") in EXTERNAL_DEFAULT_METRIC
        ):
            return {**raw, "metrics": {"primary": EXTERNAL_DEFAULT_METRIC[raw["task"]]}}
        return raw

    @model_validator(mode="after")
    def _cross_checks(self) -> ModelSpec:
        self._check_kind_of_model()
        feats = set(self.features.all)
        if self.target in feats:
            raise ValueError(f"target '{self.target}' is also listed as a feature")
        if self.row_key and (self.row_key in feats or self.row_key == self.target):
            raise ValueError(f"row_key '{self.row_key}' must not be a feature or the target")
        if self.sensitive_features and self.target in self.sensitive_features:
            raise ValueError(f"target '{self.target}' cannot be a sensitive feature")
        if "labels" in self.model_fields_set and not self.row_key:
            raise ValueError("labels are joined to scored rows on the row key: set row_key")
        if self.scoring.sink and not self.row_key:
            raise ValueError("scoring.sink upserts on (row key, model_name): set row_key")
        if self.target in self.promotion.segments:
            raise ValueError(f"target '{self.target}' cannot be a promotion segment")
        if self.rebalance is not None:
            self._check_rebalance(self.rebalance)
        allowed = REGRESSION_METRICS if self.task == "regression" else CLASSIFICATION_METRICS
        gate_metric = [self.promotion.metric] if self.promotion.metric else []
        search = self.estimator.search if self.estimator else None
        searched = [search.scoring] if search and search.scoring else []
        for metric in [self.metrics.primary, *self.metrics.floors, *gate_metric, *searched]:
            if metric not in allowed:
                raise ValueError(
                    f"metric '{metric}' does not apply to task '{self.task}'; "
                    f"choose from {sorted(allowed)}"
                )
        lo, hi = METRIC_RANGES[self.gate_metric]
        span = (lo - hi, hi - lo) if lo is not None and hi is not None else (None, None)
        if not within(self.promotion.margin, *span, lo_open=True, hi_open=True):
            raise ValueError(
                f"promotion.margin must be {interval(*span, lo_open=True, hi_open=True)} for "
                f"{self.gate_metric} (got {self.promotion.margin!r}): no version could clear it"
            )
        return self

    def _check_kind_of_model(self) -> None:
        """Trained here: source and estimator required. External: no training-only field."""
        if self.external is None:
            missing = [f for f in ("source", "estimator") if getattr(self, f) is None]
            if missing:
                raise ValueError(
                    f"{' and '.join(missing)} required: a model trained here needs "
                    "them (a model built elsewhere has an `external:` section "
                    "instead, see docs/external-models.md)"
                )
            return
        given = self.model_fields_set
        meaningless = [f"{f} ({why})" for f, why in TRAINING_ONLY.items() if f in given]
        meaningless += [
            f"schedules.{p} (nothing is trained here)"
            for p in ("train", "retrain")
            if getattr(self.schedules, p)
        ]
        meaningless += [
            f"alerts.deadlines.{p} (there is no {p} DAG)"
            for p in ("train", "validate", "retrain")
            if p in self.alerts.deadlines
        ]
        if self.metrics.floors:
            meaningless.append("metrics.floors (there is no promotion gate to apply them)")
        if meaningless:
            raise ValueError(
                "external: a model built elsewhere is monitored only; these fields "
                "do not apply, remove them: " + "; ".join(meaningless)
            )

    def _check_rebalance(self, rb: Rebalance) -> None:
        where = f"rebalance.method '{rb.method}'"
        if self.task == "regression":
            raise ValueError(f"{where}: oversampling needs classes; task is 'regression'")
        if rb.method == "smote" and self.features.categorical:
            raise ValueError(
                f"{where} interpolates numeric features only; features.categorical "
                f"is {self.features.categorical}: use smote_nc"
            )
        if rb.method == "smote_nc" and not (self.features.categorical and self.features.numeric):
            raise ValueError(
                f"{where} needs numeric and categorical features; use smote for "
                "numeric only, random_over otherwise"
            )
        if self.task == "multiclass" and isinstance(rb.sampling_strategy, float):
            raise ValueError(
                "rebalance.sampling_strategy: a float ratio applies to binary "
                "tasks only; use 'auto', 'minority' or 'not majority'"
            )

    @property
    def columns(self) -> list[str]:
        """Every column the model reads: row key, features, target, sensitive extras."""
        cols = ([self.row_key] if self.row_key else []) + self.features.all + [self.target]
        extras = [*self.sensitive_features, *self.promotion.segments]
        return cols + [c for c in dict.fromkeys(extras) if c not in cols]

    @property
    def gate_metric(self) -> str:
        """The metric champion and challenger are compared on."""
        return self.promotion.metric or self.metrics.primary

    @property
    def is_classifier(self) -> bool:
        return self.task != "regression"

    @property
    def is_external(self) -> bool:
        """Built elsewhere, monitored here: score, drift and health, no training DAGs."""
        return self.external is not None

    @property
    def stratify(self) -> bool:
        """Stratify the split on the target: classifiers only."""
        return self.split.stratify and self.is_classifier


def spec_hash(raw: bytes) -> str:
    """Content hash of a spec file, recorded as lineage on model versions."""
    return hashlib.sha256(raw).hexdigest()[:16]


def load_spec(path: str | Path) -> ModelSpec:
    """Read and validate one spec file.

    Raises:
        SpecError: naming the file, each offending field and what is wrong.
    """
    path = Path(path)
    raw = yaml_schema.read_yaml(path, SpecError)
    spec = yaml_schema.parse_model(ModelSpec, raw, path, SpecError)
    yaml_schema.require_file_name(path, "name", spec.name, SpecError)
    return spec


def iter_spec_files(models_dir: str | Path) -> list[Path]:
    """Spec files in a directory, sorted, ignoring hidden and underscore-prefixed files."""
    d = Path(models_dir)
    files = [*d.glob("*.yaml"), *d.glob("*.yml")]
    return sorted(p for p in files if not p.name.startswith((".", "_")))


def load_specs(models_dir: str | Path) -> tuple[dict[str, ModelSpec], dict[str, SpecError]]:
    """Load every spec in a directory; good specs and errors are returned apart.

    Returns:
        (specs by model name, errors by file path). A bad spec never hides a good one.
    """
    specs: dict[str, ModelSpec] = {}
    errors: dict[str, SpecError] = {}
    for path in iter_spec_files(models_dir):
        try:
            spec = load_spec(path)
        except SpecError as exc:
            errors[str(path)] = exc
            continue
        if spec.name in specs:
            errors[str(path)] = SpecError(path, [("name", f"'{spec.name}' is already defined")])
            continue
        specs[spec.name] = spec
    return specs, errors
