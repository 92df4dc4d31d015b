"""Reading one partition: staged as a local file, hashed, read in fixed-size Arrow chunks.

A partition is read in chunks (Parquet: ParquetFile.iter_batches over the needed columns,
pre-buffering off; CSV: pyarrow's streaming CSV reader with the given types), re-cut to exactly
the requested rows so chunk boundaries do not depend on the reader. The input's sha256 is
computed by another thread while the first chunks are used (S3 inputs: while downloading to a
local temporary file); a local input that changes while being read is an error
(`Staged.check_unchanged`), so the hash always describes the bytes that were read. A file that
cannot be read raises `ScoringError` naming the file (and the column, for CSV).
"""

from __future__ import annotations

import contextlib
import csv
import os
import re
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from airmlops_core.errors import ScoringError
from airmlops_core.io import data

CSV_BLOCK_BYTES = 8 << 20
PARQUET_READ_BUFFER = 4 << 20
STAGE_PREFIX = "airmlops-stage-"
_CSV_ERROR_RE = re.compile(r"In CSV column #(\d+): (?:Row #(\d+): )?(.*)", re.DOTALL)


@dataclass
class Staged:
    """A partition as a local file: where it came from, its hash, and what it holds."""

    uri: str
    path: Path
    digest: Future[str]  # hashed in the background while the file is read
    fmt: str
    stat: tuple[int, int, int] | None = None
    columns: list[str] = field(default_factory=list)
    rows: int | None = None  # from the Parquet footer; None for CSV

    @property
    def sha256(self) -> str:
        """Hex sha256 of the file's bytes (waits for the hashing thread)."""
        return self.digest.result()

    def check_unchanged(self) -> None:
        """Raise ScoringError if the local file changed since it was staged."""
        if self.stat is not None and _stat(self.path) != self.stat:
            raise ScoringError(
                f"{self.uri}: the file changed while it was being scored; "
                "nothing was published, run again"
            )


def _stat(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return (st.st_size, st.st_mtime_ns, st.st_ino)


@contextlib.contextmanager
def stage(uri: str, s3_client: Any | None) -> Iterator[Staged]:
    """Locate (local) or download (S3) a partition and hash its bytes.

    Raises:
        DataError: the file does not exist or has no known extension.
    """
    fmt = data.infer_format(uri, None)
    if not data.is_s3(uri):
        path = data.existing_file(data.resolve_uri(uri, os.getcwd()))
        before = _stat(path)
        # hashing (~1 s per GiB) overlaps with reading and predicting; the stat check at the
        # end proves the hashed bytes are the bytes that were read
        with ThreadPoolExecutor(1, thread_name_prefix="airmlops-hash") as hasher:
            yield Staged(
                uri=uri,
                path=path,
                digest=hasher.submit(data.file_sha256, str(path)),
                fmt=fmt,
                stat=before,
            )
        return
    sweep_orphaned_stages()
    with tempfile.TemporaryDirectory(prefix=_stage_prefix()) as tmp:
        import hashlib

        path = Path(tmp) / uri.rsplit("/", 1)[-1]
        digest = hashlib.sha256()
        with path.open("wb") as fh:
            for chunk in data.iter_chunks(uri, s3_client):
                digest.update(chunk)
                fh.write(chunk)
        done: Future[str] = Future()
        done.set_result(digest.hexdigest())
        yield Staged(uri=uri, path=path, digest=done, fmt=fmt)


def _stage_prefix() -> str:
    """This process's staging directory name prefix: whose it is, for the sweep."""
    return f"{STAGE_PREFIX}{os.getpid()}@{socket.gethostname()}-"


def stage_owner(name: str) -> tuple[int, str] | None:
    """The pid and host of the staging directory called `name`; None when it is not one."""
    if not name.startswith(STAGE_PREFIX):
        return None
    pid, at, rest = name[len(STAGE_PREFIX) :].partition("@")
    host, dash, _ = rest.rpartition("-")  # tempfile's random suffix holds no '-'
    if not (pid.isdigit() and at and dash and host):
        return None
    return int(pid), host


def sweep_orphaned_stages(tmpdir: str | None = None) -> list[Path]:
    """Delete the staging copies of this host's processes that died without cleaning up.

    A task killed while staging (SIGKILL, the OOM killer, a lost worker) leaves its copy of
    the partition in TMPDIR; the next staging on the host removes it. Directories of live
    processes, of other hosts (a shared TMPDIR) and of unknown shape are left alone.

    Returns:
        The directories removed.
    """
    host = socket.gethostname()
    removed: list[Path] = []
    for entry in Path(tmpdir or tempfile.gettempdir()).glob(f"{STAGE_PREFIX}*"):
        owner = stage_owner(entry.name)
        if owner is not None and owner[1] == host and not _alive(owner[0]):
            shutil.rmtree(entry, ignore_errors=True)
            removed.append(entry)
    return removed


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process
    return True


def inspect(staged: Staged) -> None:
    """Read the header (CSV) or footer (Parquet): column names and, for Parquet, rows."""
    if staged.fmt == "parquet":
        try:
            with pq.ParquetFile(staged.path) as pf:
                staged.columns = [
                    n for n in pf.schema_arrow.names if not n.startswith("__index_level_")
                ]
                staged.rows = pf.metadata.num_rows
        except (pa.ArrowException, OSError) as exc:
            raise ScoringError(f"{staged.uri}: not a readable Parquet file: {exc}") from exc
        return
    try:
        with staged.path.open(encoding="utf-8-sig", newline="") as fh:
            header = next(csv.reader(fh))
    except StopIteration:
        raise ScoringError(f"{staged.uri}: empty CSV file (no header)") from None
    except UnicodeDecodeError as exc:
        raise ScoringError(f"{staged.uri}: not UTF-8 text: {exc}") from exc
    except (csv.Error, OSError) as exc:
        raise ScoringError(f"{staged.uri}: not a readable CSV file: {exc}") from exc
    dupes = sorted({c for c in header if header.count(c) > 1})
    if dupes:
        raise ScoringError(f"{staged.uri}: CSV header repeats column(s) {dupes}")
    staged.columns = header


def _read_error(staged: Staged, exc: Exception, read: Sequence[str]) -> ScoringError:
    """A reader exception as a ScoringError naming the file (and the column, for CSV)."""
    kind = "Parquet" if staged.fmt == "parquet" else "CSV"
    text = str(exc).strip()
    if staged.fmt == "csv":
        m = _CSV_ERROR_RE.search(text)
        if m:
            idx, row, what = int(m.group(1)), m.group(2), m.group(3).strip()
            column = read[idx] if idx < len(read) else None
            where = f" (row {row})" if row else ""
            if "UTF8" in what or "UTF-8" in what:  # an encoding problem, not the column's type
                return ScoringError(
                    f"{staged.uri}: column '{column}'{where} is not UTF-8 text: {what}"
                )
            return ScoringError(f"{staged.uri}: column '{column}'{where}: {what}", column=column)
        if "UTF8" in text or "UTF-8" in text:
            return ScoringError(f"{staged.uri}: not UTF-8 text: {text}")
    return ScoringError(f"{staged.uri}: not a readable {kind} file: {text}")


def batches(
    staged: Staged, columns: Sequence[str], types: Mapping[str, pa.DataType], chunk_rows: int
) -> Iterator[pa.RecordBatch]:
    """The partition's `columns` in record batches of `chunk_rows` rows (the last one
    shorter); at least one batch (empty, with the schema, for an empty file)."""
    read = [c for c in staged.columns if c in set(columns)]  # file order
    try:
        if staged.fmt == "parquet":
            # pre_buffer off + a read buffer: column chunks are streamed, not read whole
            with pq.ParquetFile(
                staged.path, pre_buffer=False, buffer_size=PARQUET_READ_BUFFER
            ) as pf:
                schema = pa.schema([pf.schema_arrow.field(c) for c in read])
                yield from _rebatch(
                    pf.iter_batches(batch_size=chunk_rows, columns=read, use_threads=True),
                    chunk_rows,
                    schema,
                )
            return
        reader = pacsv.open_csv(
            staged.path,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES, use_threads=True),
            parse_options=pacsv.ParseOptions(delimiter=","),
            convert_options=pacsv.ConvertOptions(
                include_columns=read,
                column_types={c: t for c, t in types.items() if c in read},
                strings_can_be_null=True,
            ),
        )
        yield from _rebatch(reader, chunk_rows, reader.schema)
    except (pa.ArrowException, OSError, UnicodeDecodeError) as exc:
        raise _read_error(staged, exc, read) from exc


def _rebatch(
    batches: Iterable[pa.RecordBatch], rows: int, schema: pa.Schema
) -> Iterator[pa.RecordBatch]:
    """Re-cut a stream of batches into batches of exactly `rows` rows (the last shorter), so
    output row groups do not depend on how a reader happens to cut its input."""
    buf: list[pa.RecordBatch] = []
    held = 0
    emitted = False
    for b in batches:
        if b.num_rows == 0:
            continue
        buf.append(b)
        held += b.num_rows
        while held >= rows:
            table = pa.Table.from_batches(buf)
            yield _one_batch(table.slice(0, rows))
            emitted = True
            rest = table.slice(rows)
            buf, held = rest.to_batches(), rest.num_rows
    if held:
        yield _one_batch(pa.Table.from_batches(buf))
    elif not emitted:
        yield pa.RecordBatch.from_pylist([], schema=schema)


def _one_batch(table: pa.Table) -> pa.RecordBatch:
    batches = table.combine_chunks().to_batches()
    return batches[0] if len(batches) == 1 else pa.Table.from_batches(batches).to_batches()[0]
