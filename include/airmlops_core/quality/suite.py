"""A model's expectation suite: the reviewed YAML schema, its loader and its writer.

A suite is a small YAML file per model (include/expectations/<model>.yaml) that people review:

    model: customer_churn
    target: churn                  # the label; its rules are dropped for scoring batches
    severity: block                # default severity of every rule: block | warn
    extra_columns: block           # columns the suite does not list: block | warn | ignore
    row_count: {min: 100, max: 50000000, severity: block}
    columns:                       # every expected column, in order
      customer_id: {dtype: int64, nullable: false, unique: true}
      tenure: {dtype: int64, nullable: false, min: 0, max: 100, min_distinct: 2}
      total_charges: {dtype: float64, max_null_fraction: 0.01, min: 0,
                      severities: {max_null_fraction: warn}}
      contract: {dtype: str, nullable: false, allowed: [Month-to-month, One year, Two year]}
      churn: {dtype: int64, nullable: false, allowed: [0, 1], min_distinct: 2}

Column rules, each one Great Expectations expectation named `<column>.<rule>`:
`exists` (always), `dtype` (a pandas dtype name or a list of them), `nullable: false` or
`max_null_fraction`, `range` (from `min` and/or `max`), `allowed`, `unique`, `min_distinct`.
Table rules: `table.row_count`, `table.extra_columns`. A column's `severity` applies to all its
rules; `severities: {rule: severity}` overrides single rules. `airmlops_core.quality.check`
runs a suite; `airmlops_core.quality.drafting` drafts one from data.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal, cast, get_args

import yaml
from pydantic import Field, field_validator, model_validator

from airmlops_core import settings, yaml_schema
from airmlops_core.errors import SuiteError
from airmlops_core.quality.evidence import write_text
from airmlops_core.spec import ModelSpec, check_model_name
from airmlops_core.yaml_schema import StrictModel

Severity = Literal["block", "warn"]
RuleName = Literal[
    "exists",
    "dtype",
    "nullable",
    "max_null_fraction",
    "range",
    "allowed",
    "unique",
    "min_distinct",
]
SEVERITIES: tuple[str, ...] = get_args(Severity)
COLUMN_RULES: tuple[str, ...] = get_args(RuleName)
READABLE_RULE = "file.readable"
ROW_COUNT_RULE = "table.row_count"
EXTRA_COLUMNS_RULE = "table.extra_columns"
DUPLICATE_COLUMNS_RULE = "table.duplicate_columns"
RUN_RULE = "table.validation"
_DTYPE_RE = re.compile(
    r"^(u?int(8|16|32|64)|U?Int(8|16|32|64)|float(16|32|64)|Float(32|64)|bool|boolean|str|string"
    r"|object|category|(datetime|timedelta)64(\[(s|ms|us|ns)(, [^\]]+)?\])?)$"
)


class RowCount(StrictModel):
    """Bounds on the number of rows (inclusive); max None is unbounded."""

    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=0)
    severity: Severity | None = None

    @model_validator(mode="after")
    def _order(self) -> RowCount:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class ColumnRules(StrictModel):
    """What one column must look like. Unset rules are not checked."""

    dtype: str | list[str] | None = None
    nullable: bool = True
    max_null_fraction: float | None = Field(default=None, ge=0.0, le=1.0)
    min: int | float | None = None
    max: int | float | None = None
    allowed: list[str | int | float | bool] | None = None
    unique: bool = False
    min_distinct: int | None = Field(default=None, ge=1)
    severity: Severity | None = None
    severities: dict[RuleName, Severity] = Field(default_factory=dict)

    @field_validator("dtype")
    @classmethod
    def _dtype(cls, v: str | list[str] | None) -> str | list[str] | None:
        names = [v] if isinstance(v, str) else (v or [])
        if isinstance(v, list) and not v:
            raise ValueError("an empty list of dtypes allows nothing")
        for name in names:
            if not _DTYPE_RE.match(name):
                raise ValueError(
                    f"unknown dtype '{name}' (use a pandas dtype name such as int64, float64, "
                    "bool, str, category, datetime64[us])"
                )
        return v

    @field_validator("allowed")
    @classmethod
    def _allowed(cls, v: list[Any] | None) -> list[Any] | None:
        if v is not None and not v:
            raise ValueError("an empty allowed set rejects every value; remove the rule instead")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> ColumnRules:
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min:g}) is greater than max ({self.max:g})")
        if not self.nullable and self.max_null_fraction:
            raise ValueError("nullable: false contradicts max_null_fraction > 0; keep one")
        return self

    @property
    def nulls_rule(self) -> str | None:
        """The rule that limits nulls: nullable, max_null_fraction or None."""
        if not self.nullable or self.max_null_fraction == 0:
            return "nullable"
        if self.max_null_fraction is not None and self.max_null_fraction < 1:
            return "max_null_fraction"
        return None


class Suite(StrictModel):
    """One model's data expectations, as reviewed in include/expectations/<model>.yaml."""

    model: str
    description: str = ""
    target: str | None = None
    severity: Severity = "block"
    extra_columns: Literal["block", "warn", "ignore"] = "block"
    row_count: RowCount = Field(default_factory=RowCount)
    columns: dict[str, ColumnRules]

    @field_validator("model")
    @classmethod
    def _name(cls, v: str) -> str:
        return check_model_name(v)

    @field_validator("columns")
    @classmethod
    def _columns(cls, v: dict[str, ColumnRules]) -> dict[str, ColumnRules]:
        if not v:
            raise ValueError("at least one column is required")
        return v

    @model_validator(mode="after")
    def _target(self) -> Suite:
        if self.target is not None and self.target not in self.columns:
            raise ValueError(f"target '{self.target}' is not one of the columns")
        return self

    def for_batch(self) -> Suite:
        """The scoring variant: the target column and its rules removed."""
        if self.target is None:
            return self
        cols = {k: v for k, v in self.columns.items() if k != self.target}
        return self.model_copy(update={"columns": cols, "target": None})

    def severity_of(self, column: str, rule: str) -> str:
        """The severity of `<column>.<rule>`: per-rule, else the column's, else the suite's."""
        rules = self.columns[column]
        chosen = rules.severities.get(cast(RuleName, rule))
        return chosen or rules.severity or self.severity


def parse_suite(raw: Any, path: str | Path = "<suite>") -> Suite:
    """Validate a suite given as a mapping (e.g. loaded YAML).

    Raises:
        SuiteError: naming `path`, each offending field and what is wrong.
    """
    columns = yaml_schema.require_mapping(raw, path, SuiteError).get("columns")
    if isinstance(columns, dict):
        bad = [
            (f"columns.{k}", "expected a mapping of rules")
            for k, v in columns.items()
            if not isinstance(v, dict)
        ]
        if bad:
            raise SuiteError(path, bad)
    return yaml_schema.parse_model(Suite, raw, path, SuiteError)


def load_suite(path: str | Path) -> Suite:
    """Read and validate one suite file; its model must match the file name.

    Raises:
        SuiteError: naming the file, each offending field and what is wrong.
    """
    path = Path(path)
    suite = parse_suite(yaml_schema.read_yaml(path, SuiteError), path)
    yaml_schema.require_file_name(path, "model", suite.model, SuiteError)
    return suite


def suite_path(model: str, expectations_dir: Path | None = None) -> Path:
    """Where a model's suite lives: <expectations dir>/<model>.yaml by default."""
    base = expectations_dir or settings.expectations_dir()
    return Path(base) / f"{model}.yaml"


def suite_file(spec: ModelSpec) -> Path:
    """The model's suite file: spec.data_checks.suite or include/expectations/<m>.yaml."""
    if spec.data_checks.suite:
        return settings.resolve_path(spec.data_checks.suite)
    return suite_path(spec.name)


def suite_for(spec: ModelSpec) -> Suite:
    """The model's suite (spec.data_checks.suite or include/expectations/<m>.yaml), narrowed
    to the columns the spec reads."""
    suite = load_suite(suite_file(spec))
    # a suite may describe the whole source table; the gate checks what the model reads
    wanted = set(spec.columns)
    return suite.model_copy(
        update={"columns": {c: r for c, r in suite.columns.items() if c in wanted}}
    )


# --------------------------------------------------------------------------------------------
# Writing suites

_COLUMN_KEYS = (
    "dtype",
    "nullable",
    "max_null_fraction",
    "unique",
    "min",
    "max",
    "allowed",
    "min_distinct",
    "severity",
    "severities",
)


def _flow(value: Any) -> str:
    """A value as one line of YAML flow style."""
    text = yaml.safe_dump([value], default_flow_style=True, width=1 << 20, sort_keys=False)
    return text.strip()[1:-1]


def _column_dict(rules: ColumnRules) -> dict[str, Any]:
    """The rules that differ from the defaults, in a stable order."""
    raw = rules.model_dump(exclude_defaults=True)
    return {k: raw[k] for k in _COLUMN_KEYS if k in raw}


def dump_suite(suite: Suite, *, header: str | None = None) -> str:
    """The suite as YAML text for review: stable key order, one line per column if it fits."""
    lines = [f"# {ln}".rstrip() for ln in (header or "").splitlines()]
    lines.append(f"model: {_flow(suite.model)}")
    if suite.description:
        lines.append(f"description: {_flow(suite.description)}")
    lines.append(f"target: {_flow(suite.target)}")
    lines.append(f"severity: {suite.severity}")
    lines.append(f"extra_columns: {suite.extra_columns}")
    lines.append(f"row_count: {_flow(suite.row_count.model_dump(exclude_none=True))}")
    lines.append("columns:")
    for name, rules in suite.columns.items():
        body = _column_dict(rules)
        one = f"  {_flow(name)}: {_flow(body)}"
        if len(one) <= 100:
            lines.append(one)
            continue
        lines.append(f"  {_flow(name)}:")
        lines += [f"    {k}: {_flow(v)}" for k, v in body.items()]
    return "\n".join(lines) + "\n"


def write_suite(suite: Suite, path: str | Path, *, header: str | None = None) -> None:
    """Write a suite file for review (atomic); `header` becomes a comment on top."""
    text = dump_suite(suite, header=header)
    if parse_suite(yaml.safe_load(text), path) != suite:  # the file must mean what we meant
        raise RuntimeError(f"{path}: the written suite does not read back the same")
    write_text(str(Path(path).resolve()), text)
