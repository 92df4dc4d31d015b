"""Data access: read and write tables locally or on S3, hash them, extract training windows.

Every file a task hands to another task goes through `write_frame` (atomic, deterministic bytes)
and is described by a `DataRef` (uri + sha256 + rows + format), small enough for XCom. `read_ref`
verifies the hash, so a file changed between two tasks is caught instead of silently used.

URIs are absolute local paths, file:// URIs or s3://bucket/key. S3 is reached only through a
boto3 S3 client the caller passes in (`s3_client`); this module never builds one or reads
credentials. No Airflow imports: usable from tests and a CLI.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from airmlops_core.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FORMATS = ("parquet", "csv")
PARQUET_COMPRESSION = "zstd"
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


@dataclass(frozen=True)
class DataRef:
    """A reference to a file written by `write_frame`: what XCom carries instead of data.

    Attributes:
        uri: absolute local path or s3://bucket/key.
        sha256: hex sha256 of the file's bytes as stored.
        rows: number of data rows.
        format: "parquet" or "csv".
    """

    uri: str
    sha256: str
    rows: int
    format: str

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (for XCom)."""
        return {"uri": self.uri, "sha256": self.sha256, "rows": self.rows, "format": self.format}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DataRef:
        """Rebuild a DataRef from `to_dict` output; unknown keys are ignored.

        Raises:
            DataError: a key is missing or a value is invalid.
        """
        if not isinstance(d, Mapping):
            raise DataError(f"invalid DataRef: expected a mapping, got {type(d).__name__}")
        missing = [k for k in ("uri", "sha256", "rows", "format") if k not in d]
        if missing:
            raise DataError(f"invalid DataRef {dict(d)!r}: missing keys {missing}")
        uri, sha, fmt = str(d["uri"]), str(d["sha256"]).lower(), str(d["format"])
        if not _SHA256_RE.match(sha):
            raise DataError(
                f"invalid DataRef for {uri}: sha256 {d['sha256']!r} is not 64 hex digits"
            )
        if fmt not in FORMATS:
            raise DataError(f"invalid DataRef for {uri}: format {fmt!r} is not one of {FORMATS}")
        rows = d["rows"]
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise DataError(f"invalid DataRef for {uri}: rows {rows!r} is not a count")
        return cls(uri=uri, sha256=sha, rows=rows, format=fmt)


# --------------------------------------------------------------------------------------------
# URIs


def is_s3(uri: str) -> bool:
    return uri.startswith("s3://")


def _split_s3(uri: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key); the key must name an object."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise DataError(f"{uri}: not an S3 object URI (expected s3://bucket/key)")
    return bucket, key


def _file_uri_path(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.netloc not in ("", "localhost"):
        raise DataError(f"{uri}: file:// URIs on another host ({parts.netloc}) are not supported")
    return unquote(parts.path)


def _plain_path(uri: str) -> str:
    """A plain path or file:// URI as a path string (may be relative)."""
    if uri.startswith("file:"):
        return _file_uri_path(uri)
    if "://" in uri:
        scheme = uri.split("://", 1)[0]
        raise DataError(f"{uri}: unsupported URI scheme '{scheme}' (use a local path or s3://)")
    return os.path.expanduser(uri)


def _local_path(uri: str) -> Path:
    """The absolute local path of a plain path or file:// URI."""
    path = _plain_path(uri)
    if not os.path.isabs(path):
        raise DataError(f"{uri}: relative path; resolve it with resolve_uri(uri, base_dir) first")
    return Path(os.path.normpath(path))


def resolve_uri(uri: str, base_dir: str | Path) -> str:
    """Normalise a URI: relative local paths are resolved against `base_dir`.

    Args:
        uri: a relative or absolute local path, a file:// URI or s3://bucket/key.
        base_dir: the directory relative paths are relative to.

    Returns:
        s3:// URIs unchanged; local paths as plain, normalised absolute paths (file:// stripped).

    Raises:
        DataError: empty URI, unsupported scheme, or malformed file:// URI.
    """
    uri = str(uri).strip()
    if not uri:
        raise DataError("empty data URI")
    if is_s3(uri):
        if not uri[len("s3://") :].split("/", 1)[0]:
            raise DataError(f"{uri}: S3 URI without a bucket")
        return uri
    path = _plain_path(uri)
    if not os.path.isabs(path):
        path = os.path.join(os.path.abspath(os.path.expanduser(str(base_dir))), path)
    return os.path.normpath(path)


def join_uri(base: str, *parts: str) -> str:
    """Join path parts onto a local directory or an s3:// prefix.

    Parts never escape `base`: leading slashes are dropped and empty parts skipped.
    """
    clean = [p.strip("/") for p in parts if p and p.strip("/")]
    if is_s3(base):
        return "/".join([base.rstrip("/"), *clean]) if clean else base
    root = _file_uri_path(base) if base.startswith("file:") else base
    return os.path.join(root, *clean)


def _extension_format(uri: str) -> str | None:
    name = uri.rstrip("/").rsplit("/", 1)[-1].lower()
    return next((fmt for ext, fmt in _EXTENSIONS.items() if name.endswith(ext)), None)


def _infer_format(uri: str, format: str | None) -> str:
    if format is not None:
        if format not in FORMATS:
            raise DataError(f"{uri}: unknown format {format!r} (expected one of {FORMATS})")
        return format
    fmt = _extension_format(uri)
    if fmt is not None:
        return fmt
    raise DataError(
        f"{uri}: cannot tell the format from the extension "
        f"(expected {sorted(_EXTENSIONS)}); pass format='parquet' or 'csv'"
    )


# --------------------------------------------------------------------------------------------
# Bytes in and out


def _need_client(uri: str, s3_client: Any | None) -> Any:
    if s3_client is None:
        raise DataError(
            f"{uri}: an S3 client is needed to access s3:// URIs "
            "(pass s3_client=, e.g. from the AWS connection)"
        )
    return s3_client


def _s3_error(uri: str, exc: Exception) -> DataError:
    """Translate a botocore error into a DataError naming the URI."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        code = str(err.get("Code", ""))
        if code in ("NoSuchKey", "404", "NotFound"):
            return DataError(f"{uri}: file not found")
        if code == "NoSuchBucket":
            return DataError(f"{uri}: bucket does not exist")
        return DataError(f"{uri}: S3 error {code}: {err.get('Message', exc)}")
    return DataError(f"{uri}: S3 request failed: {exc}")


def _s3_exceptions() -> tuple[type[Exception], ...]:
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def _s3_get_body(uri: str, s3_client: Any) -> Any:
    bucket, key = _split_s3(uri)
    try:
        return _need_client(uri, s3_client).get_object(Bucket=bucket, Key=key)["Body"]
    except _s3_exceptions() as exc:
        raise _s3_error(uri, exc) from exc


def _read_bytes(uri: str, s3_client: Any | None) -> bytes:
    """The whole file at `uri` as bytes."""
    if is_s3(uri):
        body = _s3_get_body(uri, s3_client)
        try:
            return bytes(body.read())
        except _s3_exceptions() as exc:
            raise _s3_error(uri, exc) from exc
        finally:
            body.close()
    path = _existing_file(uri)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{uri}: cannot read: {exc}") from exc


def parquet_file(uri: str, *, s3_client: Any | None = None) -> Any:
    """A pyarrow ParquetFile to stream record batches from: the local file itself, or an S3
    object read into memory.

    Raises:
        DataError: missing, unreadable, or not Parquet; naming the URI.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    source: Any = (
        pa.BufferReader(_read_bytes(uri, s3_client)) if is_s3(uri) else _existing_file(uri)
    )
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{uri}: not a readable Parquet file: {exc}") from exc


def _existing_file(uri: str) -> Path:
    path = _local_path(uri)
    if path.is_dir():
        raise DataError(f"{uri}: is a directory, expected a file")
    if not path.is_file():
        raise DataError(f"{uri}: file not found")
    return path


def _iter_chunks(uri: str, s3_client: Any | None) -> Iterator[bytes]:
    if is_s3(uri):
        body = _s3_get_body(uri, s3_client)
        try:
            yield from body.iter_chunks(_CHUNK)
        except _s3_exceptions() as exc:
            raise _s3_error(uri, exc) from exc
        finally:
            body.close()
        return
    path = _existing_file(uri)
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(_CHUNK):
                yield chunk
    except OSError as exc:
        raise DataError(f"{uri}: cannot read: {exc}") from exc


def file_sha256(uri: str, *, s3_client: Any | None = None) -> str:
    """Hex sha256 of the bytes stored at `uri` (streamed, constant memory).

    Raises:
        DataError: the file does not exist or cannot be read.
    """
    digest = hashlib.sha256()
    for chunk in _iter_chunks(uri, s3_client):
        digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Parsing


def _check_columns(uri: str, available: list[str], columns: list[str] | None) -> list[str] | None:
    """Deduplicated requested columns, or DataError listing the missing and available ones."""
    if columns is None:
        return None
    wanted = list(dict.fromkeys(columns))
    missing = [c for c in wanted if c not in available]
    if missing:
        hint = ""
        if len(available) == 1:
            seps = [s for s in (";", "\t", "|", ",") if s in available[0]]
            if seps:
                hint = (
                    f" (the file has a single column whose name contains {seps[0]!r}: "
                    "is the delimiter wrong?)"
                )
        raise DataError(f"{uri}: missing columns {missing}; available columns: {available}{hint}")
    return wanted


def _parse_parquet(uri: str, source: Path | bytes, columns: list[str] | None) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    src = pa.BufferReader(source) if isinstance(source, bytes) else str(source)
    try:
        pf = pq.ParquetFile(src)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{uri}: not a readable Parquet file: {exc}") from exc
    try:
        available = [n for n in pf.schema_arrow.names if not n.startswith("__index_level_")]
        wanted = _check_columns(uri, available, columns)
        table = pf.read(columns=wanted, use_pandas_metadata=True)
        df = table.to_pandas()
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{uri}: not a readable Parquet file: {exc}") from exc
    finally:
        pf.close()
    return df if wanted is None else df[wanted]


def _parse_csv(uri: str, source: Path | bytes, columns: list[str] | None) -> pd.DataFrame:
    import pandas as pd

    def _src() -> Any:
        return io.BytesIO(source) if isinstance(source, bytes) else source

    try:
        header = pd.read_csv(_src(), nrows=0)
        wanted = _check_columns(uri, [str(c) for c in header.columns], columns)
        df = pd.read_csv(_src(), usecols=wanted)
    except pd.errors.EmptyDataError as exc:
        raise DataError(f"{uri}: empty CSV file (no header): {exc}") from exc
    except (pd.errors.ParserError, UnicodeDecodeError, OSError) as exc:
        raise DataError(f"{uri}: not a readable CSV file: {exc}") from exc
    return df if wanted is None else df[wanted]


def _parse(uri: str, source: Path | bytes, fmt: str, columns: list[str] | None) -> pd.DataFrame:
    if fmt == "parquet":
        return _parse_parquet(uri, source, columns)
    return _parse_csv(uri, source, columns)


def read_frame(
    uri: str,
    *,
    format: str | None = None,
    columns: list[str] | None = None,
    s3_client: Any | None = None,
) -> pd.DataFrame:
    """Read a Parquet or CSV file from a local path, a file:// URI or s3://bucket/key.

    Args:
        uri: where the file is.
        format: "parquet" or "csv"; inferred from the extension (.parquet/.pq/.csv) if None.
        columns: keep only these columns, in this order (None: all).
        s3_client: a boto3 S3 client, required for s3:// URIs.

    Returns:
        The table as a DataFrame with a fresh RangeIndex.

    Raises:
        DataError: missing or unreadable file, unknown format, or requested columns missing.
    """
    fmt = _infer_format(uri, format)
    source: Path | bytes = _read_bytes(uri, s3_client) if is_s3(uri) else _existing_file(uri)
    df = _parse(uri, source, fmt, columns)
    log.debug("read %d rows x %d columns from %s", len(df), df.shape[1], uri)
    return df.reset_index(drop=True)


def read_ref(
    ref: DataRef,
    *,
    columns: list[str] | None = None,
    s3_client: Any | None = None,
) -> pd.DataFrame:
    """Read the file a DataRef points to, after verifying its sha256.

    The bytes are read once, hashed and parsed from memory, so what is parsed is what was hashed.

    Raises:
        DataError: the file is missing, unreadable, or its content changed since it was written.
    """
    data = _read_bytes(ref.uri, s3_client)
    found = hashlib.sha256(data).hexdigest()
    if found != ref.sha256:
        raise DataError(
            f"{ref.uri}: content changed since it was written "
            f"(expected sha256 {ref.sha256}, found {found})"
        )
    df = _parse(ref.uri, data, _infer_format(ref.uri, ref.format), columns)
    return df.reset_index(drop=True)


# --------------------------------------------------------------------------------------------
# Writing


def _write_parquet(df: pd.DataFrame, sink: IO[bytes]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    # preserve_index=False: the index is not data. The pandas schema metadata carries dtypes
    # (categoricals, str) and library versions but no timestamps, so bytes are reproducible.
    table = pa.Table.from_pandas(df, preserve_index=False)
    pq.write_table(table, sink, compression=PARQUET_COMPRESSION)


def _write_csv(df: pd.DataFrame, sink: IO[bytes]) -> None:
    df.to_csv(sink, index=False, encoding="utf-8", lineterminator="\n")


def _serializer(fmt: str) -> Callable[[pd.DataFrame, IO[bytes]], None]:
    return _write_parquet if fmt == "parquet" else _write_csv


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_local_atomic(uri: str, path: Path, write: Callable[[IO[bytes]], None]) -> str:
    """Write through a temp file in the same directory, fsync, rename; return the sha256."""
    if path.is_dir():
        raise DataError(f"{uri}: is a directory, cannot write a file there")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{uri}: cannot create directory {path.parent}: {exc}") from exc
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        # O_EXCL: never follow or reuse an existing name; 0o666 & ~umask like a normal file.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        digest = file_sha256(str(tmp))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return digest


def write_frame(
    df: pd.DataFrame,
    uri: str,
    *,
    format: str = "parquet",
    s3_client: Any | None = None,
) -> DataRef:
    """Write a DataFrame atomically, with deterministic bytes, and return its DataRef.

    Local: written to a temp file in the destination directory, fsynced, then renamed over the
    destination, so readers see the old file or the new one, never a partial one. S3: one
    put_object of the fully built bytes. The index is not written. The same DataFrame gives
    the same bytes (with the same pandas/pyarrow versions).

    Args:
        df: the table.
        uri: absolute local path, file:// URI or s3://bucket/key.
        format: "parquet" (zstd) or "csv" (utf-8, no index).
        s3_client: a boto3 S3 client, required for s3:// URIs.

    Returns:
        DataRef with the sha256 of exactly the bytes written.

    Raises:
        DataError: bad format (or one the file extension contradicts), the frame cannot be
            serialised, or the destination is not writable.
    """
    import pandas as pd
    import pyarrow as pa

    if not isinstance(df, pd.DataFrame):
        raise DataError(f"{uri}: expected a pandas DataFrame, got {type(df).__name__}")
    fmt = _infer_format(uri, format)
    named = _extension_format(uri)
    if named is not None and named != fmt:
        raise DataError(
            f"{uri}: the extension says {named} but format={fmt!r}; "
            f"pass format={named!r} or change the name"
        )
    serialize = _serializer(fmt)

    def write(sink: IO[bytes]) -> None:
        try:
            serialize(df, sink)
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise DataError(f"{uri}: cannot write the frame as {fmt}: {exc}") from exc

    if is_s3(uri):
        bucket, key = _split_s3(uri)
        client = _need_client(uri, s3_client)
        buf = io.BytesIO()
        write(buf)
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        try:
            client.put_object(Bucket=bucket, Key=key, Body=data)
        except _s3_exceptions() as exc:
            raise _s3_error(uri, exc) from exc
        out_uri = uri
    else:
        path = _local_path(uri)
        try:
            digest = _write_local_atomic(uri, path, write)
        except OSError as exc:
            raise DataError(f"{uri}: cannot write: {exc}") from exc
        out_uri = str(path)
    log.info("wrote %d rows (%s) to %s, sha256 %s", len(df), fmt, out_uri, digest[:12])
    return DataRef(uri=out_uri, sha256=digest, rows=len(df), format=fmt)


# --------------------------------------------------------------------------------------------
# SQL


def _first_line(query: str) -> str:
    line = next((ln.strip() for ln in query.splitlines() if ln.strip()), "")
    return line if len(line) <= 80 else line[:77] + "..."


def _engine_label(engine_or_conn: Any) -> str:
    url = getattr(engine_or_conn, "url", None) or getattr(
        getattr(engine_or_conn, "engine", None), "url", None
    )
    if url is not None and hasattr(url, "render_as_string"):
        return f" on {url.render_as_string(hide_password=True)}"
    return ""


def read_sql(query: str, engine_or_conn: Any) -> pd.DataFrame:
    """Run a SELECT and return its rows.

    The query string is sent to the driver as is (no SQLAlchemy bind-parameter parsing).

    Args:
        query: the SQL text.
        engine_or_conn: a SQLAlchemy Engine or Connection (e.g. from
            DbApiHook.get_sqlalchemy_engine()), or a DB-API sqlite3 connection.

    Raises:
        DataError: the query fails; the message names the query's first line and the database.
    """
    import pandas as pd

    if not query or not query.strip():
        raise DataError("empty SQL query")
    where = f"SQL query '{_first_line(query)}'{_engine_label(engine_or_conn)}"
    try:
        df = pd.read_sql(query, engine_or_conn)
    except Exception as exc:  # drivers raise their own types; pandas wraps only some of them
        raise DataError(f"{where}: failed: {exc}") from exc
    log.debug("read %d rows from %s", len(df), where)
    return df


# --------------------------------------------------------------------------------------------
# Extract


def _is_datetime_like(value: Any) -> bool:
    import numpy as np

    return isinstance(value, dt.date | np.datetime64)


def _align_ts(where: str, bound: Any, tz: Any) -> Any:
    """`bound` as a pandas Timestamp in the column's timezone (naive columns: naive UTC)."""
    import pandas as pd

    try:
        ts = pd.Timestamp(bound)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{where}: window bound {bound!r} is not a date/time: {exc}") from exc
    if tz is None and ts.tz is not None:
        ts = ts.tz_convert("UTC").tz_localize(None)
    elif tz is not None and ts.tz is None:
        ts = ts.tz_localize(tz)
    return ts


def _to_number(where: str, col: str, bound: Any) -> Any:
    import pandas as pd

    if isinstance(bound, bool) or _is_datetime_like(bound):
        raise DataError(
            f"{where}: window bound {bound!r} is not comparable with numeric column '{col}'"
        )
    try:
        return pd.to_numeric(bound) if isinstance(bound, str) else bound
    except ValueError as exc:
        raise DataError(
            f"{where}: window bound {bound!r} is not a number, but column '{col}' is numeric"
        ) from exc


def _comparable(where: str, series: pd.Series, bounds: list[Any]) -> tuple[pd.Series, list[Any]]:
    """The column's values and the window bounds, converted to one comparable type."""
    import pandas as pd
    from pandas.api import types as ptypes

    col = str(series.name)
    if ptypes.is_datetime64_any_dtype(series):
        tz = getattr(series.dtype, "tz", None)
        return series, [_align_ts(where, b, tz) for b in bounds]
    if ptypes.is_numeric_dtype(series) and not ptypes.is_bool_dtype(series):
        return series, [_to_number(where, col, b) for b in bounds]
    # Text, e.g. dates in a CSV file: compare as timestamps when the column and the bounds
    # parse as ISO-8601 dates, else as strings.
    try:
        parsed = pd.to_datetime(series, format="ISO8601")
        tz = getattr(parsed.dtype, "tz", None)
        return parsed, [_align_ts(where, b, tz) for b in bounds]
    except (ValueError, TypeError, OverflowError, DataError):
        pass
    if any(_is_datetime_like(b) for b in bounds):
        raise DataError(
            f"{where}: window column '{col}' does not hold dates; cannot compare it with {bounds!r}"
        )
    return series, [str(b) for b in bounds]


def _window_mask(where: str, series: pd.Series, start: Any, end: Any) -> pd.Series:
    """True for rows with start <= value <= end (None = open); missing values never match."""
    given = [b for b in (start, end) if b is not None]
    values, converted = _comparable(where, series, given)
    it = iter(converted)
    lo = next(it) if start is not None else None
    hi = next(it) if end is not None else None
    if lo is not None and hi is not None and lo > hi:
        raise DataError(f"{where}: window start {start!r} is after its end {end!r}")
    mask = values.notna()
    if lo is not None:
        mask &= values >= lo
    if hi is not None:
        mask &= values <= hi
    return mask.fillna(False).astype(bool)


def _describe_window(col: str, start: Any, end: Any) -> str:
    if start is None and end is None:
        return f"{col} (open)"
    if start is None:
        return f"{col} <= {end!r}"
    if end is None:
        return f"{col} >= {start!r}"
    return f"{start!r} <= {col} <= {end!r}"


def extract(
    *,
    kind: str,
    uri: str | None,
    query: str | None,
    format: str | None,
    columns: list[str],
    dest_uri: str,
    window: tuple[str, Any, Any] | None = None,
    base_dir: str | Path,
    s3_client: Any | None = None,
    sql_engine: Any | None = None,
) -> DataRef:
    """Read a source, keep `columns`, apply an inclusive window and write the result.

    Args:
        kind: "file" (local path, relative to base_dir), "s3" (s3://bucket/key) or "sql".
        uri: the source file for kinds file and s3.
        query: the SQL for kind sql.
        format: "parquet" or "csv" for file sources; None infers it from the extension.
        columns: columns to keep, in this order (an empty list keeps all columns).
        dest_uri: where to write the result (Parquet, or CSV if it ends with .csv); relative
            paths are resolved against base_dir.
        window: (column, start, end): keep rows with start <= column <= end; None is open.
            Datetime columns compare as timestamps (a tz-aware bound is converted to UTC for a
            naive column), numeric columns as numbers, text columns as ISO dates when they
            parse as such, else as strings.
        base_dir: the directory relative paths are resolved against.
        s3_client: a boto3 S3 client for s3:// sources or destinations.
        sql_engine: a SQLAlchemy engine or connection for kind sql.

    Returns:
        DataRef of the written file.

    Raises:
        DataError: bad arguments, unreadable source, missing columns, or no rows left.
    """
    wanted = list(dict.fromkeys(columns))
    win_col = window[0] if window is not None else None
    read_cols: list[str] | None = None
    if wanted:
        read_cols = wanted + ([win_col] if win_col and win_col not in wanted else [])

    if kind in ("file", "s3"):
        if not uri:
            raise DataError(f"extract: kind '{kind}' needs a uri")
        src = resolve_uri(uri, base_dir)
        if kind == "s3" and not is_s3(src):
            raise DataError(f"{uri}: kind 's3' needs an s3://bucket/key uri")
        where = src
        df = read_frame(src, format=format, columns=read_cols, s3_client=s3_client)
    elif kind == "sql":
        if not query or not query.strip():
            raise DataError("extract: kind 'sql' needs a query")
        if sql_engine is None:
            raise DataError(
                f"SQL query '{_first_line(query)}': a SQLAlchemy engine is needed "
                "(pass sql_engine=)"
            )
        where = f"SQL query '{_first_line(query)}'"
        df = read_sql(query, sql_engine)
        if read_cols is not None:
            df = df[_check_columns(where, [str(c) for c in df.columns], read_cols)]
    else:
        raise DataError(f"extract: unknown source kind {kind!r} (expected file, s3 or sql)")

    total = len(df)
    if window is not None:
        col, start, end = window
        if col not in df.columns:
            raise DataError(
                f"{where}: missing columns {[col]} (window); "
                f"available columns: {[str(c) for c in df.columns]}"
            )
        df = df[_window_mask(where, df[col], start, end)]
        if df.empty:
            raise DataError(
                f"{where}: no rows in the window {_describe_window(col, start, end)} "
                f"(of {total} rows read)"
            )
    if df.empty:
        raise DataError(f"{where}: no rows")
    if wanted:
        df = df[wanted]
    df = df.reset_index(drop=True)

    dest = resolve_uri(dest_uri, base_dir)
    dest_fmt = "csv" if dest.lower().endswith(".csv") else "parquet"
    ref = write_frame(df, dest, format=dest_fmt, s3_client=s3_client)
    log.info("extracted %d of %d rows from %s to %s", len(df), total, where, ref.uri)
    return ref


# --------------------------------------------------------------------------------------------
# Split


def split_frame(
    df: pd.DataFrame,
    *,
    test_size: float,
    seed: int,
    stratify_on: str | None,
    key: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deterministic shuffled train/holdout split.

    Without `key`: scikit-learn's train_test_split. With `key` (the row key), a row's side
    depends only on its key and the seed, so a row keeps its side when the table grows (a
    retrained challenger's holdout holds no row the champion trained on); class proportions
    then match in expectation rather than exactly.

    Args:
        df: the table.
        test_size: fraction of rows for the holdout, 0 < test_size < 1.
        seed: random seed; the same seed and data give the same split.
        stratify_on: keep this column's class proportions in both parts (None: no stratifying).
        key: split by this column's hashed values (unique, no missing values).

    Returns:
        (train, holdout), each with a fresh RangeIndex.

    Raises:
        DataError: bad test_size, missing stratify column, or data too small to split.
    """
    from sklearn.model_selection import train_test_split

    if not 0.0 < float(test_size) < 1.0:
        raise DataError(f"split: test_size must be between 0 and 1 (exclusive), got {test_size}")
    stratify = None
    if stratify_on is not None:
        if stratify_on not in df.columns:
            raise DataError(
                f"split: stratify column '{stratify_on}' missing; "
                f"available columns: {[str(c) for c in df.columns]}"
            )
        stratify = df[stratify_on]
        if stratify.isna().any():
            raise DataError(
                f"split: stratify column '{stratify_on}' has "
                f"{int(stratify.isna().sum())} missing values"
            )
    if key is not None:
        return _split_by_key(df, key, float(test_size), seed, stratify)
    try:
        train, test = train_test_split(
            df, test_size=float(test_size), random_state=seed, shuffle=True, stratify=stratify
        )
    except ValueError as exc:
        raise DataError(
            f"split: cannot split {len(df)} rows (test_size={test_size}, "
            f"stratify_on={stratify_on!r}): {exc}"
        ) from exc
    return train.reset_index(drop=True), test.reset_index(drop=True)


def _split_by_key(
    df: pd.DataFrame, key: str, test_size: float, seed: int, stratify: pd.Series | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """split_frame by key: holdout iff the key's 64-bit hash, mixed with the seed, / 2**64 <
    test_size."""
    import numpy as np
    import pandas as pd

    if key not in df.columns:
        raise DataError(
            f"split: row key '{key}' missing; available columns: {[str(c) for c in df.columns]}"
        )
    keys = df[key]
    if keys.isna().any() or keys.duplicated().any():
        raise DataError(
            f"split: row key '{key}' has {int(keys.isna().sum())} missing and "
            f"{int(keys.duplicated().sum())} duplicated values"
        )
    x = pd.util.hash_pandas_object(keys, index=False).to_numpy(dtype=np.uint64)
    x = x ^ np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
    for shift, mult in ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB)):  # splitmix64
        x = (x ^ (x >> np.uint64(shift))) * np.uint64(mult)
    u = (x ^ (x >> np.uint64(31))) / float(2**64)
    order = np.argsort(u, kind="stable")  # a seeded shuffle that is also stable per key
    in_holdout = u[order] < test_size
    train, test = df.iloc[order[~in_holdout]], df.iloc[order[in_holdout]]
    missing: list[str] = []
    if stratify is not None:
        both = set(stratify.loc[train.index]) & set(stratify.loc[test.index])
        missing = sorted(str(c) for c in set(stratify) - both)
    if train.empty or test.empty or missing:
        raise DataError(
            f"split: {len(df)} rows split by '{key}' (test_size={test_size}) leave "
            f"{len(train)} train and {len(test)} holdout rows"
            + (f"; classes {missing} missing from one side" if missing else "")
        )
    return train.reset_index(drop=True), test.reset_index(drop=True)
