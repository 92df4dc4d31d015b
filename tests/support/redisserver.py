"""A real Redis server for tests (Debian's `redis-server`), on 127.0.0.1.

The server gets a free port, a generated password (`requirepass`, written to a mode-0600 config
file, never on a command line) and an append-only file in a temp directory, as the compose
stack's Redis does, so a restart keeps queued messages. `make system-deps` installs
`redis-server` when it is missing.

Usage::

    with RedisServer() as redis:
        broker_url = redis.url(0)

`restart()` stops and starts the same server on the same port (a fault the tests inject).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import tempfile
from pathlib import Path
from urllib.parse import quote

from airmlops_dev.ports import free_ports, port_free
from serverprocess import ServerProcess

HOST = "127.0.0.1"


def redis_binary() -> str | None:
    """Path of redis-server ($AIRMLOPS_REDIS_BIN, else PATH, else /usr/bin)."""
    env = os.environ.get("AIRMLOPS_REDIS_BIN")
    if env:
        return env
    return shutil.which("redis-server") or shutil.which("redis-server", path="/usr/bin:/usr/sbin")


class RedisServer(ServerProcess):
    """A password-protected Redis (a ServerProcess); a context manager yielding itself.

    Args:
        password: `requirepass` (random if None).
        startup_timeout: Seconds to wait until the server answers PING.
    """

    name = "redis"
    READY_POLL = 0.1
    STOP_SIGNAL = signal.SIGTERM  # Redis flushes its append-only file and exits

    def __init__(self, *, password: str | None = None, startup_timeout: float = 30.0) -> None:
        binary = redis_binary()
        if binary is None:
            raise RuntimeError(
                "redis-server not found (Debian: apt-get install redis-server; "
                "`make system-deps` does it)"
            )
        self.binary = binary
        self.password = password or secrets.token_urlsafe(24)
        self.startup_timeout = startup_timeout
        self.base_dir = Path(tempfile.mkdtemp(prefix="airmlops-redis-"))
        (self.port,) = free_ports(1)
        self._config = self.base_dir / "redis.conf"

    def url(self, db: int = 0) -> str:
        """redis://:<password>@127.0.0.1:<port>/<db>: contains the password, never log it."""
        return f"redis://:{quote(self.password, safe='')}@{HOST}:{self.port}/{db}"

    def _write_config(self) -> Path:
        """The config file (mode 0600: it holds the password); the log goes to stdout."""
        config = self.base_dir / "redis.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(
                f"bind {HOST}\nport {self.port}\nprotected-mode yes\n"
                f"requirepass {self.password}\ndir {self.base_dir}\n"
                'logfile ""\nappendonly yes\nsave ""\n'
                "daemonize no\n"
            )
        return config

    def prepare(self) -> None:
        """The port must be free; (re)write the config file."""
        if not port_free(self.port):
            raise RuntimeError(f"cannot start redis: {HOST}:{self.port} is in use")
        self._config = self._write_config()

    def argv(self) -> list[str]:
        """redis-server with the config file (the password is in there only)."""
        return [self.binary, str(self._config)]

    def ready(self) -> bool:
        """Whether an authenticated PING answers."""
        return self.ping()

    def command(self, *words: str, timeout: float = 2.0) -> bytes:
        """Send one authenticated command (RESP) and return the raw reply of that command."""

        def resp(parts: tuple[str, ...]) -> bytes:
            out = f"*{len(parts)}\r\n".encode()
            for part in parts:
                raw = part.encode()
                out += b"$%d\r\n%s\r\n" % (len(raw), raw)
            return out

        with socket.create_connection((HOST, self.port), timeout=timeout) as sock:
            sock.sendall(resp(("AUTH", self.password)) + resp(words))
            data = b""
            while data.count(b"\r\n") < 2:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
        auth, _, reply = data.partition(b"\r\n")
        if auth != b"+OK":
            raise RuntimeError(f"redis AUTH failed: {auth[:80]!r}")
        return reply

    def ping(self) -> bool:
        """Whether an authenticated PING gets PONG."""
        try:
            return self.command("PING").startswith(b"+PONG")
        except (OSError, RuntimeError):
            return False
