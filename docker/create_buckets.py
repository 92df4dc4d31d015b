"""Create the compose stack's S3 buckets on the object store; run by the create-buckets service.

Reads S3_ENDPOINT_URL, S3_ADMIN_ACCESS_KEY, S3_ADMIN_SECRET_KEY and S3_BUCKETS (comma-separated)
from the environment, waits for the endpoint (S3_WAIT_SECONDS, default 120) and creates every
bucket that does not exist yet. Idempotent; never prints a key.
"""

from __future__ import annotations

import os
import sys
import time


def create_buckets(
    endpoint_url: str, access_key: str, secret_key: str, buckets: list[str], wait: float = 120.0
) -> list[str]:
    """Create the missing buckets; return the names of those created.

    Raises:
        RuntimeError: The endpoint did not answer within ``wait`` seconds (the last error is
            named).
    """
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError

    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name="us-east-1",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
    )
    deadline = time.monotonic() + wait
    while True:
        try:
            existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
            break
        except (BotoCoreError, ClientError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"S3 endpoint {endpoint_url} not ready: {exc}") from exc
            time.sleep(1.0)
    created = []
    for bucket in buckets:
        if bucket not in existing:
            client.create_bucket(Bucket=bucket)
            created.append(bucket)
    return created


def main() -> int:
    """Entry point; configuration from the environment."""
    try:
        endpoint = os.environ["S3_ENDPOINT_URL"]
        access_key = os.environ["S3_ADMIN_ACCESS_KEY"]
        secret_key = os.environ["S3_ADMIN_SECRET_KEY"]
        buckets = [b.strip() for b in os.environ["S3_BUCKETS"].split(",") if b.strip()]
    except KeyError as exc:
        print(f"error: environment variable {exc.args[0]} is not set", file=sys.stderr)
        return 2
    wait = float(os.environ.get("S3_WAIT_SECONDS", "120"))
    try:
        created = create_buckets(endpoint, access_key, secret_key, buckets, wait=wait)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"buckets on {endpoint}: {', '.join(buckets)} (created: {', '.join(created) or 'none'})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
