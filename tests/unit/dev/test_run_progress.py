"""Task progress lines and following several runs at once (a scripted Airflow API)."""

from __future__ import annotations

from typing import Any

import pytest

from airmlops_dev.run_progress import RunWatcher, TaskProgress


def ti(task_id: str, state: str | None, duration: float | None = None) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "map_index": -1,
        "state": state,
        "duration": duration,
        "end_date": "2026-01-01T00:00:00Z" if duration else None,
    }


def test_one_line_per_change_and_none_for_initial_states() -> None:
    lines: list[str] = []
    progress = TaskProgress(out=lines.append, clock_start=0.0)
    progress.run_state("m__train", "r1", "queued")
    progress.update("m__train", "r1", [ti("extract", None), ti("train", None)])
    progress.update("m__train", "r1", [ti("extract", "running"), ti("train", None)])
    progress.update("m__train", "r1", [ti("extract", "running"), ti("train", None)])
    progress.update("m__train", "r1", [ti("extract", "success", 3.25), ti("train", "queued")])
    progress.run_state("m__train", "r1", "success")
    shown = [line.split("] ", 1)[1].split() for line in lines]
    assert shown == [
        ["m__train", "run", "queued", "(r1)"],
        ["m__train", "extract", "running"],
        ["m__train", "extract", "success", "(3.2s)"],
        ["m__train", "train", "queued"],
        ["m__train", "run", "success", "after", shown[-1][-1]],
    ]
    record = progress.runs[("m__train", "r1")]
    assert record.state == "success"
    assert record.ended is not None
    assert record.tasks["extract"]["duration"] == 3.25


class ScriptedAPI:
    """Each poll of a run returns the next state of its script (the last one repeats)."""

    def __init__(self, scripts: dict[tuple[str, str], list[str]], new_runs: dict[str, list]):
        self.scripts = scripts
        self.new_runs = new_runs  # dag_id -> successive dag_runs listings

    def dag_run(self, dag_id: str, run_id: str) -> dict[str, Any]:
        script = self.scripts[(dag_id, run_id)]
        return {"state": script.pop(0) if len(script) > 1 else script[0]}

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        return [ti("t", self.scripts[(dag_id, run_id)][0])]

    def dag_runs(self, dag_id: str, states: list[str] | None = None) -> list[dict[str, Any]]:
        listings = self.new_runs[dag_id]
        return listings.pop(0) if len(listings) > 1 else listings[0]


def test_watcher_follows_runs_together_and_the_next_asset_run() -> None:
    api = ScriptedAPI(
        {
            ("a__train", "r1"): ["running", "success"],
            ("b__train", "r2"): ["running", "running", "running", "failed"],
            ("a__validate", "v2"): ["queued", "success"],
        },
        {"a__validate": [[{"dag_run_id": "v1"}], [{"dag_run_id": "v1"}, {"dag_run_id": "v2"}]]},
    )
    watcher = RunWatcher(api, TaskProgress(out=lambda _: None, clock_start=0.0), poll=0.0)  # type: ignore[arg-type]
    watcher.follow("a__train", "r1", timeout=60)
    watcher.follow("b__train", "r2", timeout=60)
    ended = []
    while watcher.active:
        for dag_id, run_id, state in watcher.wait_any():
            ended.append((dag_id, run_id, state))
            if dag_id == "a__train":
                watcher.follow_next("a__validate", {"v1"}, timeout=60)
    # a's gate is followed while b still trains, and b's failure does not stop it
    assert ended == [
        ("a__train", "r1", "success"),
        ("b__train", "r2", "failed"),
        ("a__validate", "v2", "success"),
    ]


def test_watcher_times_out_naming_the_run() -> None:
    api = ScriptedAPI({("a__train", "r1"): ["running"]}, {})
    watcher = RunWatcher(api, TaskProgress(out=lambda _: None, clock_start=0.0), poll=0.0)  # type: ignore[arg-type]
    watcher.follow("a__train", "r1", timeout=0.0)
    assert watcher.poll_once() == []  # first seen: a change
    with pytest.raises(TimeoutError, match="a__train run r1 still 'running', nothing changed"):
        watcher.poll_once()


def test_the_timeout_counts_from_the_last_change() -> None:
    # a run that keeps changing is not timed out, however long it takes in total
    api = ScriptedAPI({("a__train", "r1"): ["queued", "running", "success"]}, {})
    watcher = RunWatcher(api, TaskProgress(out=lambda _: None, clock_start=0.0), poll=0.0)  # type: ignore[arg-type]
    watcher.follow("a__train", "r1", timeout=0.0)
    assert watcher.poll_once() == []  # first seen: a change, the deadline moves
    watcher._followed[0].deadline = 0.0  # long ago, but the next poll sees a change again
    assert watcher.poll_once() == []
    assert watcher.poll_once() == [("a__train", "r1", "success")]
