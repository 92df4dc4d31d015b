"""A real PostgreSQL server for tests, from the machine's server binaries, on 127.0.0.1.

Debian's `postgresql` package (often on the machine image without a running cluster) provides
/usr/lib/postgresql/<version>/bin/{initdb,postgres,pg_isready}; `make system-deps` installs it
when missing. The cluster lives in a temp directory, listens on a free TCP port and on a Unix
socket in that directory, with the official image's authentication: trust on the socket,
scram-sha-256 over TCP. PostgreSQL refuses to run as root, so as root the server runs as the
`postgres` user (setpriv).

Usage::

    with PostgresServer() as pg:
        subprocess.run(["psql", ...], env={**os.environ, **pg.env})

`restart()` stops and starts the same cluster on the same port (a fault the tests inject).
"""

from __future__ import annotations

import os
import pwd
import signal
import subprocess
import tempfile
from pathlib import Path
from urllib.parse import quote

from airmlops_dev.ports import free_ports, port_free
from serverprocess import ServerProcess

HOST = "127.0.0.1"
MIN_VERSION = 15  # psql's \getenv (docker/postgres/init-databases.sh)


def postgres_bin(min_version: int = MIN_VERSION) -> Path | None:
    """The newest /usr/lib/postgresql/<v>/bin holding initdb, if its version is >= min_version."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/initdb"),
        key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0,
    )
    if not found or not found[-1].parts[-3].isdigit():
        return None
    return found[-1].parent if int(found[-1].parts[-3]) >= min_version else None


class PostgresUnavailable(RuntimeError):
    """No usable server binaries, or no unprivileged user to run them as."""


class PostgresServer(ServerProcess):
    """A throwaway PostgreSQL cluster (a ServerProcess); a context manager yielding itself.

    Args:
        startup_timeout: Seconds to wait until the server accepts connections.
        fsync: Keep fsync on (off by default: throwaway data, faster tests).
    """

    name = "postgres"
    STOP_SIGNAL = signal.SIGINT  # PostgreSQL's fast shutdown: clients are disconnected

    def __init__(self, *, startup_timeout: float = 60.0, fsync: bool = False) -> None:
        bin_dir = postgres_bin()
        if bin_dir is None:
            raise PostgresUnavailable(
                f"PostgreSQL >= {MIN_VERSION} server binaries not found under /usr/lib/postgresql "
                "(Debian: apt-get install postgresql; `make system-deps` does it)"
            )
        self.bin_dir = bin_dir
        self.startup_timeout = startup_timeout
        self.fsync = fsync
        self.prefix: list[str] = []
        self._owner: tuple[int, int] | None = None
        if os.geteuid() == 0:
            try:
                user = pwd.getpwnam("postgres")
            except KeyError as exc:
                raise PostgresUnavailable(
                    "running as root and there is no 'postgres' user to run the server as"
                ) from exc
            self._owner = (user.pw_uid, user.pw_gid)
            self.prefix = [
                "setpriv",
                f"--reuid={user.pw_uid}",
                f"--regid={user.pw_gid}",
                "--init-groups",
            ]
        # under /tmp: the server user must reach it (pytest's temp dirs are private to root),
        # and the socket path must stay short
        self.base_dir = Path(tempfile.mkdtemp(prefix="airmlops-pg-", dir="/tmp"))
        if self._owner:
            os.chown(self.base_dir, *self._owner)
        (self.port,) = free_ports(1)
        self._initialized = False

    @property
    def data_dir(self) -> Path:
        """The cluster's data directory."""
        return self.base_dir / "data"

    @property
    def socket_dir(self) -> Path:
        """The directory of the server's Unix socket."""
        return self.base_dir / "sock"

    @property
    def env(self) -> dict[str, str]:
        """PATH (server binaries first), PGHOST (the socket directory) and PGPORT."""
        return {
            "PATH": f"{self.bin_dir}:{os.environ.get('PATH', '')}",
            "PGHOST": str(self.socket_dir),
            "PGPORT": str(self.port),
        }

    def url(
        self, user: str, password: str, database: str, driver: str = "postgresql+psycopg2"
    ) -> str:
        """A SQLAlchemy URL for a password login over TCP (as the other services connect)."""
        login = f"{quote(user, safe='')}:{quote(password, safe='')}"
        return f"{driver}://{login}@{HOST}:{self.port}/{database}"

    def _run(self, *argv: str) -> None:
        result = subprocess.run(
            [*self.prefix, *argv], capture_output=True, text=True, timeout=120, check=False
        )
        if result.returncode:
            raise RuntimeError(f"{argv[0]} failed ({result.returncode}): {result.stderr.strip()}")

    def _initdb(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data_dir),
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "-E",
            "UTF8",
        )
        self._run("mkdir", "-p", str(self.socket_dir))
        self._initialized = True

    def prepare(self) -> None:
        """Create the cluster on first use; the port must be free."""
        if not self._initialized:
            self._initdb()
        if not port_free(self.port):
            raise RuntimeError(f"cannot start postgres: {HOST}:{self.port} is in use")

    def argv(self) -> list[str]:
        """The postmaster, as the server user when running as root."""
        return [
            *self.prefix,
            str(self.bin_dir / "postgres"),
            "-D",
            str(self.data_dir),
            "-k",
            str(self.socket_dir),
            "-h",
            HOST,
            "-p",
            str(self.port),
            "-c",
            f"fsync={'on' if self.fsync else 'off'}",
            "-c",
            "max_connections=200",
        ]

    def ready(self) -> bool:
        """Whether the server accepts connections (pg_isready on the socket)."""
        return (
            subprocess.run(
                [
                    str(self.bin_dir / "pg_isready"),
                    "-q",
                    "-h",
                    str(self.socket_dir),
                    "-p",
                    str(self.port),
                ],
                check=False,
            ).returncode
            == 0
        )
