"""Time to log and register one model: explicit pip requirements (the pack) vs inferred.

Starts its own MLflow server (SQLite, served artifacts) on a free loopback port, fits the
customer_churn demo pipeline once, then logs + registers it N times each way.

    .venv/bin/python benchmarks/log_register.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_mlflow(tmp: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server", "--host", "127.0.0.1",
         "--port", str(port), "--workers", "1",
         "--backend-store-uri", f"sqlite:///{tmp}/mlflow.db",
         "--artifacts-destination", str(tmp / "artifacts"), "--serve-artifacts"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{url}/health", timeout=1)
            return proc, url
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("MLflow server did not start")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import mlflow
    from mlflow.models import infer_signature

    from airmlops_core import demo_data, spec, train_flow, training

    s = spec.load_spec(PROJECT / "include" / "models" / "customer_churn.yaml")
    df = demo_data.churn()
    pipeline = training.fit(s, df)
    X = training.feature_frame(s, df).head(5)
    signature = infer_signature(X, pipeline.predict_proba(X))
    trusted = training.trusted_types(pipeline)
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_mlflow(Path(tmp))
        try:
            mlflow.set_tracking_uri(url)
            mlflow.set_experiment("bench-log-register")

            def log_and_register(pip: list[str] | None) -> float:
                t0 = time.perf_counter()
                with mlflow.start_run():
                    info = mlflow.sklearn.log_model(
                        pipeline, name="model", signature=signature, input_example=X,
                        pip_requirements=pip, serialization_format="skops",
                        skops_trusted_types=trusted)
                mlflow.register_model(info.model_uri, "bench_model")
                return time.perf_counter() - t0

            log_and_register(train_flow.pip_requirements())  # warm-up: imports, first requests
            explicit = [log_and_register(train_flow.pip_requirements())
                        for _ in range(args.repeat)]
            inferred = [log_and_register(None) for _ in range(args.repeat)]
        finally:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=30)
    e, i = statistics.median(explicit), statistics.median(inferred)
    print(f"log + register one model, median of {args.repeat}:")
    print(f"  explicit pip requirements (the pack): {e:6.2f} s")
    print(f"  inferred pip requirements (default):  {i:6.2f} s")
    print(f"  ratio inferred / explicit: {i / e:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
