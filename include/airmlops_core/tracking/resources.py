"""What a task costs: wall time, CPU time, peak memory and rows, logged as MLflow metrics.

Measured for the current process (an Airflow task runs in its own process), so the MLflow UI
can compare models by cost as well as quality. MLflow's system metrics sample the whole machine
instead; these numbers belong to the task.
"""

from __future__ import annotations

import resource
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

_MAXRSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def peak_rss_mib() -> float:
    """Peak resident memory of this process so far, MiB.

    Linux: VmHWM from /proc/self/status. ru_maxrss is not used there: it survives exec, so a
    process started by a large parent (an Airflow supervisor, pytest) reports the parent's
    peak at fork time.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * _MAXRSS_UNIT / 2**20


@dataclass
class Usage:
    """Resources used by a block of work; `rows` is set by the caller."""

    wall_seconds: float = 0.0
    cpu_seconds: float = 0.0
    peak_rss_mib: float = 0.0
    rows: int = 0
    _start: tuple[float, float] = field(default=(0.0, 0.0), repr=False)

    def metrics(self, prefix: str = "resource.") -> dict[str, float]:
        """MLflow metrics, rows per CPU-second included when rows were counted."""
        out = {
            f"{prefix}wall_seconds": round(self.wall_seconds, 3),
            f"{prefix}cpu_seconds": round(self.cpu_seconds, 3),
            f"{prefix}peak_rss_mib": round(self.peak_rss_mib, 1),
        }
        if self.rows:
            out[f"{prefix}rows"] = float(self.rows)
            out[f"{prefix}rows_per_cpu_second"] = round(self.rows / max(self.cpu_seconds, 1e-3), 1)
        return out


@contextmanager
def measure() -> Iterator[Usage]:
    """Measure the block; the yielded Usage is filled in when the block ends."""
    usage = Usage(_start=(time.perf_counter(), _cpu_seconds()))
    try:
        yield usage
    finally:
        usage.wall_seconds = time.perf_counter() - usage._start[0]
        usage.cpu_seconds = _cpu_seconds() - usage._start[1]
        usage.peak_rss_mib = peak_rss_mib()
