"""Where `make up`'s time goes: its phases, each with a start and a duration.

The clock starts when `make` starts (the Makefile passes ``AIRMLOPS_MAKE_STARTED``, epoch
seconds), so the install counts; the install's own steps come from the file the Makefile's
install recipe writes (``<venv>/.install_phases``: ``name start end`` per line). The rest is
recorded by `airmlops up` as it goes. Phases may overlap (runs that overlap do): each row shows
when it started and how long it took. At the end the table is printed and the whole timeline
(with every demo run's tasks) is written to ``<home>/up_timeline.json``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from airmlops_dev.private_files import write_private

MAKE_STARTED_ENV = "AIRMLOPS_MAKE_STARTED"
INSTALL_PHASES_FILE = ".install_phases"  # in the virtualenv, written by the Makefile
_PROCESS_STARTED = time.time()


def clock_start() -> float:
    """Epoch seconds `make up` started (AIRMLOPS_MAKE_STARTED), else when this process did."""
    try:
        return float(os.environ[MAKE_STARTED_ENV])
    except (KeyError, ValueError):
        return _PROCESS_STARTED


def format_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s" if seconds >= 10 else f"{seconds:.1f}s"
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


@dataclass
class Phase:
    """One phase: a name, its start and end (epoch seconds), and details for the JSON file."""

    name: str
    start: float
    end: float
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.start


def install_phases(venv: Path, since: float) -> list[Phase]:
    """The install steps the Makefile recorded in this `make` (none when it had nothing to do).

    Lines that cannot be read are skipped: the file is a convenience, not a contract.
    """
    try:
        lines = (venv / INSTALL_PHASES_FILE).read_text().splitlines()
    except OSError:
        return []
    phases = []
    for line in lines:
        name, _, times = line.rpartition(" ")
        name, _, start_text = name.rpartition(" ")
        try:
            start, end = float(start_text), float(times)
        except ValueError:
            continue
        if name and start >= since - 1:  # `date +%s`: whole seconds
            phases.append(Phase(f"install: {name}", start, end))
    return phases


class Timeline:
    """Phases of one `make up`, from ``started`` (default: clock_start())."""

    def __init__(self, started: float | None = None) -> None:
        self.started = clock_start() if started is None else started
        self.phases: list[Phase] = []

    @classmethod
    def for_make_up(cls) -> Timeline:
        """A timeline from the start of `make`, with the install steps it ran and this
        process's start."""
        timeline = cls()
        timeline.phases += install_phases(Path(sys.prefix), timeline.started)
        timeline.add(
            "airmlops up: Python start, imports", psutil.Process().create_time(), time.time()
        )
        return timeline

    def add(self, name: str, start: float, end: float, **detail: Any) -> Phase:
        phase = Phase(name, start, end, detail)
        self.phases.append(phase)
        return phase

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Record the block as a phase (also when it raises)."""
        start = time.time()
        try:
            yield
        finally:
            self.add(name, start, time.time())

    def total(self, now: float | None = None) -> float:
        end = max([p.end for p in self.phases] + [now or time.time()])
        return end - self.started

    def table(self, now: float | None = None) -> str:
        """The phases in start order: offset from the start, duration, share of the total."""
        total = self.total(now) or 1.0
        width = max([len(p.name) for p in self.phases] + [5])
        rows = [f"  {'phase':<{width}}  {'at':>7}  {'took':>7}  share"]
        for p in sorted(self.phases, key=lambda p: p.start):
            rows.append(
                f"  {p.name:<{width}}  {format_seconds(p.start - self.started):>7}  "
                f"{format_seconds(p.seconds):>7}  {100 * p.seconds / total:4.0f}%"
            )
        rows.append(f"  {'total':<{width}}  {'':>7}  {format_seconds(total):>7}")
        return "\n".join(rows)

    def as_dict(self, now: float | None = None) -> dict[str, Any]:
        return {
            "started": self.started,
            "total_s": round(self.total(now), 3),
            "phases": [
                {
                    **asdict(p),
                    "offset_s": round(p.start - self.started, 3),
                    "s": round(p.seconds, 3),
                }
                for p in sorted(self.phases, key=lambda p: p.start)
            ],
        }

    def write(self, path: Path) -> None:
        """Write the timeline as JSON (no secrets in it: names, times, states)."""
        write_private(path, json.dumps(self.as_dict(), indent=2) + "\n")
