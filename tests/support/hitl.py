"""Waiting for a human-in-the-loop task of a real Airflow run until an answer is safe to give."""

from __future__ import annotations

import time
from typing import Any


def wait_for_task_state(
    api: Any, dag_id: str, run_id: str, task_id: str, state: str, timeout: float = 600
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tis = {t["task_id"]: t["state"] for t in api.task_instances(dag_id, run_id)}
        if tis.get(task_id) == state:
            return
        time.sleep(1)
    raise TimeoutError(f"{dag_id} {run_id}: {task_id} not {state} within {timeout}s: {tis}")


def wait_until_parked(stack: Any, dag_id: str, run_id: str, task_id: str) -> None:
    """Wait until the scheduler has seen the worker process that parked the task end.

    A task parks in `awaiting_input` before its worker process has exited. If the answer
    resumes it before the scheduler has read that exit from the LocalExecutor, the executor's
    bookkeeping of the resumed try (same key) is dropped with the old one and the scheduler
    fails the resumed task as "killed externally". The scheduler logs "TaskInstance Finished:
    ... state=awaiting_input" once it has read the exit: after that line an answer is safe,
    however slow the machine (a fixed sleep was not).
    """
    needle = f"dag_id={dag_id}, task_id={task_id}, run_id={run_id},"
    log = stack.log_file("scheduler")
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        for line in log.read_text(errors="replace").splitlines():
            if "TaskInstance Finished" in line and needle in line and "awaiting_input" in line:
                return
        time.sleep(1)
    raise TimeoutError(f"the scheduler never logged the parked {task_id} of {run_id} ending")
