"""The data gate: Great Expectations checks of a table against a model's reviewed suite.

`validate` runs the suite with GX 1.x called directly (an ephemeral context built once per
process, a pandas dataframe asset, one ValidationDefinition per run) and turns the result into a
`CheckResult`; a GX run does not raise on failed expectations, the gate reads the success flags.
`validate_uri` also turns an unreadable file into a failed result. No Airflow imports: usable
from tests and a CLI.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from airmlops_core import errors
from airmlops_core.io import data
from airmlops_core.jsonsafe import jsonable
from airmlops_core.quality.results import SAMPLE_SIZE, CheckResult, Failure
from airmlops_core.quality.suite import (
    COLUMN_RULES,
    DUPLICATE_COLUMNS_RULE,
    EXTRA_COLUMNS_RULE,
    READABLE_RULE,
    ROW_COUNT_RULE,
    RUN_RULE,
    ColumnRules,
    Suite,
)

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

_DELIMITERS = (";", "\t", "|")


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


def collapse(found: list[tuple[Failure, bool]], suite: Suite, *, empty: bool) -> list[Failure]:
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


def make_result(
    suite: Suite,
    failures: Iterable[Failure],
    *,
    rows: int,
    evaluated: int,
    batch: bool,
    source: str | None,
) -> CheckResult:
    """The verdict on a suite's failures: blocking ones fail it, the others are warnings."""
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
    start = time.perf_counter()
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
        return make_result(
            checked, [*pre, crash], rows=len(df), evaluated=0, batch=batch, source=source
        )
    found = [(f, raised) for f, raised in map(_to_failure, run.results) if f is not None]
    kept = collapse(found, checked, empty=len(df) == 0)
    result = make_result(
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
        time.perf_counter() - start,
    )
    return result


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
    return make_result(checked, [failure], rows=0, evaluated=0, batch=batch, source=uri)


def wrong_delimiter(df: pd.DataFrame, suite: Suite) -> str | None:
    """Why a frame read as one column looks like a CSV with the wrong delimiter, else None."""
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
    reason = wrong_delimiter(df, suite)
    if reason is not None:
        return _unreadable(suite, uri, f"{uri}: {reason}", batch=batch), None
    if uri.lower().endswith(".csv"):
        df = _apply_csv_types(df, suite)
    return validate(df, suite, batch=batch, source=uri), df
