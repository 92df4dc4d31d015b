"""The data gate: Great Expectations checks of a table against a model's reviewed suite.

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
rules; `severities: {rule: severity}` overrides single rules.

`validate` runs the suite with GX 1.x called directly (an ephemeral context built once per
process, a pandas dataframe asset, one ValidationDefinition per run) and turns the result into a
`CheckResult`; a GX run does not raise on failed expectations, the gate reads the success flags.
`validate_uri` also turns an unreadable file into a failed result. `render_html` writes an
offline, self-contained report; `quarantine` stores the offending data with its evidence.
No Airflow imports: usable from tests and a CLI.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import logging
import math
import os
import re
import sys
import threading
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, cast

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from airmlops_core import errors, htmlpage, settings
from airmlops_core.errors import SuiteError
from airmlops_core.htmlpage import esc
from airmlops_core.io import data
from airmlops_core.io.window import window_mask
from airmlops_core.jsonsafe import jsonable
from airmlops_core.spec import NAME_RE

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

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
SEVERITIES = ("block", "warn")
COLUMN_RULES = (
    "exists",
    "dtype",
    "nullable",
    "max_null_fraction",
    "range",
    "allowed",
    "unique",
    "min_distinct",
)
READABLE_RULE = "file.readable"
ROW_COUNT_RULE = "table.row_count"
EXTRA_COLUMNS_RULE = "table.extra_columns"
DUPLICATE_COLUMNS_RULE = "table.duplicate_columns"
RUN_RULE = "table.validation"
SAMPLE_SIZE = 10
_DTYPE_RE = re.compile(
    r"^(u?int(8|16|32|64)|U?Int(8|16|32|64)|float(16|32|64)|Float(32|64)|bool|boolean|str|string"
    r"|object|category|(datetime|timedelta)64(\[(s|ms|us|ns)(, [^\]]+)?\])?)$"
)
_DELIMITERS = (";", "\t", "|")


# --------------------------------------------------------------------------------------------
# Suite schema


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RowCount(_Strict):
    """Bounds on the number of rows (inclusive); max None is unbounded."""

    min: int = Field(default=1, ge=0)
    max: int | None = Field(default=None, ge=0)
    severity: Severity | None = None

    @model_validator(mode="after")
    def _order(self) -> RowCount:
        if self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self


class ColumnRules(_Strict):
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


class Suite(_Strict):
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
        if not NAME_RE.match(v):
            raise ValueError(
                f"'{v}' must be lowercase letters, digits and _, "
                "starting with a letter, at most 48 characters"
            )
        return v

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


def _field_path(loc: tuple[Any, ...]) -> str:
    return ".".join(str(p) for p in loc if p != "[key]") or "(top level)"


def _describe(error: Any) -> str:
    msg = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        msg = "unknown field"
    value = error.get("input")
    if error["type"] not in ("missing", "extra_forbidden") and isinstance(
        value, str | int | float | bool
    ):
        msg += f" (got {value!r})"
    return msg


def parse_suite(raw: Any, path: str | Path = "<suite>") -> Suite:
    """Validate a suite given as a mapping (e.g. loaded YAML).

    Raises:
        SuiteError: naming `path`, each offending field and what is wrong.
    """
    if not isinstance(raw, dict):
        kind = "empty" if raw is None else type(raw).__name__
        raise SuiteError(path, [("(top level)", f"expected a mapping of fields, got {kind}")])
    columns = raw.get("columns")
    if isinstance(columns, dict):
        bad = [
            (f"columns.{k}", "expected a mapping of rules")
            for k, v in columns.items()
            if not isinstance(v, dict)
        ]
        if bad:
            raise SuiteError(path, bad)
    try:
        return Suite.model_validate(raw)
    except ValidationError as exc:
        problems = [(_field_path(e["loc"]), _describe(e)) for e in exc.errors()]
        raise SuiteError(path, problems) from None


def load_suite(path: str | Path) -> Suite:
    """Read and validate one suite file; its model must match the file name.

    Raises:
        SuiteError: naming the file, each offending field and what is wrong.
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SuiteError(path, [("(file)", f"cannot read: {exc.strerror or exc}")]) from exc
    except UnicodeDecodeError as exc:
        raise SuiteError(path, [("(file)", f"not UTF-8 text: {exc.reason}")]) from exc
    except yaml.YAMLError as exc:
        raise SuiteError(path, [("(yaml)", f"not valid YAML: {exc}")]) from exc
    suite = parse_suite(raw, path)
    if suite.model != path.stem:
        raise SuiteError(
            path, [("model", f"'{suite.model}' must equal the file name '{path.stem}'")]
        )
    return suite


def suite_path(model: str, expectations_dir: Path | None = None) -> Path:
    """Where a model's suite lives: <project>/include/expectations/<model>.yaml by default."""
    base = expectations_dir or settings.project_dir() / "include" / "expectations"
    return Path(base) / f"{model}.yaml"


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


# --------------------------------------------------------------------------------------------
# Profiling


def _dtype_name(dtype: Any) -> str:
    name = str(dtype)
    return {"string": "str", "object": "str"}.get(name, name)


def _outward(value: float, step: float, up: bool) -> float:
    """`value` rounded outward to about three significant digits of `step`."""
    if step <= 0 or not math.isfinite(step):
        return float(value)
    decimals = max(0, 3 - math.floor(math.log10(step)))
    scale = 10.0**decimals
    scaled = round(value * scale, 6)  # no float fuzz: 0.8 * 1e4 must floor to 8000
    rounded = (math.ceil(scaled) if up else math.floor(scaled)) / scale
    return round(rounded, decimals)


def _profile_column(
    s: pd.Series, *, unique: bool, max_categories: int, margin: float
) -> dict[str, Any]:
    from pandas.api import types as ptypes

    rules: dict[str, Any] = {"dtype": _dtype_name(s.dtype)}
    null_fraction = float(s.isna().mean()) if len(s) else 0.0
    if null_fraction == 0:
        rules["nullable"] = False
    else:
        allowed = min(1.0, max(2 * null_fraction, 0.01))
        rules["max_null_fraction"] = math.ceil(allowed * 10_000) / 10_000
        rules["severities"] = {"max_null_fraction": "warn"}
    values = s.dropna()
    if unique:
        rules["unique"] = True
        return rules  # keys: new values are expected, ranges and sets would reject them
    distinct = int(values.nunique())
    if ptypes.is_bool_dtype(s.dtype):
        pass
    elif ptypes.is_numeric_dtype(s.dtype) and distinct:
        lo, hi = values.min(), values.max()
        if ptypes.is_integer_dtype(s.dtype) and {int(lo), int(hi)} <= {0, 1}:
            rules["allowed"] = sorted(int(v) for v in values.unique())
        else:
            span = margin * float(hi - lo)
            new_lo, new_hi = float(lo) - span, float(hi) + span
            if lo >= 0:
                new_lo = max(0.0, new_lo)
            if ptypes.is_integer_dtype(s.dtype):
                rules["min"], rules["max"] = math.floor(new_lo), math.ceil(new_hi)
            else:
                rules["min"] = _outward(new_lo, span, up=False)
                rules["max"] = _outward(new_hi, span, up=True)
    elif (ptypes.is_string_dtype(s.dtype) or str(s.dtype) == "category") and (
        0 < distinct <= max_categories
    ):
        rules["allowed"] = sorted(str(v) for v in values.unique())
    if distinct >= 2:
        rules["min_distinct"] = 2
    return rules


def profile(
    df: pd.DataFrame,
    *,
    model: str,
    target: str | None,
    unique: Sequence[str] = (),
    max_categories: int = 50,
    margin: float = 0.1,
    min_rows: int = 100,
) -> Suite:
    """Draft a suite from a reference dataset, for a person to review.

    Every column gets its dtype; `nullable: false` when it has no nulls, else a
    `max_null_fraction` of twice the observed fraction (at least 0.01) with severity warn.
    Numeric columns get min/max widened by `margin` times their range (never below 0 when the
    reference is non-negative; integer columns rounded outward); 0/1 integer flags and text
    columns with at most `max_categories` values get an `allowed` set; columns that vary get
    `min_distinct: 2`; `unique` columns are keys (no range, set or distinct rules).

    Args:
        df: the reference data, e.g. a training window.
        model: the model name (the suite file's name).
        target: the label column, or None.
        unique: columns whose values must be unique (row keys).
        max_categories: largest set of text values written as `allowed`.
        margin: widening of numeric ranges, as a fraction of the observed range.
        min_rows: the row-count floor (lowered to the reference size when that is smaller).

    Raises:
        ValueError: the frame is empty, or the target or a unique column is missing.
    """
    if len(df) == 0:
        raise ValueError("cannot profile an empty frame")
    missing = [c for c in [*([target] if target else []), *unique] if c not in df.columns]
    if missing:
        raise ValueError(
            f"columns {missing} are not in the frame; available: {[str(c) for c in df.columns]}"
        )
    columns = {
        str(name): _profile_column(
            df[name], unique=name in unique, max_categories=max_categories, margin=margin
        )
        for name in df.columns
    }
    raw = {
        "model": model,
        "target": target,
        "row_count": {"min": max(1, min(min_rows, len(df))), "max": max(50_000_000, 100 * len(df))},
        "columns": columns,
    }
    return parse_suite(raw, f"<profile of {model}>")


def profile_to_file(
    data_uri: str,
    model: str,
    target: str | None,
    out_path: str | Path,
    unique: Sequence[str] = (),
    *,
    window: tuple[str, Any, Any] | None = None,
    s3_client: Any | None = None,
    **options: Any,
) -> Suite:
    """Profile a data file (optionally a window of it) and write the suite for review.

    Args:
        data_uri: a Parquet/CSV path or s3:// URI.
        model: the model name.
        target: the label column.
        out_path: where to write the YAML.
        unique: row-key columns.
        window: (column, start, end) keeps rows with start <= column <= end, like a spec's
            source window.
        s3_client: for s3:// URIs.
        **options: passed to `profile` (max_categories, margin, min_rows).
    """
    df = data.read_frame(data_uri, s3_client=s3_client)
    where = f"{data_uri}"
    if window is not None:
        col, start, end = window
        df = df[window_mask(where, df[col], start, end)].reset_index(drop=True)
        where += f" ({start!r} <= {col} <= {end!r})"
    suite = profile(df, model=model, target=target, unique=unique, **options)
    header = (
        f"Data expectations for {model}: drafted by airmlops_core.quality.data_checks.profile "
        "from\n"
        f"{len(df)} rows of {where}. Review and edit by hand; see the module docs."
    )
    write_suite(suite, out_path, header=header)
    log.info("profiled %d rows of %s into %s", len(df), where, out_path)
    return suite


# --------------------------------------------------------------------------------------------
# Results


@dataclass(frozen=True)
class Failure:
    """One failed expectation, with the evidence.

    Attributes:
        rule: `<column>.<rule>` or `table.<rule>` / `file.readable`.
        expectation: the GX expectation type, e.g. expect_column_values_to_be_between.
        column: the column, or None for table and file rules.
        severity: block or warn.
        unexpected_count: rows that broke the rule (None for aggregate rules).
        unexpected_percent: their share of all rows, in percent.
        sample_values: a few offending values, most frequent first.
        observed: what GX observed (dtype, row count, distinct count, extra columns, error).
        expected: what the suite asked for, in words.
    """

    rule: str
    expectation: str
    column: str | None
    severity: str
    unexpected_count: int | None = None
    unexpected_percent: float | None = None
    sample_values: list[Any] = field(default_factory=list)
    observed: Any = None
    expected: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict."""
        out: dict[str, Any] = jsonable(dataclasses.asdict(self))
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Failure:
        """Rebuild from `to_dict` output."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def describe(self) -> str:
        """One line: rule, expectation, column, counts, samples, observed."""
        where = f" on column '{self.column}'" if self.column else ""
        text = f"{self.rule} ({self.expectation}{where}"
        text += f"; expected {self.expected})" if self.expected else ")"
        if self.unexpected_count is not None:
            text += f": {self.unexpected_count} unexpected"
            if self.unexpected_percent is not None:
                text += f" ({self.unexpected_percent:.2f}% of rows)"
        if self.sample_values:
            text += f", e.g. {json.dumps(self.sample_values[:5], default=str)}"
        if (
            self.observed is not None
            and self.unexpected_count is None
            and (self.observed != self.sample_values)
        ):
            text += f": observed {json.dumps(self.observed, default=str)}"
        return text


@dataclass(frozen=True)
class CheckResult:
    """The gate's verdict on one table.

    Attributes:
        suite: the model (suite) name.
        success: False iff any block-severity expectation failed.
        failures: failed block-severity expectations.
        warnings: failed warn-severity expectations (do not fail the gate).
        rows: rows in the table (0 when unreadable).
        evaluated: expectations evaluated.
        batch: whether the scoring variant (no target) was used.
        source: where the data came from, if known.
    """

    suite: str
    success: bool
    failures: list[Failure]
    warnings: list[Failure]
    rows: int
    evaluated: int
    batch: bool = False
    source: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for XCom and result.json)."""
        return {
            "suite": self.suite,
            "success": self.success,
            "failures": [f.to_dict() for f in self.failures],
            "warnings": [f.to_dict() for f in self.warnings],
            "rows": self.rows,
            "evaluated": self.evaluated,
            "batch": self.batch,
            "source": self.source,
            "summary": self.summary(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        """Rebuild from `to_dict` output."""
        return cls(
            suite=str(d["suite"]),
            success=bool(d["success"]),
            failures=[Failure.from_dict(f) for f in d.get("failures", [])],
            warnings=[Failure.from_dict(f) for f in d.get("warnings", [])],
            rows=int(d.get("rows", 0)),
            evaluated=int(d.get("evaluated", 0)),
            batch=bool(d.get("batch", False)),
            source=d.get("source"),
        )

    @property
    def failed_rules(self) -> list[str]:
        """Rules of the blocking failures."""
        return [f.rule for f in self.failures]

    def summary(self) -> str:
        """One readable paragraph: verdict, then every failure and warning with evidence."""
        variant = "batch " if self.batch else ""
        src = f" of {self.source}" if self.source else ""
        head = (
            f"{self.suite} {variant}data check {'PASSED' if self.success else 'FAILED'}: "
            f"{self.evaluated} expectations on {self.rows} rows{src}, "
            f"{len(self.failures)} blocking failure(s), {len(self.warnings)} warning(s)."
        )
        parts = [head]
        if self.failures:
            parts.append("Failures: " + "; ".join(f.describe() for f in self.failures) + ".")
        if self.warnings:
            parts.append("Warnings: " + "; ".join(f.describe() for f in self.warnings) + ".")
        return " ".join(parts)


# --------------------------------------------------------------------------------------------
# Great Expectations


def _gx_type(dtype: str) -> str:
    """A suite dtype as a type name GX's pandas type check understands."""
    if dtype in ("str", "string", "object"):
        return "str"  # str dtype by dtype; object columns value by value
    if dtype == "category":
        return "CategoricalDtypeType"
    if dtype.startswith("datetime64[") and "," in dtype:
        return "Timestamp"  # tz-aware: the dtype's scalar type
    if dtype == "boolean":
        return "bool"
    if dtype[:1] in ("I", "U", "F"):  # nullable extension types check as their numpy type
        return dtype.lower()
    return dtype


def _range_text(rules: ColumnRules) -> str:
    if rules.min is not None and rules.max is not None:
        return f"values in [{rules.min:g}, {rules.max:g}]"
    if rules.min is not None:
        return f"values >= {rules.min:g}"
    return f"values <= {rules.max:g}"


def _quiet_gx_logs() -> None:
    """GX logs hundreds of INFO lines while importing; keep them out of task logs unless the
    application configured the great_expectations logger itself."""
    gx_log = logging.getLogger("great_expectations")
    if gx_log.level == logging.NOTSET:
        gx_log.setLevel(logging.WARNING)


def build_expectations(suite: Suite, *, tolerated: Sequence[str] = ()) -> list[Any]:
    """The suite as GX expectation objects, each with meta {severity, rule, expected}.

    Args:
        suite: the suite (already the batch variant when scoring).
        tolerated: columns that may be present without being checked (the target in a
            scoring batch), so they are not reported as extra columns.
    """
    _quiet_gx_logs()
    import great_expectations.expectations as gxe

    def meta(rule: str, severity: str, expected: str) -> dict[str, Any]:
        return {"severity": severity, "rule": rule, "expected": expected}

    out: list[Any] = []
    rc = suite.row_count
    rc_text = f"between {rc.min} and {rc.max} rows" if rc.max is not None else f">= {rc.min} rows"
    out.append(
        gxe.ExpectTableRowCountToBeBetween(
            min_value=rc.min,
            max_value=rc.max,
            meta=meta(ROW_COUNT_RULE, rc.severity or suite.severity, rc_text),
        )
    )
    if suite.extra_columns != "ignore":
        out.append(
            gxe.ExpectTableColumnsToMatchSet(
                column_set=[*suite.columns, *(c for c in tolerated if c not in suite.columns)],
                exact_match=True,
                meta=meta(EXTRA_COLUMNS_RULE, suite.extra_columns, "no columns beyond the suite's"),
            )
        )
    for col, r in suite.columns.items():

        def m(rule: str, expected: str, col: str = col) -> dict[str, Any]:
            return meta(f"{col}.{rule}", suite.severity_of(col, rule), expected)

        present = m("exists", "the column to be present")
        out.append(gxe.ExpectColumnToExist(column=col, meta=present))
        if isinstance(r.dtype, str):
            out.append(
                gxe.ExpectColumnValuesToBeOfType(
                    column=col, type_=_gx_type(r.dtype), meta=m("dtype", f"dtype {r.dtype}")
                )
            )
        elif r.dtype:
            out.append(
                gxe.ExpectColumnValuesToBeInTypeList(
                    column=col,
                    type_list=[_gx_type(t) for t in r.dtype],
                    meta=m("dtype", f"dtype in {r.dtype}"),
                )
            )
        nulls = r.nulls_rule
        if nulls == "nullable":
            out.append(gxe.ExpectColumnValuesToNotBeNull(column=col, meta=m(nulls, "no nulls")))
        elif nulls == "max_null_fraction":
            frac = float(r.max_null_fraction or 0.0)
            out.append(
                gxe.ExpectColumnValuesToNotBeNull(
                    column=col, mostly=1.0 - frac, meta=m(nulls, f"at most {frac:.2%} nulls")
                )
            )
        if r.min is not None or r.max is not None:
            out.append(
                gxe.ExpectColumnValuesToBeBetween(
                    column=col, min_value=r.min, max_value=r.max, meta=m("range", _range_text(r))
                )
            )
        if r.allowed is not None:
            shown = json.dumps(r.allowed[:8], default=str)
            more = f" (+{len(r.allowed) - 8} more)" if len(r.allowed) > 8 else ""
            out.append(
                gxe.ExpectColumnValuesToBeInSet(
                    column=col,
                    value_set=list(r.allowed),
                    meta=m("allowed", f"values in {shown}{more}"),
                )
            )
        if r.unique:
            out.append(
                gxe.ExpectColumnValuesToBeUnique(column=col, meta=m("unique", "unique values"))
            )
        if r.min_distinct is not None:
            out.append(
                gxe.ExpectColumnUniqueValueCountToBeBetween(
                    column=col,
                    min_value=r.min_distinct,
                    meta=m("min_distinct", f">= {r.min_distinct} distinct values"),
                )
            )
    return out


class _GxRunner:
    """One ephemeral GX context per process: a pandas source, a dataframe asset, a batch
    definition for the whole frame. Each run adds a suite and a validation definition, runs it
    and deletes both (about a millisecond), so the context does not grow."""

    def __init__(self) -> None:
        _quiet_gx_logs()
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        self._gx = gx
        self.context = gx.get_context(mode="ephemeral")
        self.context.variables.progress_bars = ProgressBarsConfig(globally=False)
        source = self.context.data_sources.add_pandas("airmlops")
        asset = source.add_dataframe_asset("frame")
        self.batch_definition = asset.add_batch_definition_whole_dataframe("whole_frame")
        self._ids = itertools.count()
        self._lock = threading.Lock()

    def run(self, name: str, expectations: list[Any], df: pd.DataFrame) -> Any:
        gx = self._gx
        with self._lock:
            run_name = f"{name}-{next(self._ids)}"
            suite = self.context.suites.add(
                gx.ExpectationSuite(name=run_name, expectations=expectations)
            )
            vd = self.context.validation_definitions.add(
                gx.ValidationDefinition(name=run_name, data=self.batch_definition, suite=suite)
            )
            try:
                return vd.run(
                    batch_parameters={"dataframe": df},
                    # BASIC (counts, percentages, 50 sample values) costs ~25% less than
                    # SUMMARY; samples are ranked by frequency here.
                    result_format={"result_format": "BASIC", "partial_unexpected_count": 50},
                )
            finally:
                self.context.validation_definitions.delete(run_name)
                self.context.suites.delete(run_name)


_RUNNER: _GxRunner | None = None
_RUNNER_LOCK = threading.Lock()


def _runner() -> _GxRunner:
    global _RUNNER
    with _RUNNER_LOCK:
        if _RUNNER is None:
            _RUNNER = _GxRunner()
        return _RUNNER


def _exception_message(info: Any) -> str | None:
    """The first exception message in a GX exception_info (flat, or keyed by metric)."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message") or "error")
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return str(value.get("exception_message") or "error")
    return None


def _samples(result: dict[str, Any]) -> list[Any]:
    """Distinct offending values from GX's partial list, most frequent first."""
    values = [jsonable(x) for x in result.get("partial_unexpected_list") or []]
    counts = Counter(json.dumps(v, sort_keys=True, default=str) for v in values)
    first: dict[str, Any] = {}
    for v in values:
        first.setdefault(json.dumps(v, sort_keys=True, default=str), v)
    ranked = sorted(first, key=lambda k: -counts[k])  # stable: ties keep first-seen order
    return [first[k] for k in ranked[:SAMPLE_SIZE]]


def _to_failure(evr: Any) -> tuple[Failure | None, bool]:
    """(Failure or None if it passed / is not a real failure, whether GX raised)."""
    if evr.success:
        return None, False
    cfg = evr.expectation_config
    meta = dict(cfg.meta or {})
    result = dict(evr.result or {})
    error = _exception_message(evr.exception_info)
    observed: Any = jsonable(result.get("observed_value"))
    samples = _samples(result)
    count = result.get("unexpected_count")
    percent = result.get("unexpected_percent_total", result.get("unexpected_percent"))
    if meta.get("rule") == EXTRA_COLUMNS_RULE:
        extra = list((result.get("details") or {}).get("mismatched", {}).get("unexpected", []))
        if not extra:  # only missing columns: the <column>.exists rules report those
            return None, False
        observed, samples, count, percent = extra, extra, None, None
    if error is not None:
        observed = f"could not be evaluated: {error}"
    elif cfg.type == "expect_column_to_exist":
        observed = "no such column"
    return Failure(
        rule=str(meta.get("rule", cfg.type)),
        expectation=str(cfg.type),
        column=cfg.kwargs.get("column"),
        severity=str(meta.get("severity", "block")),
        unexpected_count=None if count is None else int(count),
        unexpected_percent=None if percent is None else round(float(percent), 4),
        sample_values=samples,
        observed=observed,
        expected=str(meta.get("expected", "")),
    ), error is not None


def _collapse(found: list[tuple[Failure, bool]], suite: Suite, *, empty: bool) -> list[Failure]:
    """Drop consequences, keep causes: a missing column's other rules; rules that could not even
    be evaluated on a column of the wrong dtype; value rules of an empty table (the row count
    says it all). Sorted: table rules, then columns in suite order, rules in a fixed order."""
    missing = {f.column for f, _ in found if f.rule == f"{f.column}.exists"}
    wrong_type = {f.column for f, _ in found if f.rule == f"{f.column}.dtype"}
    kept = []
    for f, raised in found:
        rule = f.rule.rsplit(".", 1)[-1]
        if f.column in missing and rule != "exists":
            continue
        if raised and f.column in wrong_type and rule != "dtype":
            continue
        if empty and f.column is not None and rule not in ("exists", "dtype"):
            continue
        kept.append(f)
    columns = {c: i for i, c in enumerate(suite.columns)}
    rules = {r: i for i, r in enumerate(COLUMN_RULES)}
    return sorted(
        kept,
        key=lambda f: (
            f.column is not None,
            columns.get(f.column or "", -1),
            rules.get(f.rule.rsplit(".", 1)[-1], -1),
        ),
    )


def _result(
    suite: Suite,
    failures: Iterable[Failure],
    *,
    rows: int,
    evaluated: int,
    batch: bool,
    source: str | None,
) -> CheckResult:
    failures = list(failures)
    blocking = [f for f in failures if f.severity == "block"]
    return CheckResult(
        suite=suite.model,
        success=not blocking,
        failures=blocking,
        warnings=[f for f in failures if f.severity != "block"],
        rows=rows,
        evaluated=evaluated,
        batch=batch,
        source=source,
    )


def validate(
    df: pd.DataFrame, suite: Suite, *, batch: bool = False, source: str | None = None
) -> CheckResult:
    """Check a table against a suite with Great Expectations.

    Args:
        df: the table.
        suite: the model's suite.
        batch: the scoring variant: the target column and its rules are left out (the target
            may still be present; it is then neither checked nor an extra column).
        source: where the table came from, recorded in the result.

    Returns:
        The verdict; success is False iff a block-severity expectation failed. Never raises
        for bad data (an empty frame fails the row count; missing columns fail `exists`).
    """
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise TypeError(f"validate: expected a pandas DataFrame, got {type(df).__name__}")
    checked = suite.for_batch() if batch else suite
    names = [str(c) for c in df.columns]
    pre: list[Failure] = []
    dupes = sorted({c for c in names if names.count(c) > 1})
    if dupes:
        pre.append(
            Failure(
                rule=DUPLICATE_COLUMNS_RULE,
                expectation="unique column names",
                column=None,
                severity="block",
                sample_values=dupes,
                observed=dupes,
                expected="each column name once",
            )
        )
        df = df.loc[:, ~df.columns.duplicated()]
    if any(not isinstance(c, str) for c in df.columns):
        df = df.rename(columns=str)
    tolerated = [suite.target] if batch and suite.target else []
    expectations = build_expectations(checked, tolerated=tolerated)
    start = _clock()
    try:
        run = _runner().run(checked.model, expectations, df)
    except Exception as exc:  # GX bugs or odd frames: a failed gate, never a crash
        log.exception("Great Expectations could not run suite %s", checked.model)
        crash = Failure(
            rule=RUN_RULE,
            expectation="ValidationDefinition.run",
            column=None,
            severity="block",
            observed=f"{type(exc).__name__}: {exc}",
            expected="the suite to run",
        )
        return _result(
            checked, [*pre, crash], rows=len(df), evaluated=0, batch=batch, source=source
        )
    found = [(f, raised) for f, raised in map(_to_failure, run.results) if f is not None]
    kept = _collapse(found, checked, empty=len(df) == 0)
    result = _result(
        checked, [*pre, *kept], rows=len(df), evaluated=len(run.results), batch=batch, source=source
    )
    log.info(
        "data check %s%s: %s (%d rows, %d expectations, %d failures, %d warnings, %.2fs)",
        checked.model,
        " (batch)" if batch else "",
        "passed" if result.success else "FAILED",
        result.rows,
        result.evaluated,
        len(result.failures),
        len(result.warnings),
        _clock() - start,
    )
    return result


def _clock() -> float:
    import time

    return time.perf_counter()


def _unreadable(suite: Suite, uri: str, reason: str, *, batch: bool) -> CheckResult:
    failure = Failure(
        rule=READABLE_RULE,
        expectation="read_frame",
        column=None,
        severity="block",
        observed=reason,
        expected="a readable Parquet/CSV file",
    )
    checked = suite.for_batch() if batch else suite
    return _result(checked, [failure], rows=0, evaluated=0, batch=batch, source=uri)


def _wrong_delimiter(df: pd.DataFrame, suite: Suite) -> str | None:
    if df.shape[1] != 1 or len(suite.columns) < 2:
        return None
    name = str(df.columns[0])
    seps = [s for s in _DELIMITERS if s in name]
    if not seps:
        return None
    return (
        f"the file has a single column {name[:80]!r} whose name contains {seps[0]!r}: "
        "is the delimiter wrong? (CSV files must be comma-separated)"
    )


def _apply_csv_types(df: pd.DataFrame, suite: Suite) -> pd.DataFrame:
    """CSV has no types: read integer text as the suite's str/float dtype where lossless."""
    from pandas.api import types as ptypes

    out = df
    for col, rules in suite.columns.items():
        if col not in df.columns or not isinstance(rules.dtype, str):
            continue
        s = df[col]
        if rules.dtype in ("str", "string") and ptypes.is_integer_dtype(s.dtype):
            out = out.assign(**{col: s.astype("str")})
        elif rules.dtype.startswith("float") and ptypes.is_integer_dtype(s.dtype):
            out = out.assign(**{col: s.astype(rules.dtype)})
    return out


def validate_uri(
    uri: str,
    suite: Suite,
    *,
    batch: bool = False,
    s3_client: Any | None = None,
) -> tuple[CheckResult, pd.DataFrame | None]:
    """Read a file and check it; an unreadable file is a failed result, not an exception.

    CSV text is read with the suite's dtypes where that is lossless (integer-looking text in a
    str or float column).

    Returns:
        (result, the frame or None when it could not be read). Unreadable files (missing,
        truncated, empty, wrong delimiter) fail with rule `file.readable` naming the reason.
    """
    try:
        df = data.read_frame(uri, s3_client=s3_client)
    except errors.DataError as exc:
        log.warning("data check %s: %s is unreadable: %s", suite.model, uri, exc)
        return _unreadable(suite, uri, str(exc), batch=batch), None
    reason = _wrong_delimiter(df, suite)
    if reason is not None:
        return _unreadable(suite, uri, f"{uri}: {reason}", batch=batch), None
    if uri.lower().endswith(".csv"):
        df = _apply_csv_types(df, suite)
    return validate(df, suite, batch=batch, source=uri), df


# --------------------------------------------------------------------------------------------
# Report

_CSS = """
.pass{background:#1a7f37} .fail{background:#cf222e} .warnonly{background:#9a6700}
th,td{text-align:left;vertical-align:top;padding:8px 10px;border-bottom:1px solid #d8dee4}
th{background:#eaeef2;font-size:13px;text-transform:uppercase;letter-spacing:.03em}
.badge{display:inline-block;border-radius:10px;padding:1px 9px;font-size:12px;font-weight:600;
  color:#fff} .badge.block{background:#cf222e} .badge.warn{background:#9a6700}
"""


def _values_html(values: Any) -> str:
    if values is None or values == []:
        return ""
    if not isinstance(values, list):
        values = [values]
    shown = values[:SAMPLE_SIZE]
    return " ".join(f"<code>{esc(json.dumps(v, default=str))}</code>" for v in shown)


def _failure_rows(failures: list[Failure]) -> str:
    rows = []
    for f in failures:
        pct = "" if f.unexpected_percent is None else f"{f.unexpected_percent:.2f}%"
        count = "" if f.unexpected_count is None else f"{f.unexpected_count:,}"
        rows.append(
            "<tr>"
            f'<td><span class="badge {esc(f.severity)}">{esc(f.severity)}</span></td>'
            f"<td><b>{esc(f.rule)}</b><br><code>{esc(f.expectation)}</code></td>"
            f"<td>{esc(f.column or '(table)')}</td>"
            f"<td>{esc(f.expected)}</td>"
            f'<td class="num">{count}</td><td class="num">{pct}</td>'
            f"<td>{_values_html(f.sample_values)}</td>"
            f"<td>{_values_html(f.observed) if f.unexpected_count is None else ''}</td>"
            "</tr>"
        )
    return "\n".join(rows)


def _table(failures: list[Failure], empty: str) -> str:
    if not failures:
        return f'<p class="none">{esc(empty)}</p>'
    head = (
        "<tr><th>Severity</th><th>Rule / expectation</th><th>Column</th><th>Expected</th>"
        "<th>Unexpected</th><th>% rows</th><th>Sample values</th><th>Observed</th></tr>"
    )
    return f"<table>\n<thead>{head}</thead>\n<tbody>\n{_failure_rows(failures)}\n</tbody>\n</table>"


def render_html(result: CheckResult, *, title: str) -> str:
    """One self-contained HTML page (inline CSS, no external resources, no JavaScript).

    Shows the verdict, the key numbers, the summary paragraph and a table of every failure and
    warning with counts, percentages, sample values and observations.
    """
    if result.success and result.warnings:
        cls, verdict = "warnonly", "PASSED with warnings"
    elif result.success:
        cls, verdict = "pass", "PASSED"
    else:
        cls, verdict = "fail", "FAILED: data rejected"
    variant = "scoring batch (target not checked)" if result.batch else "training data"
    facts = [
        (f"{result.rows:,}", "rows"),
        (str(result.evaluated), "expectations"),
        (str(len(result.failures)), "blocking failures"),
        (str(len(result.warnings)), "warnings"),
    ]
    facts_html = "".join(
        f'<div class="fact"><b>{esc(v)}</b><span>{esc(k)}</span></div>' for v, k in facts
    )
    source = f" &middot; source <code>{esc(result.source)}</code>" if result.source else ""
    body = f"""<p class="sub">Suite <b>{esc(result.suite)}</b> &middot; {esc(variant)}{source}</p>
<div class="verdict {cls}">{esc(verdict)}<small>{len(result.failures)} blocking failure(s),
{len(result.warnings)} warning(s) in {result.evaluated} expectations on {result.rows:,} rows</small>
</div>
<div class="facts">{facts_html}</div>
<h2>Blocking failures</h2>
{_table(result.failures, "No blocking failures.")}
<h2>Warnings</h2>
{_table(result.warnings, "No warnings.")}
<h2>Summary</h2>
<p class="summary">{esc(result.summary())}</p>
<footer>Data gate of the airmlops pack, checked with Great Expectations.
This page is self-contained and needs no network.</footer>
"""
    return htmlpage.page(title, body, css=_CSS)


# --------------------------------------------------------------------------------------------
# Writing evidence


def write_text(
    uri: str,
    text: str,
    *,
    s3_client: Any | None = None,
    content_type: str = "text/plain; charset=utf-8",
) -> str:
    """Write UTF-8 text atomically (local: temp file + fsync + rename; S3: one put_object).

    Returns:
        The URI written (local paths normalised).

    Raises:
        errors.DataError: the destination is not writable.
    """
    body = text.encode("utf-8")
    if uri.startswith("s3://"):
        bucket, key = data.split_s3(uri)
        client = data.need_client(uri, s3_client)
        try:
            client.put_object(Bucket=bucket, Key=key, Body=body, ContentType=content_type)
        except data.s3_exceptions() as exc:
            raise data.s3_error(uri, exc) from exc
        return uri
    path = data.local_path(uri)

    def write(sink: IO[bytes]) -> None:
        sink.write(body)

    try:
        data.write_local_atomic(uri, path, write)
    except OSError as exc:
        raise errors.DataError(f"{uri}: cannot write: {exc}") from exc
    return str(path)


def _remove(uri: str, s3_client: Any | None) -> None:
    if uri.startswith("s3://"):
        bucket, key = data.split_s3(uri)
        try:
            data.need_client(uri, s3_client).delete_object(Bucket=bucket, Key=key)
        except data.s3_exceptions() as exc:
            raise data.s3_error(uri, exc) from exc
        return
    data.local_path(uri).unlink(missing_ok=True)


def quarantine(
    df: pd.DataFrame | None,
    source_uri: str,
    result: CheckResult,
    quarantine_uri: str,
    *,
    s3_client: Any | None = None,
) -> dict[str, Any]:
    """Store rejected data with its evidence: data.parquet, result.json and report.html.

    Idempotent: a second call overwrites the same names (and removes a stale data.parquet
    when the data is now unreadable).

    Args:
        df: the offending table, or None when it could not be read.
        source_uri: where the data came from (recorded in result.json).
        result: the failed check.
        quarantine_uri: a directory or s3:// prefix for this batch.
        s3_client: for s3:// destinations.

    Returns:
        {"uri": quarantine_uri, "data": DataRef dict or None, "result": uri, "report": uri}.
    """
    if not quarantine_uri.startswith("s3://"):
        quarantine_uri = data.resolve_uri(quarantine_uri, os.getcwd())
    data_uri = data.join_uri(quarantine_uri, "data.parquet")
    ref = None
    if df is not None:
        ref = data.write_frame(df, data_uri, s3_client=s3_client).to_dict()
    else:
        _remove(data_uri, s3_client)
    payload = {"source_uri": source_uri, "data": ref, "result": result.to_dict()}
    result_uri = write_text(
        data.join_uri(quarantine_uri, "result.json"),
        json.dumps(payload, indent=2, default=str) + "\n",
        s3_client=s3_client,
        content_type="application/json",
    )
    report_uri = write_text(
        data.join_uri(quarantine_uri, "report.html"),
        render_html(result, title=f"Quarantined data: {result.suite}"),
        s3_client=s3_client,
        content_type="text/html; charset=utf-8",
    )
    log.warning(
        "quarantined %s (%s) to %s",
        source_uri,
        ", ".join(result.failed_rules) or "no blocking failures",
        quarantine_uri,
    )
    return {"uri": quarantine_uri, "data": ref, "result": result_uri, "report": report_uri}


# --------------------------------------------------------------------------------------------
# CLI


def main(argv: list[str] | None = None) -> int:
    """`python -m airmlops_core.quality.data_checks profile|check ...`."""
    parser = argparse.ArgumentParser(prog="data_checks", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("profile", help="draft a suite from reference data")
    p.add_argument("data_uri")
    p.add_argument("--model", required=True)
    p.add_argument("--target")
    p.add_argument("--unique", action="append", default=[])
    p.add_argument("--out", type=Path, help="default: include/expectations/<model>.yaml")
    p.add_argument("--window", nargs=3, metavar=("COLUMN", "START", "END"))
    c = sub.add_parser("check", help="check a data file against a suite")
    c.add_argument("data_uri")
    c.add_argument("--model", required=True)
    c.add_argument("--batch", action="store_true", help="scoring variant (no target)")
    c.add_argument("--html", type=Path, help="also write the HTML report here")
    args = parser.parse_args(argv)
    if args.command == "profile":
        window = None
        if args.window:
            window = (args.window[0], *(yaml.safe_load(v) for v in args.window[1:]))
        out = args.out or suite_path(args.model)
        profile_to_file(args.data_uri, args.model, args.target, out, args.unique, window=window)
        print(f"wrote {out}")
        return 0
    suite = load_suite(suite_path(args.model))
    result, _ = validate_uri(args.data_uri, suite, batch=args.batch)
    print(result.summary())
    if args.html:
        args.html.write_text(render_html(result, title=f"Data check: {args.model}"), "utf-8")
    return 0 if result.success else 1


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    sys.exit(main())
