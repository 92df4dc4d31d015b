"""A throwaway MLflow tracking server on loopback, for tests and benchmarks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airmlops_dev.ports import free_ports


def server_argv(root: Path, host: str, port: int, bin_dir: Path | None = None) -> list[str]:
    """`mlflow server` with a SQLite backend and artifacts served through the server."""
    mlflow = str((bin_dir or Path(sys.executable).parent) / "mlflow")
    return [
        mlflow,
        "server",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--serve-artifacts",
    ]


SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}


@contextmanager
def mlflow_server(root: Path, *, timeout: float = 120.0) -> Iterator[str]:
    """Run a server storing under `root`; yield its URL; stop its whole process group."""
    root.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    log = (root / "server.log").open("ab")
    proc = subprocess.Popen(
        server_argv(root, "127.0.0.1", port),
        env={**os.environ, **SERVER_ENV},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2).read()
                break
            except OSError as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"MLflow server did not start; see {root}/server.log"
                    ) from exc
                time.sleep(0.5)
        yield url
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()
