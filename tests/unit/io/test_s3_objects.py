"""s3_objects: S3 errors become DataErrors naming the URI (no server needed for these)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from airmlops_core.errors import DataError
from airmlops_core.io import s3_objects


def client_error(code: str, message: str = "nope") -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, "GetObject")


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (client_error("NoSuchKey"), "s3://b/k.parquet: file not found"),
        (client_error("404"), "s3://b/k.parquet: file not found"),
        (client_error("NoSuchBucket"), "s3://b/k.parquet: bucket does not exist"),
        (client_error("AccessDenied", "denied"), "s3://b/k.parquet: S3 error AccessDenied: denied"),
        (
            EndpointConnectionError(endpoint_url="http://127.0.0.1:9"),
            "s3://b/k.parquet: S3 request failed: Could not connect",
        ),
    ],
)
def test_errors_name_the_uri_and_the_problem(exc: Exception, said: str) -> None:
    assert str(s3_objects.s3_error("s3://b/k.parquet", exc)).startswith(said)


def test_no_client_and_bad_uris_are_named() -> None:
    with pytest.raises(DataError, match=r"s3://b/k: an S3 client is needed"):
        s3_objects.put_object("s3://b/k", None, b"x")
    for bad in ("s3://b", "s3://b/", "s3://b/dir/", "s3:///k"):
        with pytest.raises(DataError, match="not an S3 object URI"):
            s3_objects.split_s3(bad)
    assert s3_objects.split_s3("s3://b/a/k.json") == ("b", "a/k.json")
