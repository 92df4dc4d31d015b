"""The partition gate: check a partition, then score it or quarantine it; the run's manifest.

Each partition is checked against the model's batch suite (`quality.batch_checks`, chunk by
chunk) before it is scored; the input is staged (and hashed) once for both passes. A partition
that fails the gate, or that the model's signature rejects, is not scored: it is quarantined
with its evidence and any output an earlier attempt published for it is removed. Once every
partition has a result, `write_manifest` lists them next to the outputs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from airmlops_core.errors import ScoringError
from airmlops_core.io import data, s3_objects
from airmlops_core.io.scored import logical_date_iso, manifest_uri, partition_name
from airmlops_core.quality import batch_checks, evidence
from airmlops_core.quality.check import make_result, wrong_delimiter
from airmlops_core.quality.results import CheckResult, Failure
from airmlops_core.quality.suite import READABLE_RULE, Suite
from airmlops_core.score import reading, stream
from airmlops_core.score.model import LoadedModel
from airmlops_core.score.results import PartitionOutcome
from airmlops_core.tracking import resources

log = logging.getLogger(__name__)

CHECK_CHUNK_ROWS = 262_144
SIGNATURE_RULE = "model.signature"


# --------------------------------------------------------------------------------------------
# Gate


def check_partition(
    input_uri: str,
    suite: Suite,
    *,
    row_key: str | None = None,
    s3_client: Any | None = None,
    chunk_rows: int = CHECK_CHUNK_ROWS,
) -> CheckResult:
    """Check one partition against the model's batch suite, chunk by chunk.

    See `batch_checks` for how rules are split between chunks and the whole table. An
    unreadable file (truncated, not UTF-8, wrong delimiter, a value that does not parse as the
    suite's dtype) is a failed result naming the file, not an exception.

    Raises:
        DataError: the file does not exist.
    """
    with reading.stage(input_uri, s3_client) as staged:
        return _check_staged(staged, suite, row_key, chunk_rows)


def _check_staged(
    staged: reading.Staged, suite: Suite, row_key: str | None, chunk_rows: int
) -> CheckResult:
    import pandas as pd

    checked = batch_checks.batch_suite(suite, row_key)
    try:
        reading.inspect(staged)
    except ScoringError as exc:
        return _failed(checked, staged.uri, str(exc))
    reason = wrong_delimiter(pd.DataFrame(columns=staged.columns), checked)
    if staged.fmt == "csv" and reason is not None:
        return _failed(checked, staged.uri, f"{staged.uri}: {reason}")
    check = batch_checks.StreamingCheck(
        checked, staged.uri, staged.columns, tolerated=[suite.target] if suite.target else []
    )
    try:
        for batch in reading.batches(
            staged, check.columns, batch_checks.csv_types(checked), chunk_rows
        ):
            check.add(batch)
    except ScoringError as exc:
        column = exc.column if exc.column in checked.columns else None
        check.fail_read(str(exc), column=column)
    return check.result()


def _failed(
    suite: Suite,
    uri: str,
    reason: str,
    rule: str = READABLE_RULE,
    column: str | None = None,
) -> CheckResult:
    expected = (
        "a readable Parquet/CSV file"
        if rule == READABLE_RULE
        else "input that matches the model's signature"
    )
    failure = Failure(
        rule=rule,
        expectation="read",
        column=column,
        severity="block",
        observed=reason,
        expected=expected,
    )
    return make_result(suite, [failure], rows=0, evaluated=0, batch=True, source=uri)


def score_or_quarantine(
    model: LoadedModel,
    input_uri: str,
    *,
    suite: Suite,
    output_uri: str,
    quarantine_uri: str,
    row_key: str | None,
    logical_date: str | dt.datetime,
    s3_client: Any | None = None,
    chunk_rows: int = stream.CHUNK_ROWS,
    check_chunk_rows: int = CHECK_CHUNK_ROWS,
    workers: int | None = None,
) -> PartitionOutcome:
    """Gate one partition with the batch suite, then score it, or quarantine it.

    The input is staged (and hashed) once for both passes. A partition that fails the gate, or
    that the model's signature rejects, is not scored: it is quarantined with its evidence
    (`evidence.quarantine`: result.json + report.html, plus the input's bytes as
    input.<ext>), any output an earlier attempt published for it is removed, and the result
    says why. Other partitions are unaffected: the caller decides how the run ends.

    Args:
        quarantine_uri: a directory or s3:// prefix for this partition's evidence.
        Others: as `stream.score_partition`; `suite` is the model's suite (the label is
            dropped here).

    Returns:
        `stream.score_partition`'s dict plus "check" (warnings, summary), or for a rejected
        partition: status "quarantined", rows_in, quarantined_rows, failed_rules, message,
        quarantine_uri, output_uri None.
    """
    start = time.perf_counter()
    with reading.stage(input_uri, s3_client) as staged:
        result = _check_staged(staged, suite, row_key, check_chunk_rows)
        if result.success:
            types = batch_checks.csv_types(batch_checks.batch_suite(suite, row_key))
            try:
                out = stream.score_staged(
                    model,
                    staged,
                    output_uri,
                    row_key=row_key,
                    logical_date=logical_date,
                    s3_client=s3_client,
                    chunk_rows=chunk_rows,
                    column_types=types,
                    start=start,
                    workers=workers,
                )
            except ScoringError as exc:
                checked = batch_checks.batch_suite(suite, row_key)
                result = dataclasses.replace(
                    _failed(checked, staged.uri, str(exc), SIGNATURE_RULE, exc.column),
                    rows=result.rows,
                )
            else:
                out["check"] = {
                    "success": True,
                    "warnings": len(result.warnings),
                    "summary": result.summary(),
                }
                return out
        return _quarantine(
            model,
            staged,
            result,
            output_uri=output_uri,
            quarantine_uri=quarantine_uri,
            logical_date=logical_date,
            s3_client=s3_client,
            start=start,
        )


# --------------------------------------------------------------------------------------------
# Quarantine


def _copy_input(staged: reading.Staged, dest: str, s3_client: Any | None) -> str:
    """The input's exact bytes next to the evidence (streamed, atomic)."""
    if data.is_s3(dest):
        s3_objects.upload_file(str(staged.path), dest, s3_client)
        return dest
    path = data.local_path(dest)

    def write(sink: IO[bytes]) -> None:
        with staged.path.open("rb") as src:
            shutil.copyfileobj(src, sink, 1 << 20)

    data.write_local_atomic(dest, path, write)
    return str(path)


def _remove(uri: str, s3_client: Any | None) -> bool:
    """Delete a published output (a partition quarantined on a re-run); True if it existed."""
    if data.is_s3(uri):
        if not s3_objects.object_exists(uri, s3_client):
            return False
        s3_objects.delete_object(uri, s3_client)
        return True
    path = data.local_path(data.resolve_uri(uri, os.getcwd()))
    if path.is_file():
        path.unlink()
        return True
    return False


def _quarantine(
    model: LoadedModel,
    staged: reading.Staged,
    result: CheckResult,
    *,
    output_uri: str,
    quarantine_uri: str,
    logical_date: str | dt.datetime,
    s3_client: Any | None,
    start: float,
) -> PartitionOutcome:
    q = evidence.quarantine(None, staged.uri, result, quarantine_uri, s3_client=s3_client)
    ext = Path(staged.path.name).suffix.lower() or f".{staged.fmt}"
    copied = _copy_input(staged, data.join_uri(q["uri"], f"input{ext}"), s3_client)
    removed = _remove(output_uri, s3_client)
    rules = ", ".join(result.failed_rules) or "no blocking failure"
    message = (
        f"{staged.uri} was not scored with {model.name} version {model.version}: it "
        f"failed {rules}; quarantined at {q['uri']}"
        + (f" (removed the output {output_uri} of an earlier attempt)" if removed else "")
        + f". {result.summary()}"
    )
    log.warning(message)
    return {
        "status": "quarantined",
        "partition": partition_name(staged.uri),
        "input_uri": staged.uri,
        "input_sha256": staged.sha256,
        "output_uri": None,
        "output_sha256": None,
        "rows_in": result.rows,
        "rows_out": 0,
        "quarantined_rows": result.rows,
        "failed_rules": result.failed_rules,
        "message": message,
        "quarantine_uri": q["uri"],
        "quarantined_input": copied,
        "model_name": model.name,
        "model_version": model.version,
        "logical_date": logical_date_iso(logical_date),
        "seconds": round(time.perf_counter() - start, 3),
        "peak_rss_mib": round(resources.peak_rss_mib(), 1),
    }


# --------------------------------------------------------------------------------------------
# Manifest

_MANIFEST_FIELDS = (
    "partition",
    "status",
    "input_uri",
    "input_sha256",
    "output_uri",
    "output_sha256",
    "rows_in",
    "rows_out",
    "quarantined_rows",
    "failed_rules",
    "quarantine_uri",
)


def write_manifest(
    output_base: str, results: Sequence[Mapping[str, Any]], *, s3_client: Any | None = None
) -> dict[str, Any]:
    """Write the run's manifest next to its outputs (atomically, deterministic bytes).

    Args:
        output_base: the same base the outputs were written under.
        results: every partition's result dict (scored and quarantined) of one run.

    Returns:
        The manifest (model, version, logical date, partitions sorted by name, totals) and
        its "uri".

    Raises:
        ValueError: no results, results of different runs/versions, or a partition twice.
    """
    if not results:
        raise ValueError("write_manifest: no partition results")
    keys = {(r["model_name"], r["model_version"], r["logical_date"]) for r in results}
    if len(keys) != 1:
        raise ValueError(f"write_manifest: results mix models/versions/dates: {sorted(keys)}")
    names = [r["partition"] for r in results]
    if len(set(names)) != len(names):
        raise ValueError(
            f"write_manifest: partitions listed twice: "
            f"{sorted({n for n in names if names.count(n) > 1})}"
        )
    model, version, date = keys.pop()
    parts = [
        {k: r.get(k) for k in _MANIFEST_FIELDS}
        for r in sorted(results, key=lambda r: r["partition"])
    ]
    manifest = {
        "model_name": model,
        "model_version": version,
        "logical_date": date,
        "partitions": parts,
        "totals": {
            "partitions": len(parts),
            "scored": sum(p["status"] == "scored" for p in parts),
            "quarantined": sum(p["status"] == "quarantined" for p in parts),
            "rows_in": sum(int(p["rows_in"] or 0) for p in parts),
            "rows_out": sum(int(p["rows_out"] or 0) for p in parts),
            "quarantined_rows": sum(int(p["quarantined_rows"] or 0) for p in parts),
        },
    }
    uri = manifest_uri(output_base, model, date)
    text = json.dumps(manifest, indent=2, sort_keys=True, default=str) + "\n"
    written = evidence.write_text(uri, text, s3_client=s3_client, content_type="application/json")
    return {**manifest, "uri": written}
