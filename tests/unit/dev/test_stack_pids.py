"""Which processes are the stack's: the marker in the environment, a component's session."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from airmlops_dev import process_group
from airmlops_dev.stack_config import StackConfig
from airmlops_dev.stack_pids import (
    is_ours,
    read_pid,
    session_members,
    stack_processes,
    start_component,
)

# A component that starts a helper without the marker in its environment (same session).
COMPONENT = """
import os, subprocess, sys, time
env = {k: v for k, v in os.environ.items() if k != "AIRMLOPS_STACK_HOME"}
helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
print(helper.pid, flush=True)
time.sleep(60)
"""


@pytest.fixture
def component(tmp_path: Path) -> Iterator[tuple[StackConfig, int, int]]:
    """A stack with one running component (as "receiver") and the helper it started."""
    cfg = StackConfig(home=tmp_path)
    cfg.logs_dir.mkdir(parents=True)
    cfg.run_dir.mkdir(parents=True)
    pid = start_component(cfg, "receiver", [sys.executable, "-c", COMPONENT], {})
    deadline = time.monotonic() + 30
    lines: list[str] = []
    while not lines and time.monotonic() < deadline:
        text = cfg.log_file("receiver").read_text()
        lines = [ln for ln in text.splitlines() if ln and not ln.startswith("===")]
        time.sleep(0.05)
    helper = int(lines[0])
    try:
        yield cfg, pid, helper
    finally:
        assert process_group.stop_group(pid, timeout=5.0) == []


def test_a_component_and_its_session_are_the_stacks(component) -> None:
    cfg, pid, helper = component
    assert read_pid(cfg.pid_file("receiver")) == pid
    assert is_ours(pid, cfg)
    assert not is_ours(helper, cfg)  # no marker, not a session leader
    assert {pid, helper} <= set(stack_processes(cfg))
    assert session_members(cfg, pid) >= {pid, helper}
    other = StackConfig(home=cfg.root / "other")
    assert not is_ours(pid, other)
    assert stack_processes(other) == []


def test_nothing_else_is_the_stacks(tmp_path: Path) -> None:
    cfg = StackConfig(home=tmp_path)
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"]) as stranger:
        try:
            assert not is_ours(stranger.pid, cfg)
            assert stranger.pid not in stack_processes(cfg)
        finally:
            stranger.kill()
    assert read_pid(tmp_path / "missing.pid") is None
    (tmp_path / "bad.pid").write_text("not a pid")
    assert read_pid(tmp_path / "bad.pid") is None


# A component that reports where it runs and what it sees as its local directories.
WHERE = """
import json, os, tempfile, time
print(json.dumps({"cwd": os.getcwd(), "tmp": tempfile.gettempdir(),
                  "local": os.environ["AIRMLOPS_LOCAL_DIR"],
                  "data": os.environ["AIRMLOPS_DATA_DIR"]}), flush=True)
time.sleep(60)
"""


def test_private_component_dirs_give_each_component_its_own_local_directories(
    tmp_path: Path,
) -> None:
    import json

    from airmlops_dev.stack_setup import initialize

    cfg = StackConfig(home=tmp_path / "h", private_component_dirs=True)
    initialize(cfg)
    shared = {"AIRMLOPS_LOCAL_DIR": str(cfg.root), "AIRMLOPS_DATA_DIR": str(cfg.root / "data")}
    seen = {}
    for name in ("scheduler", "triggerer"):
        pid = start_component(cfg, name, [sys.executable, "-c", WHERE], shared)
        try:
            deadline = time.monotonic() + 30
            lines: list[str] = []
            while not lines and time.monotonic() < deadline:
                text = cfg.log_file(name).read_text()
                lines = [ln for ln in text.splitlines() if ln.startswith("{")]
                time.sleep(0.05)
            seen[name] = json.loads(lines[0])
            assert is_ours(pid, cfg)  # a session leader in its private directory
        finally:
            assert process_group.stop_group(pid, timeout=5.0) == []
    own = cfg.root / "private" / "scheduler"
    assert seen["scheduler"] == {
        "cwd": str(own),
        "tmp": str(own / "tmp"),
        "local": str(own),
        "data": str(own / "data"),
    }
    # nothing in common: neither the home's directories nor each other's
    assert not set(seen["scheduler"].values()) & set(seen["triggerer"].values())
    assert str(cfg.root) not in seen["triggerer"].values()
    assert oct(own.stat().st_mode & 0o777) == "0o700"
