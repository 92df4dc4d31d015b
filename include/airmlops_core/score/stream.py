"""The streaming scorer: one partition through one model version, published atomically.

Streaming. A partition is read in chunks of `CHUNK_ROWS` rows (`reading.batches`). The calling
thread reads a chunk and copies it into the model's input; `workers` threads (default: the
usable CPUs, or $AIRMLOPS_SCORING_THREADS) predict chunks, each with OpenMP and BLAS at one
thread, so cores are filled by whole chunks instead of per-tree parallel regions; finished
chunks are written in input order, one output row group each. Memory holds about three chunks
plus the row group the Parquet reader is decoding (Arrow decodes a whole column chunk at a time,
so files with huge row groups cost more), whatever the partition's size. The input's sha256 is
computed by another thread while the first chunks are predicted (`reading.stage`).

Publishing. Local: the Parquet file is written to a hidden temporary name in the destination
directory, fsynced and renamed (`data.write_local_atomic`), so readers see the previous file
or the complete new one, never a partial one; temporaries left by a killed writer are removed
by the next attempt. S3: the finished local file is uploaded as one object (single PUT or a
multipart upload, which becomes visible only when complete). Output bytes are deterministic:
fixed writer options, no timestamps, one row group per chunk, whatever the number of workers;
the same input, model version and logical date give byte-identical files, at a path that
depends only on (output base, model, logical date, partition), so a re-run overwrites instead
of duplicating.

Output rows (column names in `airmlops_core.io.scored`): the row key (spec.row_key, or
`row_index` when the spec has none), `prediction`, for classifiers one `proba_<class>` column
per class (classes in the model's order; names sanitised, `proba_<i>` if that would collide),
then `model_name`, `model_version`, `input_sha256` and `logical_date` (UTC timestamp).
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import glob
import logging
import os
import tempfile
import time
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from airmlops_core import settings
from airmlops_core.errors import DataError, ScoringError
from airmlops_core.io import data, s3_objects
from airmlops_core.io.scored import (
    INPUT_SHA256,
    LOGICAL_DATE,
    MODEL_NAME,
    MODEL_VERSION,
    PREDICTION,
    ROW_INDEX,
    as_utc,
    logical_date_iso,
    partition_name,
)
from airmlops_core.score import reading
from airmlops_core.score.model import LoadedModel
from airmlops_core.score.results import PartitionOutcome
from airmlops_core.tracking import resources

log = logging.getLogger(__name__)

CHUNK_ROWS = 131_072
# Fixed writer options: part of the byte-for-byte reproducibility of the outputs.
PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 1,
    "write_statistics": True,
    "version": "2.6",
    "data_page_version": "1.0",
    "write_page_checksum": True,
    "store_schema": False,
}
_DICT = pa.dictionary(pa.int32(), pa.string())


class _Constants:
    """The lineage columns of one partition for any chunk length, without Python loops.

    Strings are dictionary arrays (one value, n int32 indices: 4 bytes a row instead of 64 for
    the hash); the file does not store the Arrow schema, so readers see plain strings.
    """

    def __init__(self, model: LoadedModel, sha256: str, logical_date: dt.datetime) -> None:
        self.values = [pa.array([model.name]), pa.array([model.version]), pa.array([sha256])]
        epoch = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
        self.micros = (logical_date - epoch) // dt.timedelta(microseconds=1)

    def arrays(self, n: int) -> list[pa.Array]:
        idx = pa.array(np.zeros(n, dtype=np.int32))
        stamps = pa.array(np.full(n, self.micros, dtype=np.int64)).view(
            pa.timestamp("us", tz="UTC")
        )
        return [pa.DictionaryArray.from_arrays(idx, v) for v in self.values] + [stamps]


def _output_schema(model: LoadedModel, key: pa.Field) -> pa.Schema:
    taken = {
        PREDICTION,
        MODEL_NAME,
        MODEL_VERSION,
        INPUT_SHA256,
        LOGICAL_DATE,
        *model.proba_columns,
    }
    if key.name in taken:
        raise ScoringError(
            f"row key '{key.name}' clashes with an output column ({sorted(taken)})", column=key.name
        )
    return pa.schema(
        [
            key,
            pa.field(PREDICTION, model.prediction_type),
            *(pa.field(c, pa.float64()) for c in model.proba_columns),
            pa.field(MODEL_NAME, _DICT),
            pa.field(MODEL_VERSION, _DICT),
            pa.field(INPUT_SHA256, _DICT),
            pa.field(LOGICAL_DATE, pa.timestamp("us", tz="UTC")),
        ]
    )


def default_workers() -> int:
    """Prediction threads per task: $AIRMLOPS_SCORING_THREADS, else the CPUs this process may
    use. Set the variable to cores / concurrent tasks when several tasks share a machine."""
    threads = settings.current().scoring_threads
    if threads is not None:
        return max(1, threads)
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _one_thread_each() -> contextlib.AbstractContextManager[Any]:
    """BLAS at one thread while chunks are predicted in parallel (restored afterwards)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        return contextlib.nullcontext()
    return threadpool_limits(limits=1, user_api="blas")


def _one_openmp_thread() -> None:
    """Worker-thread initializer: OpenMP's thread count is per calling thread, so each worker
    predicts its chunk on one core (no per-tree barriers; workers fill the cores)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        return
    threadpool_limits(limits=1, user_api="openmp")


def _score_into(
    sink: IO[bytes] | str,
    model: LoadedModel,
    staged: reading.Staged,
    *,
    row_key: str | None,
    logical_date: dt.datetime,
    chunk_rows: int,
    types: Mapping[str, pa.DataType],
    workers: int,
) -> int:
    """Stream the staged partition through the model into a Parquet sink; return rows.

    The calling thread reads a chunk, converts it to the model's input (a copy, so the
    reader's decoded row group is released early), hands it to one of `workers` prediction
    threads, and writes finished chunks in input order (at most workers + 1 in flight). The
    input hash is only needed at the first write, so hashing overlaps with the first
    predictions. Output bytes do not depend on `workers`.
    """
    wanted = [c.name for c in model.inputs if c.name in staged.columns]
    if row_key and row_key not in wanted:
        wanted.append(row_key)
    writer: pq.ParquetWriter | None = None
    schema: pa.Schema | None = None
    consts: _Constants | None = None
    rows = 0

    def predict(X: Any) -> list[pa.Array]:
        pred, proba = model.predict(X)
        cols = [pa.array(pred, type=model.prediction_type)]
        if proba is not None:
            cols += [pa.array(np.ascontiguousarray(proba[:, i])) for i in range(proba.shape[1])]
        return cols

    def write(key: pa.Array, predicted: list[pa.Array]) -> None:
        nonlocal consts
        assert writer is not None
        assert schema is not None
        if consts is None:
            consts = _Constants(model, staged.sha256, logical_date)
        writer.write_batch(
            pa.RecordBatch.from_arrays([key, *predicted, *consts.arrays(len(key))], schema=schema)
        )

    pending: collections.deque[tuple[pa.Array, Future[list[pa.Array]]]] = collections.deque()
    pool = ThreadPoolExecutor(
        max(1, workers), thread_name_prefix="airmlops-score", initializer=_one_openmp_thread
    )
    try:
        with _one_thread_each():
            for batch in reading.batches(staged, wanted, types, chunk_rows):
                n = batch.num_rows
                if n == 0:
                    continue
                if row_key:
                    key = batch.column(row_key)
                    if pa.types.is_dictionary(key.type):
                        key = key.dictionary_decode()
                    key = pa.concat_arrays([key])  # a copy: no view into the row group
                else:
                    key = pa.array(np.arange(rows, rows + n, dtype=np.int64))
                if writer is None:
                    schema = _output_schema(model, pa.field(row_key or ROW_INDEX, key.type))
                    dictionary = [MODEL_NAME, MODEL_VERSION, INPUT_SHA256]
                    if model.is_classifier:
                        dictionary.append(PREDICTION)  # a few classes: tiny RLE pages
                    writer = pq.ParquetWriter(
                        sink, schema, use_dictionary=dictionary, **PARQUET_OPTIONS
                    )
                X = model.features(batch, staged.uri)
                del batch
                pending.append((key, pool.submit(predict, X)))
                del X, key
                while len(pending) > workers:
                    done_key, future = pending.popleft()
                    write(done_key, future.result())
                rows += n
            while pending:
                done_key, future = pending.popleft()
                write(done_key, future.result())
    except BaseException:
        if writer is not None:
            with contextlib.suppress(Exception):
                writer.close()
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
    if writer is None or rows == 0:
        raise ScoringError(f"{staged.uri}: empty partition (0 rows): nothing to score")
    writer.close()
    return rows


def _remove_stale_temps(path: Path) -> None:
    """Temporaries of `data.write_local_atomic` left by a killed writer of this file."""
    for tmp in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            log.info("removed %s left by an interrupted write", tmp)


def _publish(uri: str, write: Any, s3_client: Any | None) -> tuple[str, str]:
    """Write a file through `write(sink)` and make it visible at `uri` in one step.

    Returns:
        (the published URI, the sha256 of its bytes).
    """
    if data.is_s3(uri):
        s3_objects.need_client(uri, s3_client)  # before scoring into the temp file
        with tempfile.TemporaryDirectory(prefix="airmlops-out-") as tmp:
            local = Path(tmp) / "out"
            with local.open("wb") as fh:
                write(fh)
            digest = data.file_sha256(str(local))
            s3_objects.upload_file(str(local), uri, s3_client)
        return uri, digest
    path = data.local_path(data.resolve_uri(uri, os.getcwd()))
    _remove_stale_temps(path)
    try:
        digest = data.write_local_atomic(str(path), path, write)
    except OSError as exc:
        raise DataError(f"{uri}: cannot write: {exc}") from exc
    return str(path), digest


def score_partition(
    model: LoadedModel,
    input_uri: str,
    output_uri: str,
    *,
    row_key: str | None,
    logical_date: str | dt.datetime,
    s3_client: Any | None = None,
    chunk_rows: int = CHUNK_ROWS,
    column_types: Mapping[str, pa.DataType] | None = None,
    workers: int | None = None,
) -> PartitionOutcome:
    """Score one partition in chunks and publish the Parquet output atomically.

    Args:
        model: from `load_model` (one resolved version for the whole run).
        input_uri: a .parquet/.pq/.csv file, local or s3://.
        output_uri: where the scores go (see `output_uri`); overwritten on a re-run.
        row_key: the input column identifying a row (spec.row_key), copied to the output;
            None writes the row's position in the partition as `row_index`.
        logical_date: the run's logical date (datetime or ISO string; naive means UTC).
        s3_client: a boto3 S3 client for s3:// input or output.
        chunk_rows: rows per chunk (and per output row group; part of the output bytes).
        column_types: Arrow types for CSV columns outside the signature (the row key).
        workers: threads predicting chunks in parallel (default `default_workers()`); each
            calls the estimator's predict with OpenMP and BLAS at one thread. Use 1 for an
            estimator whose predict is not thread-safe.

    Returns:
        A JSON-able dict for XCom/lineage: status, partition, input_uri, input_sha256,
        output_uri, output_sha256, rows_in, rows_out, quarantined_rows (0), model_name,
        model_version, logical_date, seconds, rows_per_second, peak_rss_mib (the process's
        peak resident memory so far, see `tracking.resources.peak_rss_mib`).

    Raises:
        ScoringError: unreadable or empty input, a missing column, a wrong dtype; nothing is
            published and an earlier output at `output_uri` is left as it was.
        DataError: the input does not exist, or the output cannot be written.
    """
    start = time.perf_counter()
    with reading.stage(input_uri, s3_client) as staged:
        return score_staged(
            model,
            staged,
            output_uri,
            row_key=row_key,
            logical_date=logical_date,
            s3_client=s3_client,
            chunk_rows=chunk_rows,
            column_types=column_types,
            start=start,
            workers=workers,
        )


def score_staged(
    model: LoadedModel,
    staged: reading.Staged,
    out_uri: str,
    *,
    row_key: str | None,
    logical_date: str | dt.datetime,
    s3_client: Any | None,
    chunk_rows: int,
    column_types: Mapping[str, pa.DataType] | None,
    start: float,
    workers: int | None = None,
) -> PartitionOutcome:
    """Score a staged partition and publish its output: `score_partition` after staging.

    `start` is the `time.perf_counter()` the partition's timing starts from.
    """
    if not staged.columns:
        reading.inspect(staged)
    if staged.fmt == "parquet":
        with pq.ParquetFile(staged.path) as pf:
            model.check_columns(pf.schema_arrow, staged.uri)
    else:
        model.check_columns(staged.columns, staged.uri)
    if row_key and row_key not in staged.columns:
        raise ScoringError(
            f"{staged.uri}: row key column '{row_key}' is missing (columns: {staged.columns[:30]})",
            column=row_key,
        )
    if staged.rows == 0:
        raise ScoringError(f"{staged.uri}: empty partition (0 rows): nothing to score")
    when = as_utc(logical_date)
    types = {**(column_types or {}), **model.arrow_types()}
    counted: dict[str, int] = {}

    def write(sink: IO[bytes]) -> None:
        counted["rows"] = _score_into(
            sink,
            model,
            staged,
            row_key=row_key,
            logical_date=when,
            chunk_rows=chunk_rows,
            types=types,
            workers=workers or default_workers(),
        )
        rows_in = staged.rows if staged.rows is not None else counted["rows"]
        if counted["rows"] != rows_in:
            raise ScoringError(
                f"{staged.uri}: read {counted['rows']} rows but the file holds "
                f"{rows_in}; nothing published"
            )
        staged.check_unchanged()

    published, digest = _publish(out_uri, write, s3_client)
    rows = counted["rows"]
    seconds = time.perf_counter() - start
    log.info(
        "scored %s (%d rows, sha256 %s) with %s v%s -> %s (sha256 %s) in %.1fs",
        staged.uri,
        rows,
        staged.sha256[:12],
        model.name,
        model.version,
        published,
        digest[:12],
        seconds,
    )
    return {
        "status": "scored",
        "partition": partition_name(staged.uri),
        "input_uri": staged.uri,
        "input_sha256": staged.sha256,
        "output_uri": published,
        "output_sha256": digest,
        "rows_in": rows,
        "rows_out": rows,
        "quarantined_rows": 0,
        "model_name": model.name,
        "model_version": model.version,
        "logical_date": logical_date_iso(when),
        "seconds": round(seconds, 3),
        "rows_per_second": round(rows / max(seconds, 1e-9), 1),
        "peak_rss_mib": round(resources.peak_rss_mib(), 1),
    }
