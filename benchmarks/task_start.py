"""What a task pays to start, with and without `airmlops.preload`, measured in one run.

Airflow forks each task from a long-running process (the LocalExecutor's worker, Celery's pool
process). Each mode runs such a parent in a fresh interpreter, with Airflow's task SDK
imported: `baseline` as Airflow starts it, `preloaded` after `airmlops.preload.preload()`.
The parent then forks one child per task kind and repeat; the child imports what that kind of
task imports (the libraries the pack's task code imports lazily) and exits. The timer covers
fork to exit; CPU is the child's (os.wait4).

    .venv/bin/python benchmarks/task_start.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys

KINDS = {
    "data check": ["pandas", "great_expectations"],
    "train / evaluate": ["pandas", "sklearn.ensemble", "sklearn.inspection", "mlflow.sklearn"],
    "score": ["pyarrow.parquet", "mlflow.pyfunc", "skops.io", "sklearn.ensemble"],
    "drift check": ["pandas", "scipy.stats", "mlflow"],
}

PARENT = """
import importlib, json, os, sys, time
import airflow.sdk  # what an executor worker has loaded before it forks a task
kinds, repeat, mode = json.loads(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if mode == "preloaded":
    from airmlops import preload
    failed = preload.preload()
    assert not failed, failed
out = {}
for kind, modules in kinds.items():
    runs = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            for m in modules:
                importlib.import_module(m)
            os._exit(0)
        _, status, usage = os.wait4(pid, 0)
        assert status == 0, status
        runs.append({"wall": time.perf_counter() - t0, "cpu": usage.ru_utime + usage.ru_stime})
    out[kind] = runs
print(json.dumps(out))
"""


def measure(mode: str, repeat: int) -> dict[str, list[dict[str, float]]]:
    done = subprocess.run(
        [sys.executable, "-c", PARENT, json.dumps(KINDS), str(repeat), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = {mode: measure(mode, args.repeat) for mode in ("baseline", "preloaded")}
    print(f"task start, median of {args.repeat} forks per kind (fork to exit)")
    head = ("task kind", "baseline s", "cpu s", "preloaded s", "cpu s", "ratio")
    print(f"{head[0]:18} {head[1]:>11} {head[2]:>7} {head[3]:>12} {head[4]:>7} {head[5]}")
    for kind in KINDS:
        base, pre = (
            {k: statistics.median(r[k] for r in results[m][kind]) for k in ("wall", "cpu")}
            for m in ("baseline", "preloaded")
        )
        print(
            f"{kind:18} {base['wall']:11.2f} {base['cpu']:7.2f} {pre['wall']:12.3f} "
            f"{pre['cpu']:7.3f} {base['wall'] / max(pre['wall'], 1e-6):.0f}x"
        )


if __name__ == "__main__":
    main()
