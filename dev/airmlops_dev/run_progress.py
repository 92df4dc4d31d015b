"""What `make up` shows while the demo runs: each task's state changes, several runs at once.

``TaskProgress`` turns successive task-instance listings of a run into one line per change::

    [  2m05s] customer_churn__train  train                 running
    [  2m31s] customer_churn__train  train                 success (24.1s)

and keeps a record of every run it saw (when it was first seen and ended, its tasks' queued,
start and end times) for the timeline (airmlops_dev.up_timeline). ``RunWatcher`` follows several
runs together, polling the Airflow REST API, so runs that overlap are watched as they overlap;
it can also wait for the next run an Asset event starts (the promotion gate after a training).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from airmlops_dev import up_timeline
from airmlops_dev.airflow_api import TERMINAL_RUN_STATES, AirflowClient

# States a task starts in: not worth a line of their own.
_INITIAL = (None, "", "none", "scheduled")


def _print(line: str) -> None:
    print(line, flush=True)


@dataclass
class RunRecord:
    """One run as seen from outside: first seen, ended (epoch seconds), state, its tasks."""

    dag_id: str
    run_id: str
    first_seen: float
    state: str = "queued"
    ended: float | None = None
    tasks: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "dag_id": self.dag_id,
            "run_id": self.run_id,
            "state": self.state,
            "first_seen": self.first_seen,
            "ended": self.ended,
            "tasks": self.tasks,
        }


def _task_key(ti: dict[str, Any]) -> str:
    index = ti.get("map_index", -1)
    return ti["task_id"] if index in (None, -1) else f"{ti['task_id']}[{index}]"


class TaskProgress:
    """Prints task state changes of the runs it is shown and records the runs.

    Args:
        out: Where lines go (default: stdout, flushed).
        clock_start: Epoch seconds the ``[elapsed]`` prefix counts from (default: the start of
            `make up`, see up_timeline.clock_start).
    """

    def __init__(
        self, out: Callable[[str], None] = _print, clock_start: float | None = None
    ) -> None:
        self.out = out
        self.clock_start = up_timeline.clock_start() if clock_start is None else clock_start
        self.runs: dict[tuple[str, str], RunRecord] = {}

    def _line(self, dag_id: str, what: str, state: str) -> None:
        elapsed = up_timeline.format_seconds(time.time() - self.clock_start)
        self.out(f"[{elapsed:>7}] {dag_id:<26} {what:<22} {state}")

    def run_state(self, dag_id: str, run_id: str, state: str) -> bool:
        """Record a run's state; print a line when the run is new or has changed (True)."""
        now = time.time()
        record = self.runs.get((dag_id, run_id))
        if record is None:
            record = self.runs[(dag_id, run_id)] = RunRecord(dag_id, run_id, now, state)
            self._line(dag_id, "run", f"{state} ({run_id})")
            return True
        if record.state == state:
            return False
        record.state = state
        if state in TERMINAL_RUN_STATES:
            record.ended = now
            took = up_timeline.format_seconds(now - record.first_seen)
            self._line(dag_id, "run", f"{state} after {took}")
        else:
            self._line(dag_id, "run", state)
        return True

    def update(self, dag_id: str, run_id: str, task_instances: list[dict[str, Any]]) -> bool:
        """Print one line per task whose state changed since the last listing of this run;
        True when one did."""
        changed = False
        record = self.runs.get((dag_id, run_id))
        if record is None:
            self.run_state(dag_id, run_id, "running")
            record = self.runs[(dag_id, run_id)]
        for ti in task_instances:
            key, state = _task_key(ti), ti.get("state")
            seen = record.tasks.get(key)
            if seen is not None and seen["state"] == state:
                continue
            changed = True
            record.tasks[key] = {
                "state": state,
                "queued": ti.get("queued_when"),
                "start": ti.get("start_date"),
                "end": ti.get("end_date"),
                "duration": ti.get("duration"),
            }
            if state in _INITIAL:
                continue
            duration = ti.get("duration")
            shown = f"{state} ({duration:.1f}s)" if duration and ti.get("end_date") else state
            self._line(dag_id, key, shown)
        return changed


_SHARED: TaskProgress | None = None


def shared() -> TaskProgress:
    """This process's TaskProgress: every demo client prints and records through it."""
    global _SHARED
    if _SHARED is None:
        _SHARED = TaskProgress()
    return _SHARED


@dataclass
class _Followed:
    dag_id: str
    run_id: str | None  # None: the next new run of dag_id, not one of `known`
    timeout: float
    deadline: float
    known: frozenset[str] = frozenset()


class RunWatcher:
    """Follows several DAG runs at once until each has finished, printing their task changes.

    Args:
        api: The Airflow client.
        progress: Prints and records (default: the shared one).
        poll: Seconds between polls.
    """

    def __init__(
        self, api: AirflowClient, progress: TaskProgress | None = None, poll: float = 2.0
    ) -> None:
        self.api = api
        self.progress = progress or shared()
        self.poll = poll
        self._followed: list[_Followed] = []

    def follow(self, dag_id: str, run_id: str, timeout: float) -> None:
        """Follow a known run until it ends; TimeoutError when neither it nor any of its tasks
        changes state for `timeout` seconds (runs that overlap share the machine, so a total
        time would depend on what else runs)."""
        self._followed.append(_Followed(dag_id, run_id, timeout, time.monotonic() + timeout))

    def follow_next(self, dag_id: str, known: set[str], timeout: float) -> None:
        """Follow the next run of dag_id that is not in `known` (e.g. one an Asset event
        starts), which must appear within `timeout` seconds; then as ``follow``."""
        self._followed.append(
            _Followed(dag_id, None, timeout, time.monotonic() + timeout, frozenset(known))
        )

    @property
    def active(self) -> bool:
        return bool(self._followed)

    def poll_once(self) -> list[tuple[str, str, str]]:
        """Poll every followed run once; return (dag_id, run_id, state) of those that ended.

        Raises:
            TimeoutError: A run did not appear or end in time (names it and its task states).
        """
        ended = []
        for f in list(self._followed):
            if f.run_id is None:
                new = sorted(
                    r["dag_run_id"]
                    for r in self.api.dag_runs(f.dag_id)
                    if r["dag_run_id"] not in f.known
                )
                if not new:
                    if time.monotonic() > f.deadline:
                        raise TimeoutError(f"no new run of {f.dag_id} appeared in time")
                    continue
                f.run_id = new[0]
            state = self.api.dag_run(f.dag_id, f.run_id)["state"]
            changed = self.progress.run_state(f.dag_id, f.run_id, state)
            tis = self.api.task_instances(f.dag_id, f.run_id)
            changed = self.progress.update(f.dag_id, f.run_id, tis) or changed
            if state in TERMINAL_RUN_STATES:
                self._followed.remove(f)
                ended.append((f.dag_id, f.run_id, state))
            elif changed:
                f.deadline = time.monotonic() + f.timeout
            elif time.monotonic() > f.deadline:
                tasks = {t["task_id"]: t["state"] for t in tis}
                raise TimeoutError(
                    f"{f.dag_id} run {f.run_id} still {state!r}, nothing changed for "
                    f"{f.timeout:.0f}s; tasks: {tasks}"
                )
        return ended

    def wait_any(self) -> list[tuple[str, str, str]]:
        """Poll until at least one followed run ends (or none is followed); return those."""
        while self._followed:
            if ended := self.poll_once():
                return ended
            time.sleep(self.poll)
        return []
