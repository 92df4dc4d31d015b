"""S3 objects through a boto3 client: the one place the data layer calls S3.

`io.data` (frames, bytes, hashes) and `io.store.Store` (listing, atomic writes, streaming) both
go through these functions, so an S3 request is made, and its error translated into a
`DataError` naming the URI, in one way only. Takes the caller's client; never builds one or
reads credentials (see `io.store.Store.s3_client`). No Airflow imports.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from airmlops_core.errors import DataError

_NOT_FOUND = ("NoSuchKey", "404", "NotFound")


def split_s3(uri: str) -> tuple[str, str]:
    """s3://bucket/key -> (bucket, key); the key must name an object."""
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket or not key or key.endswith("/"):
        raise DataError(f"{uri}: not an S3 object URI (expected s3://bucket/key)")
    return bucket, key


def need_client(uri: str, s3_client: Any | None) -> Any:
    """`s3_client`, or a DataError naming `uri` when there is none."""
    if s3_client is None:
        raise DataError(
            f"{uri}: an S3 client is needed to access s3:// URIs "
            "(pass s3_client=, e.g. from the AWS connection)"
        )
    return s3_client


def s3_error(uri: str, exc: Exception) -> DataError:
    """Translate a botocore error into a DataError naming the URI."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        err = response.get("Error", {})
        code = str(err.get("Code", ""))
        if code in _NOT_FOUND:
            return DataError(f"{uri}: file not found")
        if code == "NoSuchBucket":
            return DataError(f"{uri}: bucket does not exist")
        return DataError(f"{uri}: S3 error {code}: {err.get('Message', exc)}")
    return DataError(f"{uri}: S3 request failed: {exc}")


def s3_exceptions() -> tuple[type[Exception], ...]:
    """What a boto3 S3 call raises (client and transport errors)."""
    from botocore.exceptions import BotoCoreError, ClientError

    return (ClientError, BotoCoreError)


def upload_exceptions() -> tuple[type[Exception], ...]:
    """What an S3 upload raises (client errors and boto3's S3UploadFailedError)."""
    from boto3.exceptions import S3UploadFailedError

    return (*s3_exceptions(), S3UploadFailedError)


def read_object(uri: str, s3_client: Any | None) -> bytes:
    """The whole object at `uri`."""
    return b"".join(iter_object(uri, s3_client, 1 << 20))


def iter_object(uri: str, s3_client: Any | None, chunk: int) -> Iterator[bytes]:
    """The object at `uri` in chunks of at most `chunk` bytes (streamed)."""
    bucket, key = split_s3(uri)
    try:
        body = need_client(uri, s3_client).get_object(Bucket=bucket, Key=key)["Body"]
    except s3_exceptions() as exc:
        raise s3_error(uri, exc) from exc
    try:
        yield from body.iter_chunks(chunk)
    except s3_exceptions() as exc:
        raise s3_error(uri, exc) from exc
    finally:
        body.close()


def put_object(
    uri: str, s3_client: Any | None, body: bytes, *, content_type: str | None = None
) -> None:
    """Store `body` at `uri` in one request (readers see the old object or the new one)."""
    bucket, key = split_s3(uri)
    extra = {"ContentType": content_type} if content_type else {}
    try:
        need_client(uri, s3_client).put_object(Bucket=bucket, Key=key, Body=body, **extra)
    except s3_exceptions() as exc:
        raise s3_error(uri, exc) from exc


def upload_file(path: str, uri: str, s3_client: Any | None) -> None:
    """Upload a local file to `uri` (multipart for large files; visible once complete)."""
    bucket, key = split_s3(uri)
    try:
        need_client(uri, s3_client).upload_file(path, bucket, key)
    except upload_exceptions() as exc:
        raise s3_error(uri, exc) from exc


def object_exists(uri: str, s3_client: Any | None) -> bool:
    """Whether an object is stored at `uri` (a missing one is False, other errors raise)."""
    bucket, key = split_s3(uri)
    try:
        need_client(uri, s3_client).head_object(Bucket=bucket, Key=key)
    except s3_exceptions() as exc:
        code = str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))
        if code in _NOT_FOUND:
            return False
        raise s3_error(uri, exc) from exc
    return True


def delete_object(uri: str, s3_client: Any | None) -> None:
    """Remove the object at `uri`; a missing one is not an error."""
    bucket, key = split_s3(uri)
    try:
        need_client(uri, s3_client).delete_object(Bucket=bucket, Key=key)
    except s3_exceptions() as exc:
        raise s3_error(uri, exc) from exc


def list_keys(
    uri: str, s3_client: Any | None, bucket: str, prefix: str, *, delimiter: bool
) -> list[str]:
    """Object keys under `prefix` in `bucket` (only its direct children with `delimiter`);
    `uri` names the place in errors."""
    kwargs: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix}
    if delimiter:
        kwargs["Delimiter"] = "/"
    keys: list[str] = []
    try:
        pages = need_client(uri, s3_client).get_paginator("list_objects_v2").paginate(**kwargs)
        for page in pages:
            keys += [o["Key"] for o in page.get("Contents", []) if not o["Key"].endswith("/")]
    except s3_exceptions() as exc:
        raise s3_error(uri, exc) from exc
    return keys
