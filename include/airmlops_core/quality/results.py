"""What a data check found: `Failure` (one failed expectation, with evidence) and `CheckResult`.

Plain JSON-able data (XCom, result.json); no Great Expectations import.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from airmlops_core.jsonsafe import jsonable

SAMPLE_SIZE = 10  # offending values kept per failure, most frequent first


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
