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
import subprocess
import tempfile
import time
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
    """Start and stop a password-protected Redis; a context manager yielding itself.

    Args:
        password: `requirepass` (random if None).
        startup_timeout: Seconds to wait until the server answers PING.
    """

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
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.base_dir / "redis.log"

    def url(self, db: int = 0) -> str:
        """redis://:<password>@127.0.0.1:<port>/<db>: contains the password, never log it."""
        return f"redis://:{quote(self.password, safe='')}@{HOST}:{self.port}/{db}"

    def _write_config(self) -> Path:
        config = self.base_dir / "redis.conf"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(
                f"bind {HOST}\nport {self.port}\nprotected-mode yes\n"
                f"requirepass {self.password}\ndir {self.base_dir}\n"
                f'logfile {self.log_path}\nappendonly yes\nsave ""\n'
                "daemonize no\n"
            )
        return config

    def start(self) -> RedisServer:
        """Start the server and wait until an authenticated PING answers."""
        if self.proc is not None:
            raise RuntimeError("RedisServer already running")
        if not port_free(self.port):
            raise RuntimeError(f"cannot start redis: {HOST}:{self.port} is in use")
        config = self._write_config()
        self.proc = subprocess.Popen(
            [self.binary, str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            cwd=self.base_dir,
            start_new_session=True,
        )
        deadline = time.monotonic() + self.startup_timeout
        while not self.ping():
            if self.proc.poll() is not None:
                self.proc = None
                raise RuntimeError(f"redis-server exited during start-up:\n{self._log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis not ready after {self.startup_timeout}s")
            time.sleep(0.1)
        return self

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
        try:
            return self.command("PING").startswith(b"+PONG")
        except (OSError, RuntimeError):
            return False
