"""Model API under load: requests/s and p50/p99 latency at a few concurrency levels.

Starts its own MLflow server and the model API (airmlops_core.serve.model_api, with a fresh
bearer token in its environment) on loopback, registers the customer_churn demo pipeline
(logged as the train path logs it) as `champion`, then for
each payload size (rows per request) and concurrency level runs a closed-loop load generator
(one thread per simulated client, keep-alive HTTP/1.1 with the standard library's
http.client) for a fixed time. The baseline, measured in the same run, is the same registry
version loaded in this process and called with pyfunc `predict` on a ready DataFrame (the
model's own cost, no HTTP, no JSON). The load generator shares the machine's cores with the
API, as a local client would.

    .venv/bin/python benchmarks/model_api_load.py [--duration 10] [--concurrency 1 4 16]
        [--rows 1 100] [--threads 4]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from airmlops_core.serve.auth import TOKEN_ENV, bearer, generate_token

PROJECT = Path(__file__).resolve().parents[1]
# the tests' throwaway servers (mlflow_server), found as pytest's pythonpath finds them
sys.path.insert(0, str(PROJECT / "tests" / "support"))
MODEL = "bench_churn"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def register_champion(url: str) -> tuple[Any, Any]:
    """Fit and log the churn demo model as train_flow does; make it champion. -> (spec, X)."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import infer_signature

    from airmlops_core import spec
    from airmlops_core.train import estimator as training
    from airmlops_core.train import flow as train_flow
    from airmlops_core.train.example import synthetic_example
    from airmlops_dev import demo_data

    s = spec.load_spec(PROJECT / "include" / "models" / "customer_churn.yaml")
    df = demo_data.churn()
    pipeline = training.fit(s, df)
    X = training.feature_frame(s, df)
    sample = synthetic_example(X)
    mlflow.set_tracking_uri(url)
    mlflow.set_experiment("bench-model-api")
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name="model",
            signature=infer_signature(sample, pipeline.predict_proba(sample)),
            input_example=sample,
            pip_requirements=train_flow.pip_requirements(s),
            serialization_format="skops",
            skops_trusted_types=training.trusted_types(pipeline),
            pyfunc_predict_fn="predict_proba",
        )
    mv = mlflow.register_model(info.model_uri, MODEL)
    MlflowClient(url).set_registered_model_alias(MODEL, "champion", mv.version)
    return s, X


def payload(X: Any, rows: int) -> bytes:
    part = X.head(rows)
    return json.dumps(
        {
            "dataframe_split": {
                "columns": list(part.columns),
                "data": [list(r) for r in part.itertuples(index=False)],
            }
        }
    ).encode()


def in_process(model: Any, frame: Any, seconds: float) -> list[float]:
    """Latencies of pyfunc predict on a ready frame, one caller, for `seconds`."""
    times: list[float] = []
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t0 = time.perf_counter()
        model.predict(frame)
        times.append(time.perf_counter() - t0)
    return times


def load(
    port: int, body: bytes, clients: int, seconds: float, token: str
) -> tuple[list[float], int, float]:
    """Closed-loop load: `clients` threads each send one request after another.

    Returns:
        (latencies of 200 answers, count of other answers or errors, elapsed seconds).
    """
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = threading.Event()
    headers = {"Content-Type": "application/json", **bearer(token)}

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("POST", f"/invocations/{MODEL}", body=body, headers=headers)
                resp = conn.getresponse()
                resp.read()
                ok = resp.status == 200
            except (OSError, http.client.HTTPException):
                ok = False
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            if ok:
                latencies[i].append(time.perf_counter() - t0)
            else:
                errors[i] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    return [x for lat in latencies for x in lat], sum(errors), elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 100])
    ap.add_argument("--threads", type=int, default=4, help="the API's predict threads")
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    from airmlops_dev.ports import free_ports
    from mlflow_server import mlflow_server

    token = generate_token()

    with tempfile.TemporaryDirectory() as tmp, mlflow_server(Path(tmp) / "mlflow") as url:
        _, X = register_champion(url)
        (port,) = free_ports(1)
        log = (Path(tmp) / "api.log").open("wb")
        api = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airmlops_core.serve.model_api",
                "--tracking-uri",
                url,
                "--models",
                MODEL,
                "--port",
                str(port),
                "--threads",
                str(args.threads),
                "--poll-interval",
                "60",
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, TOKEN_ENV: token},
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2).read()
                    break
                except OSError as exc:
                    if api.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"model API did not serve; see {log.name}") from exc
                    time.sleep(0.5)
            model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
            base: dict[int, float] = {}
            print(
                f"model: customer_churn demo pipeline (LogisticRegression), {X.shape[1]} "
                f"features; API --threads {args.threads}; {os.cpu_count()} CPUs shared by "
                f"API and load generator; load average {os.getloadavg()[0]:.1f} at start"
            )
            print("baseline, in-process pyfunc predict on a ready DataFrame (1 caller):")
            for rows in args.rows:
                frame = X.head(rows)
                in_process(model, frame, 1.0)  # warm-up
                times = in_process(model, frame, min(args.duration, 5.0))
                base[rows] = statistics.median(times)
                print(
                    f"  {rows:>4} rows: p50 {base[rows] * 1000:7.3f} ms, "
                    f"{1 / base[rows]:8.0f} calls/s"
                )
            print(
                f"\n{'rows':>4} {'clients':>7} {'requests':>8} {'req/s':>8} {'rows/s':>9} "
                f"{'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'p50 / base':>10} "
                f"{'req/s / base':>12}"
            )
            for rows in args.rows:
                body = payload(X, rows)
                load(port, body, 2, 1.0, token)  # warm-up
                for clients in args.concurrency:
                    lat, errors, elapsed = load(port, body, clients, args.duration, token)
                    rps = len(lat) / elapsed
                    p50 = percentile(lat, 50) if lat else float("nan")
                    p99 = percentile(lat, 99) if lat else float("nan")
                    print(
                        f"{rows:>4} {clients:>7} {len(lat):>8} {rps:>8.0f} {rps * rows:>9.0f} "
                        f"{p50 * 1000:>8.2f} {p99 * 1000:>8.2f} {errors:>6} "
                        f"{p50 / base[rows]:>9.1f}x {rps * base[rows]:>11.2f}x"
                    )
        finally:
            os.killpg(api.pid, signal.SIGTERM)
            try:
                api.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(api.pid, signal.SIGKILL)
                api.wait(timeout=10)
            log.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
