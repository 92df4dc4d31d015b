"""The one lifecycle of the tests' throwaway servers: start, wait ready, stop, kill, close.

A subclass names its command line (`argv`), its readiness check (`ready`) and what to do before
each start (`prepare`); this base launches the server in a process group of its own with its
output in `log_path`, waits until it is ready (or fails with the tail of its log), and stops the
whole group: STOP_SIGNAL, then SIGKILL after a timeout (airmlops_dev.process_group, which the
local stack's daemons use too). As a context manager it yields itself and closes on exit.

Usage::

    with PostgresServer() as pg:
        ...
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import Self

from airmlops_dev import process_group


class ServerProcess:
    """A server process leading its own process group, with a directory for its files.

    Attributes:
        base_dir: The server's files; deleted by `close()` when `own_dir` is set.
        pid: The process group leader while the server runs, else None.
        last_error: Why the last readiness check failed, for the start-up error message.
    """

    name = "server"
    STOP_SIGNAL = signal.SIGTERM
    STOP_TIMEOUT = 30.0
    READY_POLL = 0.2
    startup_timeout = 60.0
    own_dir = True
    base_dir: Path
    pid: int | None = None
    last_error = ""

    @property
    def log_path(self) -> Path:
        """Where the server's stdout and stderr go."""
        return self.base_dir / f"{self.name}.log"

    def argv(self) -> list[str]:
        """The server's command line."""
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The server's environment (None: this process's)."""
        return None

    def prepare(self) -> None:
        """Run before each start (create files, check the port)."""

    def ready(self) -> bool:
        """Whether the server answers (it may set `last_error` when it does not)."""
        raise NotImplementedError

    def launch(self) -> int:
        """Start the server process in a group of its own; return its PID."""
        return process_group.launch(
            self.argv(),
            self.log_path,
            env=self.environment(),
            cwd=self.base_dir,
            banner=f"starting {self.name}",
        )

    def running(self) -> bool:
        """Whether the server's process is alive (it may still be starting)."""
        return self.pid is not None and process_group.alive(self.pid)

    def start(self) -> Self:
        """Start the server and wait until it is ready; stop it again if it never is."""
        if self.running():
            raise RuntimeError(f"{self.name} already running (pid {self.pid})")
        self.pid = None
        self.prepare()
        self.pid = self.launch()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Poll `ready()` until it holds, the server exits, or `startup_timeout` passes."""
        deadline = time.monotonic() + self.startup_timeout
        while not self.ready():
            if not self.running():
                raise RuntimeError(
                    f"{self.name} exited during start-up; last lines of {self.log_path}:\n"
                    + self.log_tail()
                )
            if time.monotonic() > deadline:
                reason = f" (last error: {self.last_error})" if self.last_error else ""
                raise RuntimeError(
                    f"{self.name} not ready after {self.startup_timeout:.0f}s{reason}; "
                    f"last lines of {self.log_path}:\n" + self.log_tail()
                )
            time.sleep(self.READY_POLL)

    def stop(self, timeout: float | None = None) -> None:
        """STOP_SIGNAL to the server's process group, SIGKILL after `timeout` seconds."""
        self._end(self.STOP_SIGNAL, self.STOP_TIMEOUT if timeout is None else timeout)

    def kill(self) -> None:
        """SIGKILL to the server's process group, like a crashed host; wait until it is gone."""
        self._end(signal.SIGKILL, 30.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        pid, self.pid = self.pid, None
        if pid is None:
            return
        if left := process_group.stop_group(pid, timeout, sig):
            raise RuntimeError(f"{self.name}: processes {left} survived SIGKILL")

    def restart(self, down_seconds: float = 0.0) -> float:
        """Stop, stay down `down_seconds`, start again; return the seconds it was down."""
        started = time.monotonic()
        self.stop()
        time.sleep(down_seconds)
        self.start()
        return time.monotonic() - started

    def close(self) -> None:
        """Stop the server and delete its directory when it made it."""
        try:
            self.stop()
        finally:
            if self.own_dir:
                shutil.rmtree(self.base_dir, ignore_errors=True)

    def log_tail(self, lines: int = 30) -> str:
        """The last lines of the server's log."""
        return process_group.log_tail(self.log_path, lines)

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.close()
            raise

    def __exit__(self, *exc: object) -> None:
        self.close()
