"""Fan-out of the score DAG on a running stack (`make up`): one partition vs N partitions.

The same rows (Oct-Dec 2013 flights repeated to --rows, unique flight ids) are scored by
flight_delay__score once as one file (one mapped task) and once split into --parts files
(--parts mapped tasks, run side by side by the local executor within the ml_scoring pool).
Prints the DAG run wall times, the summed task times and the ratio. Not a test.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
from pathlib import Path

import numpy as np
import pandas as pd

from airmlops_core.io import data
from airmlops_dev import demo_data
from airmlops_dev.airflow_api import AirflowClient
from airmlops_dev.stack_config import StackConfig
from airmlops_dev.stack_secrets import credentials

DAG_ID = "flight_delay__score"


def batch(rows: int) -> pd.DataFrame:
    base = demo_data.flights()
    base = base[base["month"] >= 10].drop(columns=["dest", "delayed"])
    reps = int(np.ceil(rows / len(base)))
    out = pd.concat([base] * reps, ignore_index=True).head(rows)
    out["flight_id"] = np.arange(len(out), dtype="int64")
    return out


def seconds(a: str | None, b: str | None) -> float:
    return (
        (dt.datetime.fromisoformat(b) - dt.datetime.fromisoformat(a)).total_seconds()
        if a and b
        else float("nan")
    )


def run(api: AirflowClient, folder: Path) -> dict[str, float]:
    run_id = api.trigger(DAG_ID, conf={"input": str(folder)})
    state = api.wait(DAG_ID, run_id, timeout=3600)
    info = api.dag_run(DAG_ID, run_id)
    tis = [t for t in api.task_instances(DAG_ID, run_id) if t["task_id"] == "score"]
    return {
        "state": state,
        "wall": seconds(info["start_date"], info["end_date"]),
        "tasks": len(tis),
        "task_sum": sum(seconds(t["start_date"], t["end_date"]) for t in tis),
        "score_wall": seconds(min(t["start_date"] for t in tis), max(t["end_date"] for t in tis)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--parts", type=int, default=4)
    args = ap.parse_args()
    cfg = StackConfig()
    _, (user, password) = credentials(cfg)
    api = AirflowClient(cfg.airflow_url, user, password)
    root = cfg.root / "data" / "fanout"
    shutil.rmtree(root, ignore_errors=True)
    frame = batch(args.rows)
    data.write_frame(frame, str(root / "one" / "all.parquet"))
    for i, idx in enumerate(np.array_split(np.arange(len(frame)), args.parts)):
        data.write_frame(frame.iloc[idx], str(root / "split" / f"part-{i}.parquet"))
    one = run(api, root / "one")
    many = run(api, root / "split")
    print(f"{args.rows:,} rows; score DAG run wall time (s) and score tasks")
    print(
        f"{'layout':<12} {'state':<8} {'tasks':>5} {'run wall':>9} {'score wall':>11} "
        f"{'task sum':>9}"
    )
    for name, r in (("1 file", one), (f"{args.parts} files", many)):
        print(
            f"{name:<12} {r['state']:<8} {r['tasks']:>5} {r['wall']:>9.1f} "
            f"{r['score_wall']:>11.1f} {r['task_sum']:>9.1f}"
        )
    print(
        f"fan-out speed-up (score wall, 1 file / {args.parts} files): "
        f"{one['score_wall'] / many['score_wall']:.2f}x"
    )


if __name__ == "__main__":
    main()
