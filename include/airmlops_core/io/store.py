"""The data layer: list, read, write (atomically) and stream files, on a local path or S3 alike.

Every piece of state one task hands another (work files, manifests, scored outputs, quarantine,
labels) is reached through a `Store`, so a deployment whose tasks run on several hosts keeps it
on S3 while a laptop keeps it in a directory, with the same code. The Store only holds how to
reach S3 (`S3Settings`: endpoint, region, credentials, from the Airflow AWS connection in the
operators); URIs say where things are. No Airflow imports.

Streaming: `dataset` opens Parquet or CSV files as one `pyarrow.dataset.Dataset` (S3 through
pyarrow's own S3 filesystem), so callers read only the columns they need, batch by batch,
instead of reading whole files into pandas and concatenating them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import IO, TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airmlops_core.errors import DataError
from airmlops_core.io import data, s3_objects

if TYPE_CHECKING:
    import pyarrow.dataset as pads

log = logging.getLogger(__name__)

DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class S3Settings:
    """How to reach S3: endpoint (None: AWS), region and credentials (None: the default chain).

    Secrets never appear in repr (logs, tracebacks)."""

    endpoint_url: str | None = None
    region: str | None = None
    access_key: str | None = field(default=None, repr=False)
    secret_key: str | None = field(default=None, repr=False)
    session_token: str | None = field(default=None, repr=False)


class Store:
    """Files under local paths or s3:// URIs, with the same operations on both.

    Args:
        s3: how to reach S3; None: s3:// URIs fail with an error naming the URI.
        client: an existing boto3 S3 client to use instead of building one from `s3` (the
            older `io.data` callers hold one); streaming from S3 still needs `s3`.
    """

    def __init__(self, s3: S3Settings | None = None, *, client: Any = None) -> None:
        self.s3 = s3
        if client is not None:
            self.__dict__["s3_client"] = client  # fills the cached property

    def __repr__(self) -> str:
        return f"Store(s3={self.s3!r})"

    # ----------------------------------------------------------------------------------------
    # Clients

    @cached_property
    def s3_client(self) -> Any:
        """A boto3 S3 client (None without S3 settings), for the older `io.data` functions."""
        if self.s3 is None:
            return None
        import boto3
        from botocore.config import Config

        # a custom endpoint (MinIO, SeaweedFS, ...) is addressed path-style, as pyarrow does
        style = "path" if self.s3.endpoint_url else "auto"
        return boto3.client(
            "s3",
            config=Config(s3={"addressing_style": style}),
            endpoint_url=self.s3.endpoint_url,
            region_name=self.s3.region or DEFAULT_REGION,
            aws_access_key_id=self.s3.access_key,
            aws_secret_access_key=self.s3.secret_key,
            aws_session_token=self.s3.session_token,
        )

    def _client(self, uri: str) -> Any:
        return s3_objects.need_client(uri, self.s3_client)

    def _arrow_s3(self, uri: str) -> Any:
        """pyarrow's S3 filesystem for the same endpoint and credentials."""
        if self.s3 is None:
            raise DataError(
                f"{uri}: S3 settings are needed to read s3:// URIs (the AWS connection's "
                "endpoint and credentials)"
            )
        from pyarrow import fs

        kwargs: dict[str, Any] = {"region": self.s3.region or DEFAULT_REGION}
        if self.s3.access_key:
            kwargs.update(
                access_key=self.s3.access_key,
                secret_key=self.s3.secret_key,
                session_token=self.s3.session_token,
            )
        if self.s3.endpoint_url:
            parts = urlsplit(self.s3.endpoint_url)
            kwargs.update(endpoint_override=parts.netloc, scheme=parts.scheme or "https")
        return fs.S3FileSystem(**kwargs)

    # ----------------------------------------------------------------------------------------
    # Files

    def exists(self, uri: str) -> bool:
        """Whether a file is stored at `uri`.

        Raises:
            DataError: S3 cannot be asked (no settings, bucket missing, access denied).
        """
        if not data.is_s3(uri):
            return data.local_path(uri).is_file()
        return s3_objects.object_exists(uri, self._client(uri))

    def list_files(self, prefix: str, *, suffix: str = "") -> list[str]:
        """Every file under a directory or s3:// prefix (recursively), sorted, as full URIs;
        names starting with "." (temp files of atomic writes) are left out.

        Args:
            prefix: a local directory or s3://bucket/prefix (a trailing "/" is implied).
            suffix: keep only names ending with it (e.g. "/_manifest.json", ".parquet").

        Returns:
            An empty list when nothing is under the prefix (a missing local directory too).

        Raises:
            DataError: the S3 bucket does not exist or cannot be listed; the local path is a
                file, not a directory.
        """
        found = self._list_s3(prefix) if data.is_s3(prefix) else self._list_local(prefix)
        return sorted(
            u for u in found if u.endswith(suffix) and not u.rsplit("/", 1)[-1].startswith(".")
        )

    def _list_local(self, prefix: str) -> list[str]:
        root = data.local_path(prefix)
        if root.is_file():
            raise DataError(f"{prefix}: is a file, expected a directory")
        return [
            os.path.join(dirpath, name) for dirpath, _, names in os.walk(root) for name in names
        ]

    def _list_s3(self, prefix: str) -> list[str]:
        bucket, _, key = prefix[len("s3://") :].partition("/")
        if not bucket:
            raise DataError(f"{prefix}: S3 URI without a bucket")
        key = key if not key or key.endswith("/") else key + "/"
        keys = s3_objects.list_keys(prefix, self._client(prefix), bucket, key, delimiter=False)
        return [f"s3://{bucket}/{k}" for k in keys]

    def read_bytes(self, uri: str) -> bytes:
        """The whole (small) file at `uri`.

        Raises:
            DataError: missing or unreadable, naming the URI.
        """
        return data.read_bytes(uri, s3_client=self.s3_client if data.is_s3(uri) else None)

    def read_json(self, uri: str) -> Any:
        """The JSON document at `uri`.

        Raises:
            DataError: missing, unreadable or not JSON, naming the URI.
        """
        try:
            return json.loads(self.read_bytes(uri))
        except ValueError as exc:
            raise DataError(f"{uri}: not valid JSON: {exc}") from exc

    def write_bytes(
        self, uri: str, body: bytes, *, content_type: str = "application/octet-stream"
    ) -> str:
        """Write `body` atomically: readers see the old file or the new one, never a part
        (local: temp file in the same directory, fsync, rename; S3: one put_object).

        Returns:
            The URI written (local paths normalised).

        Raises:
            DataError: the destination is not writable, naming the URI.
        """
        if data.is_s3(uri):
            s3_objects.put_object(uri, self._client(uri), body, content_type=content_type)
            return uri
        path = data.local_path(uri)

        def write(sink: IO[bytes]) -> None:
            sink.write(body)

        try:
            data.write_local_atomic(uri, path, write)
        except OSError as exc:
            raise DataError(f"{uri}: cannot write: {exc}") from exc
        return str(path)

    def write_json(self, uri: str, document: Any) -> str:
        """Write a JSON document atomically (sorted keys, so equal documents give equal bytes)."""
        text = json.dumps(document, indent=2, sort_keys=True, default=str) + "\n"
        return self.write_bytes(uri, text.encode("utf-8"), content_type="application/json")

    def delete(self, uri: str) -> None:
        """Remove the file at `uri`; a missing file is not an error."""
        if data.is_s3(uri):
            s3_objects.delete_object(uri, self._client(uri))
            return
        data.local_path(uri).unlink(missing_ok=True)

    def sha256(self, uri: str) -> str:
        """Hex sha256 of the stored bytes (streamed, constant memory)."""
        digest = hashlib.sha256()
        for chunk in data.iter_chunks(uri, self.s3_client if data.is_s3(uri) else None):
            digest.update(chunk)
        return digest.hexdigest()

    # ----------------------------------------------------------------------------------------
    # Tables

    def dataset(self, uris: Sequence[str], *, format: str | None = None) -> pads.Dataset:
        """The files as one pyarrow Dataset, to scan column by column, batch by batch.

        Args:
            uris: Parquet or CSV files, all local or all on S3, all of one format.
            format: "parquet" or "csv"; None: from the first file's extension.

        Raises:
            DataError: no files, mixed local and S3 files or formats, or a file pyarrow cannot
                open (the message names the files).
        """
        import pyarrow as pa
        import pyarrow.dataset as ds

        if not uris:
            raise DataError("dataset: no files given")
        fmt = data.infer_format(uris[0], format)
        on_s3 = {data.is_s3(u) for u in uris}
        if len(on_s3) > 1:
            raise DataError(f"dataset: mixes local and s3:// files: {list(uris)[:4]}")
        formats = {data.infer_format(u, format) for u in uris}
        if len(formats) > 1:
            raise DataError(f"dataset: mixes formats {sorted(formats)}: {list(uris)[:4]}")
        if on_s3 == {True}:
            filesystem = self._arrow_s3(uris[0])
            paths = [u[len("s3://") :] for u in uris]
        else:
            filesystem, paths = None, [str(data.local_path(u)) for u in uris]
        try:
            return ds.dataset(paths, format=fmt, filesystem=filesystem)
        except (pa.ArrowException, OSError) as exc:
            shown = ", ".join(list(uris)[:3]) + (" ..." if len(uris) > 3 else "")
            raise DataError(f"{shown}: cannot open as {fmt}: {exc}") from exc

    def read_table(self, uris: Sequence[str], columns: Sequence[str]) -> Any:
        """Only `columns` of the files, as one pyarrow Table (streamed; the files' rows in
        order, file after file).

        Raises:
            DataError: unreadable files, or a column missing (naming the files and the columns
                available).
        """
        import pyarrow as pa

        dataset = self.dataset(uris)
        wanted = data.check_columns(", ".join(uris[:3]), dataset.schema.names, list(columns))
        try:
            return dataset.to_table(columns=wanted)
        except (pa.ArrowException, OSError) as exc:
            raise DataError(f"{', '.join(uris[:3])}: cannot read: {exc}") from exc
