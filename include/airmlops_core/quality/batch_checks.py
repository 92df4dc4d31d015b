"""The data gate for scoring batches, chunk by chunk: a large partition is never loaded whole.

A scoring batch is checked against the model's suite without the label (`Suite.for_batch`),
with the row key required, non-null and unique (`batch_suite`). `StreamingCheck` takes the
partition in chunks and gives one `CheckResult`, the same shape `check.validate` gives:

- row rules (`exists`, `dtype`, `nullable`, `range`, `allowed`) run per chunk through
  `check.validate` (Great Expectations); their failures are merged across chunks
  (counts summed, percentages over all rows, the first sample values kept);
- table rules are aggregated across chunks here: `table.row_count` (total rows),
  `table.extra_columns` (from the file's header, not its data), `max_null_fraction` (null
  counts), `min_distinct` (a set capped at the wanted count) and `unique`, which is exact in
  bounded memory: key values are spilled to 64 hash buckets on disk once more than
  `UNIQUE_IN_MEMORY_ROWS` are seen, and each bucket is checked on its own.

The reader lives in `airmlops_core.score.gate` (`check_partition`); this module only
judges chunks.
No Airflow imports.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airmlops_core.jsonsafe import jsonable
from airmlops_core.quality import check
from airmlops_core.quality.results import SAMPLE_SIZE, CheckResult, Failure
from airmlops_core.quality.suite import (
    EXTRA_COLUMNS_RULE,
    READABLE_RULE,
    ROW_COUNT_RULE,
    ColumnRules,
    RowCount,
    Suite,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

UNIQUE_IN_MEMORY_ROWS = 2_000_000
UNIQUE_BUCKETS = 64

# Suite dtypes read from CSV with a fixed Arrow type, so every chunk parses the same way.
_CSV_TYPES = {
    "int8": "int8",
    "int16": "int16",
    "int32": "int32",
    "int64": "int64",
    "Int8": "int8",
    "Int16": "int16",
    "Int32": "int32",
    "Int64": "int64",
    "uint8": "uint8",
    "uint16": "uint16",
    "uint32": "uint32",
    "uint64": "uint64",
    "float32": "float32",
    "float64": "float64",
    "Float32": "float32",
    "Float64": "float64",
    "bool": "bool_",
    "boolean": "bool_",
    "str": "string",
    "string": "string",
    "object": "string",
}


def batch_suite(suite: Suite, row_key: str | None) -> Suite:
    """The suite a scoring batch must pass: no label; the row key present, non-null, unique.

    A row key identifies a row of output (lineage, idempotent upserts), so it is held to
    that even when the suite does not say so; its other rules (dtype...) are kept.
    """
    batch = suite.for_batch()
    if not row_key:
        return batch
    rules = batch.columns.get(row_key, ColumnRules())
    keyed = rules.model_copy(update={"nullable": False, "max_null_fraction": None, "unique": True})
    columns = {row_key: keyed, **{c: r for c, r in batch.columns.items() if c != row_key}}
    return batch.model_copy(update={"columns": columns})


def csv_types(suite: Suite) -> dict[str, pa.DataType]:
    """Arrow types to parse CSV columns with, from the suite's dtypes (where unambiguous)."""
    import pyarrow as pa

    out: dict[str, pa.DataType] = {}
    for col, rules in suite.columns.items():
        if isinstance(rules.dtype, str) and rules.dtype in _CSV_TYPES:
            out[col] = getattr(pa, _CSV_TYPES[rules.dtype])()
        elif isinstance(rules.dtype, str) and rules.dtype.startswith("datetime64"):
            out[col] = pa.timestamp("us")
    return out


def _chunk_suite(suite: Suite) -> Suite:
    """The rules that hold row by row (checked per chunk); table rules are aggregated."""
    columns = {}
    for col, r in suite.columns.items():
        update: dict[str, Any] = {"unique": False, "min_distinct": None}
        if r.nulls_rule == "max_null_fraction":
            update["max_null_fraction"] = None
        columns[col] = r.model_copy(update=update)
    return suite.model_copy(
        update={
            "columns": columns,
            "row_count": RowCount(min=0),
            "extra_columns": "ignore",
            "target": None,
        }
    )


class _Merged:
    """One rule's failures across chunks."""

    def __init__(self, first: Failure) -> None:
        self.first = first
        self.count: int | None = first.unexpected_count
        self.samples: list[Any] = list(first.sample_values)

    def add(self, f: Failure) -> None:
        if f.unexpected_count is not None:
            self.count = (self.count or 0) + f.unexpected_count
        seen = {json.dumps(v, sort_keys=True, default=str) for v in self.samples}
        for v in f.sample_values:
            key = json.dumps(v, sort_keys=True, default=str)
            if len(self.samples) < SAMPLE_SIZE and key not in seen:
                self.samples.append(v)
                seen.add(key)

    def failure(self, rows: int) -> Failure:
        f = self.first
        pct = None
        if self.count is not None and rows:
            pct = round(100.0 * self.count / rows, 4)
        return Failure(
            rule=f.rule,
            expectation=f.expectation,
            column=f.column,
            severity=f.severity,
            unexpected_count=self.count,
            unexpected_percent=pct if self.count is not None else None,
            sample_values=self.samples,
            observed=f.observed,
            expected=f.expected,
        )


class _UniqueValues:
    """Exact duplicate detection for one column in bounded memory.

    Values are kept in memory up to `UNIQUE_IN_MEMORY_ROWS`; past that everything is spilled
    to `UNIQUE_BUCKETS` Arrow IPC files by a hash of the value, so equal values share a bucket
    and each bucket is checked alone (memory: rows / buckets).
    """

    def __init__(self, column: str, tmp_dir: Path) -> None:
        self.column = column
        self.tmp_dir = tmp_dir
        self.buffered: list[pa.Array] = []
        self.buffered_rows = 0
        self.writers: dict[int, Any] = {}
        self.sinks: dict[int, Any] = {}
        self.paths: dict[int, Path] = {}

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        import pyarrow as pa

        arr = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        arr = arr.drop_null()  # nulls are the null rule's business, as in GX
        if len(arr) == 0:
            return
        if self.writers:
            self._spill(arr)
            return
        self.buffered.append(arr)
        self.buffered_rows += len(arr)
        if self.buffered_rows > UNIQUE_IN_MEMORY_ROWS:
            for a in self.buffered:
                self._spill(a)
            self.buffered, self.buffered_rows = [], 0

    def _spill(self, arr: pa.Array) -> None:
        import numpy as np
        import pandas as pd
        import pyarrow as pa

        hashes = pd.util.hash_array(arr.to_numpy(zero_copy_only=False))
        bucket = (hashes % np.uint64(UNIQUE_BUCKETS)).astype(np.int64)
        order = np.argsort(bucket, kind="stable")
        counts = np.bincount(bucket, minlength=UNIQUE_BUCKETS)
        sorted_arr = arr.take(pa.array(order))
        start = 0
        for b in range(UNIQUE_BUCKETS):
            n = int(counts[b])
            if n:
                self._writer(b, arr.type).write(
                    pa.record_batch([sorted_arr.slice(start, n)], names=["v"])
                )
            start += n

    def _writer(self, bucket: int, type_: pa.DataType) -> Any:
        import pyarrow as pa

        if bucket not in self.writers:
            path = self.tmp_dir / f"{bucket:03d}.arrow"
            self.paths[bucket] = path
            self.sinks[bucket] = pa.OSFile(str(path), "wb")
            self.writers[bucket] = pa.ipc.new_stream(self.sinks[bucket], pa.schema([("v", type_)]))
        return self.writers[bucket]

    def _groups(self) -> Iterator[pa.Array]:
        """The values, one bucket at a time (all of them when nothing was spilled)."""
        import pyarrow as pa

        if not self.writers:
            if self.buffered:
                yield pa.concat_arrays(self.buffered)
            return
        for b in sorted(self.writers):
            self.writers[b].close()
            self.sinks[b].close()
        for b in sorted(self.paths):
            with pa.memory_map(str(self.paths[b])) as f:
                yield pa.ipc.open_stream(f).read_all().column("v").combine_chunks()

    def duplicates(self) -> tuple[int, list[Any]]:
        """(rows whose value occurs more than once, the most repeated values)."""
        import pyarrow.compute as pc

        rows = 0
        top: Counter[Any] = Counter()
        for arr in self._groups():
            counts = pc.value_counts(arr)
            dup = counts.filter(pc.greater(counts.field("counts"), 1))
            if len(dup) == 0:
                continue
            n = dup.field("counts").to_pylist()
            rows += sum(n)
            for v, c in zip(dup.field("values").to_pylist(), n, strict=True):
                top[v] = c
                if len(top) > 4 * SAMPLE_SIZE:  # keep the sample bounded
                    top = Counter(dict(top.most_common(SAMPLE_SIZE)))
        return rows, [jsonable(v) for v, _ in top.most_common(SAMPLE_SIZE)]


class StreamingCheck:
    """Check a partition chunk by chunk against a batch suite; `result()` gives the verdict.

    Args:
        suite: the batch suite (see `batch_suite`).
        source: the partition's URI, recorded in the result and messages.
        file_columns: every column name in the file (its header), to find extra columns.
        tolerated: columns that may be present unchecked (the label).
    """

    def __init__(
        self, suite: Suite, source: str, file_columns: Iterable[str], tolerated: Iterable[str] = ()
    ) -> None:
        self.suite = suite
        self.source = source
        self.file_columns = list(file_columns)
        self.tolerated = set(tolerated)
        self.chunk_suite = _chunk_suite(suite)
        self.rows = 0
        self.chunks = 0
        self.merged: dict[str, _Merged] = {}
        self.nulls: Counter[str] = Counter()
        self.distinct: dict[str, set[Any]] = {
            c: set() for c, r in suite.columns.items() if r.min_distinct is not None
        }
        self._tmp = tempfile.TemporaryDirectory(prefix="airmlops-unique-")
        self.unique = {
            c: _UniqueValues(c, Path(self._tmp.name) / c)
            for c, r in suite.columns.items()
            if r.unique
        }
        for u in self.unique.values():
            u.tmp_dir.mkdir()
        self.read_error: Failure | None = None

    @property
    def columns(self) -> list[str]:
        """The suite's columns present in the file: what the reader should read."""
        return [c for c in self.suite.columns if c in self.file_columns]

    def add(self, batch: pa.RecordBatch | pa.Table) -> None:
        """Check one chunk (an Arrow batch of the suite's columns)."""
        df = batch.to_pandas()
        self.chunks += 1
        self.rows += len(df)
        result = check.validate(df, self.chunk_suite, source=self.source)
        for f in [*result.failures, *result.warnings]:
            if f.rule in self.merged:
                self.merged[f.rule].add(f)
            else:
                self.merged[f.rule] = _Merged(f)
        self._aggregate(batch, df)

    def _aggregate(self, batch: pa.RecordBatch | pa.Table, df: pd.DataFrame) -> None:
        for col, rules in self.suite.columns.items():
            if col not in df.columns:
                continue
            if rules.nulls_rule == "max_null_fraction":
                self.nulls[col] += int(df[col].isna().sum())
            wanted = rules.min_distinct
            if wanted is not None and len(self.distinct[col]) < wanted:
                for v in df[col].dropna().unique()[:wanted]:
                    self.distinct[col].add(v)
            if col in self.unique:
                self.unique[col].add(batch.column(col))

    def fail_read(self, reason: str, *, column: str | None = None) -> None:
        """The file cannot be read on (truncated, bad encoding, a value of the wrong type)."""
        if column is not None:
            self.read_error = Failure(
                rule=f"{column}.dtype",
                expectation="read",
                column=column,
                severity="block",
                observed=reason,
                expected=f"values readable as the suite's dtype {self.suite.columns[column].dtype}",
            )
        else:
            self.read_error = Failure(
                rule=READABLE_RULE,
                expectation="read",
                column=None,
                severity="block",
                observed=reason,
                expected="a readable Parquet/CSV file",
            )

    def result(self) -> CheckResult:
        """The verdict over every chunk added (table rules included)."""
        try:
            return self._result()
        finally:
            self._tmp.cleanup()

    def _result(self) -> CheckResult:
        suite = self.suite
        found = [m.failure(self.rows) for m in self.merged.values()]
        if self.read_error is not None:
            # the rest of the file was not seen: table rules would report on a fragment
            found.append(self.read_error)
            return check.make_result(
                suite,
                check.collapse([(f, False) for f in found], suite, empty=False),
                rows=self.rows,
                evaluated=len(self._expectations()),
                batch=True,
                source=self.source,
            )
        found += self._table_failures()
        kept = check.collapse([(f, False) for f in found], suite, empty=self.rows == 0)
        result = check.make_result(
            suite,
            kept,
            rows=self.rows,
            evaluated=len(self._expectations()),
            batch=True,
            source=self.source,
        )
        log.info(
            "batch check %s of %s: %s (%d rows in %d chunks, %d failures, %d warnings)",
            suite.model,
            self.source,
            "passed" if result.success else "FAILED",
            self.rows,
            self.chunks,
            len(result.failures),
            len(result.warnings),
        )
        return result

    def _expectations(self) -> list[Any]:
        return check.build_expectations(self.suite, tolerated=sorted(self.tolerated))

    def _table_failures(self) -> list[Failure]:
        suite, rows = self.suite, self.rows
        out: list[Failure] = []
        rc = suite.row_count
        if rows < rc.min or (rc.max is not None and rows > rc.max):
            text = (
                f"between {rc.min} and {rc.max} rows" if rc.max is not None else f">= {rc.min} rows"
            )
            out.append(
                Failure(
                    rule=ROW_COUNT_RULE,
                    expectation="expect_table_row_count_to_be_between",
                    column=None,
                    severity=rc.severity or suite.severity,
                    observed=rows,
                    expected=text,
                )
            )
        if suite.extra_columns != "ignore":
            extra = [
                c for c in self.file_columns if c not in suite.columns and c not in self.tolerated
            ]
            if extra:
                out.append(
                    Failure(
                        rule=EXTRA_COLUMNS_RULE,
                        expectation="expect_table_columns_to_match_set",
                        column=None,
                        severity=suite.extra_columns,
                        sample_values=extra,
                        observed=extra,
                        expected="no columns beyond the suite's",
                    )
                )
        for col, r in suite.columns.items():
            if col not in self.file_columns:
                continue
            if r.nulls_rule == "max_null_fraction" and rows:
                frac = float(r.max_null_fraction or 0.0)
                nulls = self.nulls[col]
                if nulls / rows > frac:
                    out.append(
                        Failure(
                            rule=f"{col}.max_null_fraction",
                            expectation="expect_column_values_to_not_be_null",
                            column=col,
                            severity=suite.severity_of(col, "max_null_fraction"),
                            unexpected_count=nulls,
                            unexpected_percent=round(100 * nulls / rows, 4),
                            expected=f"at most {frac:.2%} nulls",
                        )
                    )
            if r.min_distinct is not None and len(self.distinct[col]) < r.min_distinct:
                out.append(
                    Failure(
                        rule=f"{col}.min_distinct",
                        expectation="expect_column_unique_value_count_to_be_between",
                        column=col,
                        severity=suite.severity_of(col, "min_distinct"),
                        observed=len(self.distinct[col]),
                        expected=f">= {r.min_distinct} distinct values",
                    )
                )
            if col in self.unique:
                dup_rows, samples = self.unique[col].duplicates()
                if dup_rows:
                    out.append(
                        Failure(
                            rule=f"{col}.unique",
                            expectation="expect_column_values_to_be_unique",
                            column=col,
                            severity=suite.severity_of(col, "unique"),
                            unexpected_count=dup_rows,
                            unexpected_percent=round(100 * dup_rows / rows, 4),
                            sample_values=samples,
                            expected="unique values",
                        )
                    )
        return out
