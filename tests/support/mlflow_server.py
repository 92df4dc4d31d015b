"""A throwaway MLflow tracking server on loopback (SQLite, served artifacts), for tests and
benchmarks.

Usage::

    with mlflow_server(tmp_path / "mlflow") as url:
        mlflow.set_tracking_uri(url)

`MlflowServer` is the ServerProcess behind it (fault_proxy.KillableMlflowServer extends it).
"""

from __future__ import annotations

import os
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from airmlops_dev.ports import LOOPBACK, free_ports
from serverprocess import ServerProcess

SERVER_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
_LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class MlflowServer(ServerProcess):
    """`mlflow server` storing under `root` (kept on close) on a loopback port.

    Args:
        root: Holds mlflow.db, artifacts/ and server.log.
        port: The port (a free one when None); kept across restarts.
        startup_timeout: Seconds to wait until /health answers.
    """

    name = "mlflow"
    own_dir = False

    def __init__(
        self, root: Path, port: int | None = None, *, startup_timeout: float = 120.0
    ) -> None:
        self.base_dir = root
        self.port = port or free_ports(1)[0]
        self.startup_timeout = startup_timeout
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.db_path = root / "mlflow.db"

    @property
    def log_path(self) -> Path:
        """The server's log, next to its data."""
        return self.base_dir / "server.log"

    def prepare(self) -> None:
        """Create the data directory."""
        self.base_dir.mkdir(parents=True, exist_ok=True)

    def argv(self) -> list[str]:
        """`mlflow server` with a SQLite backend and artifacts served through the server."""
        return [
            str(Path(sys.executable).parent / "mlflow"),
            "server",
            "--host",
            LOOPBACK,
            "--port",
            str(self.port),
            "--workers",
            "1",
            "--backend-store-uri",
            f"sqlite:///{self.db_path}",
            "--artifacts-destination",
            str(self.base_dir / "artifacts"),
            "--serve-artifacts",
        ]

    def environment(self) -> dict[str, str]:
        """This process's environment, with the job runner and telemetry off."""
        return {**os.environ, **SERVER_ENV}

    def ready(self) -> bool:
        """Whether /health answers 200."""
        try:
            with _LOCAL_HTTP.open(f"{self.url}/health", timeout=2) as resp:
                return bool(resp.status == 200)
        except OSError as exc:
            self.last_error = str(exc)
            return False


@contextmanager
def mlflow_server(root: Path, *, timeout: float = 120.0) -> Iterator[str]:
    """Run a server storing under `root`; yield its URL; stop its whole process group."""
    with MlflowServer(root, startup_timeout=timeout) as server:
        yield server.url
