"""Process groups: launch, alive (zombies are gone), terminate with SIGKILL fallback, log tail."""

from __future__ import annotations

import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from airmlops_dev import process_group

# A leader that starts a child in its group; the child ignores SIGTERM, then prints its PID.
STUBBORN_GROUP = """
import subprocess, sys, time
subprocess.Popen([sys.executable, "-c", "import os, signal, time; "
    "signal.signal(signal.SIGTERM, signal.SIG_IGN); print(os.getpid(), flush=True); "
    "time.sleep(60)"])
time.sleep(60)
"""


def _wait_for_line(path: Path, timeout: float = 30.0) -> str:
    """The last line a process wrote to its log (banners aside), once there is one."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("===")]
        if lines:
            return lines[-1]
        time.sleep(0.05)
    raise AssertionError(f"no output in {path}")


def test_launch_logs_a_banner_and_the_output_and_leads_a_group(tmp_path: Path) -> None:
    log = tmp_path / "echo.log"
    pid = process_group.launch(
        [sys.executable, "-c", "import os; print('pgid', os.getpgrp())"], log, banner="starting x"
    )
    assert _wait_for_line(log) == f"pgid {pid}"
    assert " starting x\n" in log.read_text()
    deadline = time.monotonic() + 10
    while process_group.alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not process_group.alive(pid)  # exited and reaped, not a zombie


def test_terminate_kills_what_ignores_sigterm_and_reports_no_survivor(tmp_path: Path) -> None:
    log = tmp_path / "group.log"
    leader = process_group.launch([sys.executable, "-c", STUBBORN_GROUP], log)
    child = int(_wait_for_line(log))
    assert process_group.group_members(leader) >= {leader, child}
    started = time.monotonic()
    assert process_group.stop_group(leader, timeout=1.0) == []
    assert time.monotonic() - started >= 1.0  # the child only went on SIGKILL
    assert not process_group.alive(leader)
    assert not process_group.alive(child)


def test_stop_group_finds_members_that_outlived_their_leader(tmp_path: Path) -> None:
    log = tmp_path / "orphan.log"
    leader = process_group.launch([sys.executable, "-c", STUBBORN_GROUP], log)
    child = int(_wait_for_line(log))
    os.kill(leader, signal.SIGKILL)
    while process_group.alive(leader):
        time.sleep(0.05)
    assert process_group.alive(child)
    assert process_group.stop_group(leader, timeout=0.5) == []
    assert not process_group.alive(child)


def test_signal_groups_spares_the_callers_own_group(monkeypatch: pytest.MonkeyPatch) -> None:
    groups: list[int] = []
    monkeypatch.setattr(os, "killpg", lambda pgid, sig: groups.append(pgid))
    monkeypatch.setattr(os, "kill", lambda pid, sig: None)
    process_group.signal_groups({os.getpid()}, signal.SIGTERM)
    assert groups == []


def test_alive_of_a_pid_that_does_not_exist() -> None:
    assert not process_group.alive(2**22 + 1)


def test_log_tail(tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    assert process_group.log_tail(log) == f"(no log at {log})"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    assert process_group.log_tail(log, lines=2) == "line 98\nline 99"


def test_launch_with_a_private_umask_makes_owner_only_files(tmp_path: Path) -> None:
    """What a stack component creates (databases, task logs) is owner-only, like its log."""
    old = os.umask(0o022)
    try:
        log = tmp_path / "writer.log"
        made = tmp_path / "made.db"
        pid = process_group.launch(
            [sys.executable, "-c", f"open({str(made)!r}, 'w').close(); print('done')"],
            log,
            umask=0o077,
        )
        assert _wait_for_line(log) == "done"
        while process_group.alive(pid):
            time.sleep(0.05)
    finally:
        os.umask(old)
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert os.umask(old) == old  # the caller's own umask is unchanged
