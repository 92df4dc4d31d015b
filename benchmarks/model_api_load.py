"""Model API under load, against `mlflow models serve` on the same model in the same run.

Starts its own MLflow server, registers the customer_churn demo pipeline (logged as the train
path logs it) as `champion`, then starts two servers of that version on loopback: the pack's
API (airmlops_core.serve.model_api, with a fresh bearer token; --workers, --batch-wait-ms as
given) and MLflow's own (`mlflow models serve -m models:/<m>@champion --env-manager local
-w 2`, no auth). For each payload size (rows per request) and concurrency level it runs a
closed-loop load generator (one thread per simulated client, keep-alive HTTP/1.1 with the
standard library's http.client) for a fixed time against each server in turn, and prints both
side by side with the pack / MLflow ratios. The in-process baseline is the same version called
with pyfunc `predict` on a ready DataFrame (the model's own cost, no HTTP, no JSON). The load
generator shares the machine's cores with the servers, as a local client would; the load
average is printed at start and end (other work on the machine moves absolute figures; the
ratios are measured in the same minutes).

Live-traffic recording: a second pack API of the same version records its requests
(`monitoring.live`, `--record-rate` of them, default all, into a temporary work dir) while the
first runs with `--no-record`; both are measured in turn (`--repeats` rounds, the order
alternating) and the recording-on / recording-off ratio of requests per second is printed
(median over rounds). Then the recording API is stopped (its recorders write what they hold)
and its account printed: rows scored, rows in record files, rows dropped by reason (at rate 1
every scored row is one or the other). `--no-mlflow` skips MLflow's server.

    .venv/bin/python benchmarks/model_api_load.py [--duration 8] [--concurrency 1 16]
        [--rows 1 100] [--workers N] [--threads 4] [--batch-wait-ms 2] [--mlflow-workers 2]
        [--record-rate 1.0] [--repeats 2] [--no-mlflow]
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
    port: int, path: str, body: bytes, clients: int, seconds: float, token: str | None
) -> tuple[list[float], int, float]:
    """Closed-loop load: `clients` threads each send one request after another.

    Returns:
        (latencies of 200 answers, count of other answers or errors, elapsed seconds).
    """
    latencies: list[list[float]] = [[] for _ in range(clients)]
    errors = [0] * clients
    start = threading.Barrier(clients + 1)
    stop = threading.Event()
    headers = {"Content-Type": "application/json", **(bearer(token) if token else {})}

    def client(i: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start.wait()
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("POST", path, body=body, headers=headers)
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


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path, what: str) -> None:
    deadline = time.monotonic() + 180
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).read()
            return
        except OSError as exc:
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{what} did not serve:\n{tail}") from exc
            time.sleep(0.5)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def measure(
    port: int, path: str, body: bytes, clients: int, seconds: float, token: str | None
) -> dict[str, float]:
    lat, errors, elapsed = load(port, path, body, clients, seconds, token)
    return {
        "requests": len(lat),
        "rps": len(lat) / elapsed,
        "p50": percentile(lat, 50) * 1000 if lat else float("nan"),
        "p99": percentile(lat, 99) * 1000 if lat else float("nan"),
        "errors": errors,
    }


def start_api(
    url: str, port: int, token: str, args: argparse.Namespace, log: Path, *extra: str, **env: str
) -> subprocess.Popen[bytes]:
    """The pack's API on `port` serving MODEL's champion."""
    more = [] if args.workers is None else ["--workers", str(args.workers)]
    if args.batch_wait_ms is not None:
        more += ["--batch-wait-ms", str(args.batch_wait_ms)]
    with log.open("wb") as out:
        return subprocess.Popen(
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
                *more,
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, TOKEN_ENV: token, **env},
        )


def recording_spec(folder: Path, rate: float) -> Path:
    """A spec for MODEL (the churn demo's) that records `rate` of the requests."""
    import yaml

    body = yaml.safe_load((PROJECT / "include" / "models" / "customer_churn.yaml").read_text())
    body["name"] = MODEL
    body["monitoring"] = {"live": {"sample_rate": rate, "flush_rows": 1000, "flush_seconds": 5}}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{MODEL}.yaml").write_text(yaml.safe_dump(body))
    return folder


def metric_sums(port: int, token: str) -> dict[str, float]:
    """Rows scored, and recording drops by reason, from the API's /metrics."""
    req = urllib.request.Request(f"http://127.0.0.1:{port}/metrics", headers=bearer(token))
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    sums: dict[str, float] = {"scored": 0.0}
    for line in text.splitlines():
        name, _, value = line.rpartition(" ")
        if name.startswith("airmlops_model_api_predicted_rows_total"):
            sums["scored"] += float(value)
        elif name.startswith("airmlops_model_api_recording_dropped_rows_total"):
            reason = name.split('reason="', 1)[1].split('"', 1)[0]
            sums[f"dropped_{reason}"] = sums.get(f"dropped_{reason}", 0.0) + float(value)
    return sums


def tree_cpu(root: int) -> tuple[float, float]:
    """CPU seconds (user + system) used so far by `root` and its live descendants: (all,
    recorder processes only). Linux /proc; (nan, nan) elsewhere."""
    tick = os.sysconf("SC_CLK_TCK")
    procs: dict[int, tuple[int, float, bool]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        procs[int(entry.name)] = (
            int(fields[1]),
            (int(fields[11]) + int(fields[12])) / tick,
            b"recorder_process" in cmd,
        )
    if not procs:
        return float("nan"), float("nan")
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    inside = [procs[p] for p in tree if p in procs]
    return sum(c for _, c, _ in inside), sum(c for _, c, rec in inside if rec)


def compare_recording(
    ports: tuple[int, int], pids: tuple[int, int], token: str, X: Any, args: argparse.Namespace
) -> None:
    """Requests per second with recording off and on, in alternating rounds; the ratio. And
    each API's CPU per request over the rounds (its processes' user + system time, the
    recorder processes' share apart): robust to other load on the machine, where req/s is not."""
    path = f"/invocations/{MODEL}"
    print(
        f"\nlive-traffic recording (sample rate {args.record_rate:g}): same version, two APIs, "
        f"{args.repeats} rounds alternating which goes first"
    )
    print(
        f"{'rows':>4} {'clients':>7} | {'off req/s':>9} {'on req/s':>9} | "
        f"{'on/off ratio (median; each round)':>34} | CPU ms/request off, on (recorder), on/off"
    )
    for rows in args.rows:
        body = payload(X, rows)
        for p in ports:
            load(p, path, body, 2, 1.0, token)  # warm-up
        for clients in args.concurrency:
            off, on = [], []
            served = {p: 0.0 for p in ports}
            cpu0 = {p: tree_cpu(pid) for p, pid in zip(ports, pids, strict=True)}
            for round_ in range(args.repeats):
                order = ports if round_ % 2 == 0 else ports[::-1]
                got = {p: measure(p, path, body, clients, args.duration, token) for p in order}
                off.append(got[ports[0]]["rps"])
                on.append(got[ports[1]]["rps"])
                for p in ports:
                    served[p] += got[p]["requests"]
            cpu1 = {p: tree_cpu(pid) for p, pid in zip(ports, pids, strict=True)}
            per = {p: 1000 * (cpu1[p][0] - cpu0[p][0]) / max(served[p], 1) for p in ports}
            rec = 1000 * (cpu1[ports[1]][1] - cpu0[ports[1]][1]) / max(served[ports[1]], 1)
            ratios = [b / a for a, b in zip(off, on, strict=True)]
            print(
                f"{rows:>4} {clients:>7} | {statistics.median(off):>9.0f} "
                f"{statistics.median(on):>9.0f} | {statistics.median(ratios):>10.3f}x  ("
                + ", ".join(f"{r:.3f}" for r in ratios)
                + f") | {per[ports[0]]:.2f}, {per[ports[1]]:.2f} ({rec:.2f}), "
                f"{per[ports[1]] / per[ports[0]]:.3f}x"
            )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per measurement")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--rows", type=int, nargs="+", default=[1, 100])
    ap.add_argument("--workers", type=int, default=None, help="the API's workers (its default)")
    ap.add_argument("--threads", type=int, default=4, help="the API's predict threads")
    ap.add_argument("--batch-wait-ms", type=float, default=None, help="the API's (its default)")
    ap.add_argument("--mlflow-workers", type=int, default=2, help="mlflow models serve -w")
    ap.add_argument("--record-rate", type=float, default=1.0, help="recording API's sample rate")
    ap.add_argument("--repeats", type=int, default=2, help="rounds of the recording comparison")
    ap.add_argument("--no-mlflow", action="store_true", help="skip mlflow models serve")
    args = ap.parse_args()
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow
    import pyarrow.parquet as pq

    from airmlops_dev.ports import free_ports
    from mlflow_server import mlflow_server

    token = generate_token()
    load_start = os.getloadavg()

    with tempfile.TemporaryDirectory() as tmp, mlflow_server(Path(tmp) / "mlflow") as url:
        _, X = register_champion(url)
        port, mlflow_port, rec_port = free_ports(3)
        api_log, mlflow_log = Path(tmp) / "api.log", Path(tmp) / "mlflow-serve.log"
        rec_log = Path(tmp) / "api-recording.log"
        api = start_api(url, port, token, args, api_log, "--no-record")
        recording = start_api(
            url,
            rec_port,
            token,
            args,
            rec_log,
            AIRMLOPS_MODELS_DIR=str(recording_spec(Path(tmp) / "specs", args.record_rate)),
            AIRMLOPS_WORK_URI=str(Path(tmp) / "work"),
        )
        reference: subprocess.Popen[bytes] | None = None
        with mlflow_log.open("wb") as out:
            reference = (
                None
                if args.no_mlflow
                else subprocess.Popen(
                    [
                        str(Path(sys.executable).parent / "mlflow"),
                        "models",
                        "serve",
                        "-m",
                        f"models:/{MODEL}@champion",
                        "--env-manager",
                        "local",
                        "-w",
                        str(args.mlflow_workers),
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(mlflow_port),
                    ],
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    env={  # it starts `uvicorn` from PATH: this interpreter's
                        **os.environ,
                        "MLFLOW_TRACKING_URI": url,
                        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
                    },
                )
            )
        try:
            wait_ready(f"http://127.0.0.1:{port}/health", api, api_log, "model API")
            wait_ready(f"http://127.0.0.1:{rec_port}/health", recording, rec_log, "recording API")
            if reference is not None:
                wait_ready(f"http://127.0.0.1:{mlflow_port}/ping", reference, mlflow_log, "mlflow")
            model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
            base: dict[int, float] = {}
            print(
                f"model: customer_churn demo pipeline (LogisticRegression), {X.shape[1]} "
                f"features; pack API --workers {args.workers or 'default'} --threads "
                f"{args.threads} --batch-wait-ms {args.batch_wait_ms or 'default'}; "
                f"mlflow models serve -w {args.mlflow_workers}; {os.cpu_count()} CPUs shared "
                f"by both servers and the load generator; load average (1, 5, 15 min) "
                f"{' '.join(f'{x:.1f}' for x in load_start)} at start"
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
            compare_recording((port, rec_port), (api.pid, recording.pid), token, X, args)
            counts = metric_sums(rec_port, token)
            stop(recording)  # its recorders write what they hold
            files = list((Path(tmp) / "work").rglob("*.parquet"))
            written = sum(pq.read_metadata(f).num_rows for f in files)
            dropped = {k: v for k, v in counts.items() if k.startswith("dropped")}
            print(
                f"  the recording API scored {counts['scored']:.0f} rows; {written} rows in "
                f"{len(files)} record files after its stop; dropped {sum(dropped.values()):.0f}"
                + (f" {dropped}" if dropped else "")
                + (
                    f"; unaccounted {counts['scored'] - written - sum(dropped.values()):.0f}"
                    if args.record_rate >= 1.0
                    else ""
                )
            )
            if reference is None:
                print("load average at end: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
                return 0
            print(
                f"\n{'rows':>4} {'clients':>7} | {'pack req/s':>10} {'p50 ms':>7} {'p99 ms':>7} "
                f"{'err':>4} | {'mlflow req/s':>12} {'p50 ms':>7} {'p99 ms':>7} {'err':>4} | "
                f"{'req/s ratio':>11} {'p99 ratio':>9}"
            )
            targets = [
                (port, f"/invocations/{MODEL}", token),
                (mlflow_port, "/invocations", None),
            ]
            for rows in args.rows:
                body = payload(X, rows)
                for p, path, tok in targets:
                    load(p, path, body, 2, 1.0, tok)  # warm-up
                for clients in args.concurrency:
                    ours, theirs = (
                        measure(p, path, body, clients, args.duration, tok)
                        for p, path, tok in targets
                    )
                    print(
                        f"{rows:>4} {clients:>7} | {ours['rps']:>10.0f} {ours['p50']:>7.1f} "
                        f"{ours['p99']:>7.1f} {ours['errors']:>4.0f} | {theirs['rps']:>12.0f} "
                        f"{theirs['p50']:>7.1f} {theirs['p99']:>7.1f} {theirs['errors']:>4.0f} | "
                        f"{ours['rps'] / theirs['rps']:>10.2f}x "
                        f"{ours['p99'] / theirs['p99']:>8.2f}x"
                    )
            print("load average at end: " + " ".join(f"{x:.1f}" for x in os.getloadavg()))
        finally:
            stop(api)
            stop(recording)
            if reference is not None:
                stop(reference)
    return 0


if __name__ == "__main__":
    sys.exit(main())
