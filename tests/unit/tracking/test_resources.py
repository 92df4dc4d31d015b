"""Per-task resource accounting: CPU time, peak memory, wall time, rows."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from airmlops_core.tracking import resources


def test_cpu_wall_and_rows() -> None:
    with resources.measure() as usage:
        total = sum(i * i for i in range(3_000_000))
    usage.rows = 1000
    assert total > 0
    assert usage.cpu_seconds > 0.05
    assert usage.wall_seconds >= usage.cpu_seconds * 0.5
    m = usage.metrics("score.")
    assert m["score.rows"] == 1000
    assert m["score.rows_per_cpu_second"] == round(1000 / usage.cpu_seconds, 1)
    assert "rows" not in resources.Usage().metrics("")  # no rows counted, no ratio


def test_peak_memory_follows_an_allocation() -> None:
    # a process started by this (large) one: its own peak, not the parent's; checked against
    # the kernel's VmHWM and the allocation itself
    code = textwrap.dedent("""
        import numpy as np
        from airmlops_core.tracking import resources
        with resources.measure() as usage:
            block = np.ones(300 * 2**20 // 8)
        hwm = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))
        print(usage.peak_rss_mib, hwm / 1024)
    """)
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.split()
    peak, hwm = float(out[0]), float(out[1])
    assert peak > 300
    assert abs(peak - hwm) < 5
