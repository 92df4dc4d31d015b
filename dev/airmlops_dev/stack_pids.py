"""The local stack's processes: PID files, which processes are the stack's, starting one.

A component is a daemon: it leads its own session and process group, outlives the Python process
that started it, and is found again through its PID file and the ``AIRMLOPS_STACK_HOME`` marker
in its environment. Launching and stopping are airmlops_dev.process_group's.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from pathlib import Path

import psutil

from airmlops_dev import process_group
from airmlops_dev.private_files import PRIVATE_UMASK, private_opener, write_private
from airmlops_dev.stack_config import MARKER_ENV, StackConfig, StackError
from airmlops_dev.stack_env import launch_env

log = logging.getLogger(__name__)

_GONE = (psutil.STATUS_ZOMBIE, psutil.STATUS_DEAD)


def read_pid(path: Path) -> int | None:
    """The PID in a PID file, or None when it is missing or unreadable."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _session(pid: int) -> int | None:
    """The session id of a process, or None when it is gone."""
    try:
        return os.getsid(pid)
    except OSError:
        return None


def is_ours(pid: int, cfg: StackConfig) -> bool:
    """Whether ``pid`` is a live component of this stack (guards against PID reuse)."""
    if not process_group.alive(pid):
        return False
    try:
        proc = psutil.Process(pid)
        with contextlib.suppress(psutil.AccessDenied):
            if proc.environ().get(MARKER_ENV) == str(cfg.root):
                return True
        # Airflow renames its processes with setproctitle, which wipes the environment unless
        # SPT_NOENV is set; a session leader running in the stack's home is ours too.
        # (a component with a private directory runs in <home>/private/<name>)
        cwd = Path(proc.cwd())
        return _session(pid) == pid and (cwd == cfg.root or cwd.parent == cfg.root / "private")
    except psutil.Error:
        return False


def stack_processes(cfg: StackConfig) -> list[int]:
    """PIDs of every live process of this stack (components, their children, tasks).

    A process belongs to the stack when it carries the ``AIRMLOPS_STACK_HOME`` marker in its
    environment or runs in the session of a component (each component leads its own session).

    Args:
        cfg: The stack configuration.

    Returns:
        Sorted PIDs; the calling process is never included.
    """
    leaders: set[int] = set()
    for name in cfg.components:
        pid = read_pid(cfg.pid_file(name))
        if pid and is_ours(pid, cfg):
            leaders.add(pid)
    pids = set(leaders)
    marker = str(cfg.root)
    for proc in psutil.process_iter(["status", "environ"]):
        if proc.info["status"] in _GONE:
            continue
        environ = proc.info["environ"] or {}
        if _session(proc.pid) in leaders or environ.get(MARKER_ENV) == marker:
            pids.add(proc.pid)
    pids.discard(os.getpid())
    return sorted(pids)


def session_members(cfg: StackConfig, sid: int) -> set[int]:
    """Live processes of this stack in session ``sid`` (a component's leftovers)."""
    return {pid for pid in stack_processes(cfg) if _session(pid) == sid}


def start_component(cfg: StackConfig, name: str, argv: list[str], env: dict[str, str]) -> int:
    """Launch component ``name`` detached (umask 077), logging to its log file; write its PID
    file."""
    log_path = cfg.log_file(name)
    pid = process_group.launch(
        argv,
        log_path,
        env=launch_env(cfg, {**env, **cfg.component_env(name)}),
        cwd=cfg.component_dir(name),
        banner=f"starting {name}",
        umask=PRIVATE_UMASK,
    )
    write_private(cfg.pid_file(name), f"{pid}\n")
    log.info("started %s (pid %d), log %s", name, pid, log_path)
    return pid


def run_once(cfg: StackConfig, name: str, argv: list[str], env: dict[str, str]) -> None:
    """Run a setup command to completion, logging to ``<home>/logs/<name>.log``."""
    log_path = cfg.log_file(name)
    with open(log_path, "ab", opener=private_opener) as logf:
        logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv[1:])}\n".encode())
        logf.flush()
        try:
            result = subprocess.run(
                argv,
                cwd=cfg.root,
                env=launch_env(cfg, env),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                timeout=900,
                check=False,
                umask=PRIVATE_UMASK,
            )
            failure = f"exit {result.returncode}" if result.returncode else ""
        except subprocess.TimeoutExpired:
            failure = "timed out after 900s"
    if failure:
        raise StackError(
            f"{name} failed ({failure}); last lines of {log_path}:\n"
            + process_group.log_tail(log_path)
        )
