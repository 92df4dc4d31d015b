"""Time to log and register one model: explicit pip requirements (the pack) vs inferred.

Starts its own MLflow server (SQLite, served artifacts) on a free loopback port, fits the
customer_churn demo pipeline once, then logs + registers it N times each way.

    .venv/bin/python benchmarks/log_register.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
# the tests' throwaway servers (mlflow_server), found as pytest's pythonpath finds them
sys.path.insert(0, str(PROJECT / "tests" / "support"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    import mlflow
    from mlflow.models import infer_signature

    from airmlops_core import spec
    from airmlops_core.train import estimator as training
    from airmlops_core.train import flow as train_flow
    from airmlops_dev import demo_data
    from mlflow_server import mlflow_server

    s = spec.load_spec(PROJECT / "include" / "models" / "customer_churn.yaml")
    df = demo_data.churn()
    pipeline = training.fit(s, df)
    X = training.feature_frame(s, df).head(5)
    signature = infer_signature(X, pipeline.predict_proba(X))
    trusted = training.trusted_types(pipeline)
    with tempfile.TemporaryDirectory() as tmp, mlflow_server(Path(tmp)) as url:
        mlflow.set_tracking_uri(url)
        mlflow.set_experiment("bench-log-register")

        def log_and_register(pip: list[str] | None) -> float:
            t0 = time.perf_counter()
            with mlflow.start_run():
                info = mlflow.sklearn.log_model(
                    pipeline,
                    name="model",
                    signature=signature,
                    input_example=X,
                    pip_requirements=pip,
                    serialization_format="skops",
                    skops_trusted_types=trusted,
                )
            mlflow.register_model(info.model_uri, "bench_model")
            return time.perf_counter() - t0

        log_and_register(train_flow.pip_requirements())  # warm-up: imports, first requests
        explicit = [log_and_register(train_flow.pip_requirements()) for _ in range(args.repeat)]
        inferred = [log_and_register(None) for _ in range(args.repeat)]
    e, i = statistics.median(explicit), statistics.median(inferred)
    print(f"log + register one model, median of {args.repeat}:")
    print(f"  explicit pip requirements (the pack): {e:6.2f} s")
    print(f"  inferred pip requirements (default):  {i:6.2f} s")
    print(f"  ratio inferred / explicit: {i / e:.1f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
