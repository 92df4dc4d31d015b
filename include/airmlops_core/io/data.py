"""Data access: read and write tables locally or on S3, hash them.

Every file a task hands to another task goes through `write_frame` (atomic, deterministic bytes)
and is described by a `DataRef` (uri + sha256 + rows + format), small enough for XCom. `read_ref`
verifies the hash, so a file changed between two tasks is caught instead of silently used.

URIs are absolute local paths, file:// URIs or s3://bucket/key. S3 is reached only through a
boto3 S3 client the caller passes in (`s3_client`), by way of `io.s3_objects` (shared with
`io.store.Store`); this module never builds a client or reads credentials. No Airflow imports:
usable from tests and a CLI.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import re
import secrets
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, TypedDict
from urllib.parse import unquote, urlsplit

from airmlops_core.errors import DataError
from airmlops_core.io import s3_objects
from airmlops_core.io.s3_objects import need_client

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

FORMATS = ("parquet", "csv")
PARQUET_COMPRESSION = "zstd"
_EXTENSIONS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_CHUNK = 1 << 20


class DataRefDict(TypedDict):
    """A DataRef as XCom carries it (`DataRef.to_dict`)."""

    uri: str
    sha256: str
    rows: int
    format: str


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

    def to_dict(self) -> DataRefDict:
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


def local_path(uri: str) -> Path:
    """The absolute local path of a plain path or file:// URI."""
    path = _plain_path(uri)
    if not os.path.isabs(path):
        raise DataError(f"{uri}: relative path; resolve it with resolve_uri(uri, base_dir) first")
    return Path(os.path.normpath(path))


def safe_segment(text: str) -> str:
    """`text` (a run id, a name) as one safe path segment: ASCII letters, digits and ``_.-``
    only, every other run of characters as ``_``, no leading dot (never ``.`` or ``..``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).lstrip(".") or "_"


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


def infer_format(uri: str, format: str | None) -> str:
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


def _read_bytes(uri: str, s3_client: Any | None) -> bytes:
    """The whole file at `uri` as bytes."""
    if is_s3(uri):
        return s3_objects.read_object(uri, s3_client)
    path = existing_file(uri)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise DataError(f"{uri}: cannot read: {exc}") from exc


def read_bytes(uri: str, *, s3_client: Any | None = None) -> bytes:
    """The whole (small) file at `uri`, local or s3://, as bytes (a manifest, a JSON file).

    Raises:
        DataError: the file does not exist or cannot be read.
    """
    return _read_bytes(uri, s3_client)


def parquet_file(uri: str, *, s3_client: Any | None = None) -> Any:
    """A pyarrow ParquetFile to stream record batches from: the local file itself, or an S3
    object read into memory.

    Raises:
        DataError: missing, unreadable, or not Parquet; naming the URI.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    source: Any = pa.BufferReader(_read_bytes(uri, s3_client)) if is_s3(uri) else existing_file(uri)
    try:
        return pq.ParquetFile(source)
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"{uri}: not a readable Parquet file: {exc}") from exc


def existing_file(uri: str) -> Path:
    path = local_path(uri)
    if path.is_dir():
        raise DataError(f"{uri}: is a directory, expected a file")
    if not path.is_file():
        raise DataError(f"{uri}: file not found")
    return path


def iter_chunks(uri: str, s3_client: Any | None) -> Iterator[bytes]:
    if is_s3(uri):
        yield from s3_objects.iter_object(uri, s3_client, _CHUNK)
        return
    path = existing_file(uri)
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
    for chunk in iter_chunks(uri, s3_client):
        digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Parsing


def check_columns(uri: str, available: list[str], columns: list[str] | None) -> list[str] | None:
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
        wanted = check_columns(uri, available, columns)
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
        wanted = check_columns(uri, [str(c) for c in header.columns], columns)
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
    fmt = infer_format(uri, format)
    source: Path | bytes = _read_bytes(uri, s3_client) if is_s3(uri) else existing_file(uri)
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
    df = _parse(ref.uri, data, infer_format(ref.uri, ref.format), columns)
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


def write_local_atomic(uri: str, path: Path, write: Callable[[IO[bytes]], None]) -> str:
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
    fmt = infer_format(uri, format)
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
        need_client(uri, s3_client)  # before serialising: fail fast, naming the URI
        buf = io.BytesIO()
        write(buf)
        data = buf.getvalue()
        digest = hashlib.sha256(data).hexdigest()
        s3_objects.put_object(uri, s3_client, data)
        out_uri = uri
    else:
        path = local_path(uri)
        try:
            digest = write_local_atomic(uri, path, write)
        except OSError as exc:
            raise DataError(f"{uri}: cannot write: {exc}") from exc
        out_uri = str(path)
    log.info("wrote %d rows (%s) to %s, sha256 %s", len(df), fmt, out_uri, digest[:12])
    return DataRef(uri=out_uri, sha256=digest, rows=len(df), format=fmt)
