"""The partitions of a scoring run: the Parquet/CSV files at a location, local or on S3.

`list_partitions` is called once per run; each file it returns is scored by its own task and
gets its own output, named by `airmlops_core.io.scored.partition_name`.
"""

from __future__ import annotations

import glob
import os
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

from airmlops_core.errors import DataError, NoPartitions
from airmlops_core.io import data, s3_objects
from airmlops_core.io.scored import PARTITION_EXTENSIONS, partition_name

_GLOB = ("*", "?", "[")


def _has_glob(text: str) -> bool:
    return any(c in text for c in _GLOB)


def _is_partition_file(name: str) -> bool:
    return not name.startswith((".", "_")) and name.lower().endswith(PARTITION_EXTENSIONS)


def list_partitions(input_uri: str, *, s3_client: Any | None = None) -> list[str]:
    """The partitions (Parquet/CSV files) at a location, sorted.

    Args:
        input_uri: a file; a directory (its direct .parquet/.pq/.csv files); a glob such as
            /data/batch-*.parquet; s3://bucket/key, s3://bucket/prefix/ (its direct files) or
            an S3 glob (`*` does not cross `/`). Names starting with "." or "_" (temporary
            files, _SUCCESS, manifests) are skipped. Relative paths are relative to the cwd.
        s3_client: a boto3 S3 client, for s3:// locations.

    Raises:
        DataError: nothing matches, or two partitions would get the same output name.
    """
    uri = str(input_uri).strip()
    if not uri:
        raise DataError("empty input location: pass a file, directory, glob or s3:// prefix")
    found = _list_s3(uri, s3_client) if data.is_s3(uri) else _list_local(uri)
    if not found:
        raise NoPartitions(
            f"{uri}: no partitions found (expected .parquet, .pq or .csv files "
            "not starting with '.' or '_')"
        )
    by_name: dict[str, list[str]] = {}
    for u in found:
        by_name.setdefault(partition_name(u), []).append(u)
    clashes = {n: us for n, us in by_name.items() if len(us) > 1}
    if clashes:
        raise DataError(
            f"{uri}: partitions would share an output name: {clashes}; "
            "score one directory per batch or rename the files"
        )
    return found


def _list_local(uri: str) -> list[str]:
    path = data.resolve_uri(uri, os.getcwd())
    if _has_glob(path):
        return sorted(
            p
            for p in glob.glob(path)
            if os.path.isfile(p) and _is_partition_file(os.path.basename(p))
        )
    p = Path(path)
    if p.is_dir():
        return sorted(str(c) for c in p.iterdir() if c.is_file() and _is_partition_file(c.name))
    if p.is_file():
        if not p.name.lower().endswith(PARTITION_EXTENSIONS):
            raise DataError(f"{uri}: not a partition file (expected {list(PARTITION_EXTENSIONS)})")
        return [str(p)]
    raise DataError(f"{uri}: no such file or directory")


def _list_s3(uri: str, s3_client: Any | None) -> list[str]:
    client = s3_objects.need_client(uri, s3_client)
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise DataError(f"{uri}: S3 URI without a bucket")

    def keys(prefix: str, *, delimiter: bool) -> list[str]:  # errors name `uri`
        return s3_objects.list_keys(uri, client, bucket, prefix, delimiter=delimiter)

    if _has_glob(key):
        prefix = key[: min(key.index(c) for c in _GLOB if c in key)]
        depth = key.count("/")
        hits = [
            k
            for k in keys(prefix, delimiter=False)
            if k.count("/") == depth and fnmatchcase(k, key)
        ]
    elif not key or key.endswith("/"):
        hits = keys(key, delimiter=True)
    else:
        near = keys(key, delimiter=True)
        hits = [key] if key in near else keys(key + "/", delimiter=True)
    return [f"s3://{bucket}/{k}" for k in sorted(hits) if _is_partition_file(k.rsplit("/", 1)[-1])]
