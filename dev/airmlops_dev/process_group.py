"""Processes that lead process groups of their own: launch, check, stop, read their logs.

The one process lifecycle of the dev stack: the local stack's daemons (airmlops_dev.localstack)
and the tests' throwaway servers (tests/support/serverprocess.py) are launched and stopped here.
Process state comes from psutil; a zombie counts as gone.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Iterable
from pathlib import Path

import psutil

from airmlops_dev.private_files import private_opener

log = logging.getLogger(__name__)

# Popen objects of the processes this interpreter launched, so they can be reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}
_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def launch(
    argv: list[str],
    log_path: Path,
    *,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
    banner: str = "",
    umask: int = -1,
) -> int:
    """Start `argv` in a new session (so its own process group), output appended to `log_path`.

    Args:
        argv: The command line.
        log_path: Receives stdout and stderr (appended; a ``=== <time> <banner>`` line first;
            created with mode 0600).
        env: The environment (default: this process's).
        cwd: The working directory.
        banner: Written to the log before the process starts.
        umask: The process's umask (default: this process's).

    Returns:
        The PID, which is also the process group's id.
    """
    with open(log_path, "ab", opener=private_opener) as logf:
        if banner:
            logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {banner}\n".encode())
            logf.flush()
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            umask=umask,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def reap() -> None:
    """Forget (and reap) the launched processes that have exited."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (reaping the ones launched here)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        return psutil.Process(pid).status() not in _GONE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def group_members(pgid: int) -> set[int]:
    """PIDs of the processes in process group `pgid` (zombies included)."""
    members = set()
    for pid in psutil.pids():
        with contextlib.suppress(OSError):
            if os.getpgid(pid) == pgid:
                members.add(pid)
    return members


def signal_groups(pids: Iterable[int], sig: signal.Signals) -> None:
    """Signal each process and its process group (never the caller's own group)."""
    pids = set(pids)
    own_group = os.getpgrp()
    groups = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            groups.add(os.getpgid(pid))
    for pgid in groups - {own_group}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _wait_gone(pids: set[int], timeout: float) -> set[int]:
    """Wait up to `timeout` seconds for `pids` to end; return the ones still alive."""
    deadline = time.monotonic() + timeout
    pause = 0.01
    while (left := {p for p in pids if alive(p)}) and time.monotonic() < deadline:
        time.sleep(pause)
        pause = min(pause * 2, 0.2)
    return left


def terminate(
    pids: Iterable[int], timeout: float, sig: signal.Signals = signal.SIGTERM
) -> list[int]:
    """`sig` to each process and its group, SIGKILL what is left after `timeout` seconds.

    Returns:
        The PIDs still alive 5 seconds after SIGKILL (sorted; empty when all ended).
    """
    pids = set(pids)
    signal_groups(pids, sig)
    left = _wait_gone(pids, timeout)
    if left and sig != signal.SIGKILL:
        log.warning("SIGKILL to %d processes still running after %.0fs", len(left), timeout)
        signal_groups(left, signal.SIGKILL)
        left = _wait_gone(left, 5.0)
    return sorted(left)


def stop_group(leader: int, timeout: float, sig: signal.Signals = signal.SIGTERM) -> list[int]:
    """Stop the process group `leader` leads, members that outlived the leader included.

    Returns:
        The PIDs that survived SIGKILL (see terminate).
    """
    return terminate({leader} | group_members(leader), timeout, sig)


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log file (from its last 64 KiB), or a note that there is none."""
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])
