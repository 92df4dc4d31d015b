"""DAG-folder parse time as the number of model specs grows (1, 10, 50, 200).

Each measurement runs in a fresh interpreter: Airflow is imported and warmed up first by
parsing a plain DAG with an Asset (as a long-running dag-processor is), then the timer covers
parsing dags/ (the factory reading N specs and building their DAGs). A DAG file with only
Airflow imports is measured in the same run as the baseline.

    .venv/bin/python benchmarks/parse_time.py [--counts 1 10 50 200] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

PROJECT = Path(__file__).resolve().parents[1]
TEMPLATE = PROJECT / "include" / "models" / "flight_delay.yaml"
TARGET_MS_PER_SPEC = 50.0

TIMER = """
import json, os, sys, tempfile, time
from airflow.dag_processing.dagbag import DagBag
warm = tempfile.mkdtemp()
with open(os.path.join(warm, "warm.py"), "w") as f:
    f.write(sys.argv[2])
DagBag(dag_folder=warm)  # Airflow's own one-off imports (provider asset handlers) happen here
t0 = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
elapsed = time.perf_counter() - t0
assert not bag.import_errors, bag.import_errors
print(json.dumps({"seconds": elapsed, "dags": len(bag.dags)}))
"""

PLAIN_DAG = """
from datetime import datetime
from airflow.sdk import DAG, Asset
from airflow.providers.standard.operators.empty import EmptyOperator
with DAG("plain", start_date=datetime(2024, 1, 1), schedule=None):
    EmptyOperator(task_id="t", outlets=[Asset(name="plain", uri="airmlops://plain/asset")])
"""


def make_specs(directory: Path, count: int) -> None:
    base = yaml.safe_load(TEMPLATE.read_text())
    for i in range(count):
        spec = {**base, "name": f"model_{i:04d}"}
        (directory / f"model_{i:04d}.yaml").write_text(yaml.safe_dump(spec))


def time_parse(dag_folder: Path, models_dir: Path | None) -> dict:
    env = {**os.environ, "AIRFLOW__CORE__LOAD_EXAMPLES": "False"}
    if models_dir:
        env["AIRMLOPS_MODELS_DIR"] = str(models_dir)
    out = subprocess.run(
        [sys.executable, "-c", TIMER, str(dag_folder), PLAIN_DAG],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", type=int, nargs="+", default=[1, 10, 50, 200])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("AIRFLOW_HOME", str(Path(tmp) / "airflow"))
        plain = Path(tmp) / "plain"
        plain.mkdir()
        (plain / "plain_dag.py").write_text(PLAIN_DAG)
        base_ms = statistics.median(
            time_parse(plain, None)["seconds"] * 1000 for _ in range(args.repeat)
        )
        print(f"baseline: one DAG file with only Airflow imports parses in {base_ms:.1f} ms")
        print(f"{'specs':>6} {'dags':>6} {'parse ms':>10} {'ms/spec':>9} {'x baseline':>11}")
        worst = 0.0
        for count in args.counts:
            models = Path(tmp) / f"models_{count}"
            models.mkdir()
            make_specs(models, count)
            runs = [time_parse(PROJECT / "dags", models) for _ in range(args.repeat)]
            ms = statistics.median(r["seconds"] for r in runs) * 1000
            per_spec = ms / count
            worst = max(worst, per_spec) if count >= 50 else worst
            print(
                f"{count:>6} {runs[0]['dags']:>6} {ms:>10.1f} {per_spec:>9.2f} "
                f"{ms / base_ms:>11.1f}"
            )
        verdict = "meets" if worst < TARGET_MS_PER_SPEC else "MISSES"
        print(
            f"worst ms/spec at >= 50 specs: {worst:.2f} ({verdict} the {TARGET_MS_PER_SPEC:.0f} "
            "ms/spec target)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
