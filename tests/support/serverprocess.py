"""The lifecycle the tests' throwaway servers share: stop, restart, remove, context manager.

A subclass starts its server as `self.proc` in its own process group (start_new_session) with
files under `self.base_dir`, and names its log file and stop signal.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Self


class ServerProcess:
    """A server process in its own session with a private directory."""

    STOP_SIGNAL = signal.SIGTERM
    base_dir: Path
    proc: subprocess.Popen[Any] | None

    @property
    def log_path(self) -> Path:
        raise NotImplementedError

    def start(self) -> Self:
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> None:
        """STOP_SIGNAL to the server's process group, SIGKILL after `timeout` seconds."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, self.STOP_SIGNAL)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        except ProcessLookupError:
            proc.wait(timeout=10)

    def restart(self, down_seconds: float = 0.0) -> float:
        """Stop, stay down `down_seconds`, start on the same port; return the seconds down."""
        started = time.monotonic()
        self.stop()
        time.sleep(down_seconds)
        self.start()
        return time.monotonic() - started

    def remove(self) -> None:
        """Stop and delete the server's files."""
        self.stop()
        shutil.rmtree(self.base_dir, ignore_errors=True)

    def _log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def __enter__(self) -> Self:
        try:
            return self.start()
        except BaseException:
            self.remove()
            raise

    def __exit__(self, *exc: object) -> None:
        self.remove()
