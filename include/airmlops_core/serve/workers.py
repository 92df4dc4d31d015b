"""Worker processes of the model API: uvicorn's multi-worker mode over an app factory.

`--workers N` (default: one per core this process may run on) runs N worker processes; each
builds its own ModelServer (served models, alias poller: it loads, checks and swaps versions
on its own, so a worker never serves a version that failed its own check) and its own app.

Why uvicorn's supervisor and not our own pre-fork with SO_REUSEPORT: uvicorn binds the socket
once in the parent and hands it to every worker, restarts a worker that dies, and on
SIGTERM/SIGINT runs every worker's graceful shutdown; all of it maintained upstream. With
SO_REUSEPORT the kernel spreads connections by a hash of their addresses, so a few keep-alive
clients can all land on one worker while another idles; with one shared socket an idle worker
is the one that accepts. Its cost: workers are spawned (not forked), so each imports MLflow and
loads its models itself (a few seconds, and one copy of each model per worker).

The parent hands the workers their settings in $AIRMLOPS_MODEL_API_WORKER_CONFIG (JSON, no
secret: each worker reads the tokens again from the same environment variables or files), and
makes one run directory that lives as long as it does: $PROMETHEUS_MULTIPROC_DIR for the
metrics of every worker (metrics.py), the worker status files (state.write_status) that let
one /status show every worker, and each worker's model downloads (removed with the run
directory, also those of a worker that crashed).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import TypedDict

import uvicorn
from starlette.applications import Starlette

from airmlops_core.serve.app import build_app
from airmlops_core.serve.auth import Tokens
from airmlops_core.serve.metrics import MULTIPROC_ENV
from airmlops_core.serve.recording import RecordingSettings
from airmlops_core.serve.server import ModelServer

log = logging.getLogger(__name__)

CONFIG_ENV = "AIRMLOPS_MODEL_API_WORKER_CONFIG"
# The event loop gives up the GIL at every socket call and must get it back from a predict
# thread; at the default 5 ms switch interval that wait dominated a request's time under load.
SWITCH_INTERVAL_S = 0.0005
FACTORY = "airmlops_core.serve.workers:app_from_env"


class ServerConfig(TypedDict):
    """What every worker needs to build its ModelServer and app (JSON in CONFIG_ENV)."""

    tracking_uri: str
    models: list[str]
    alias: str
    poll_interval: float
    max_bytes: int
    max_rows: int
    threads: int
    max_queue: int
    read_timeout: float
    batch_wait_ms: float
    max_batch_rows: int
    token_file: str | None
    metrics_token_file: str | None
    recording: dict[str, RecordingSettings]  # models whose traffic is recorded
    run_dir: str | None  # with several workers: metrics/, workers/ (status), cache/<pid>/
    log_level: str


def default_workers() -> int:
    """One worker per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def build_server(config: ServerConfig) -> ModelServer:
    """One worker's ModelServer (its downloads and status file in the run dir, if any)."""
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    cache_dir = state_dir = None
    if config["run_dir"]:
        run_dir = Path(config["run_dir"])
        state_dir = run_dir / "workers"
        cache_dir = run_dir / "cache" / str(os.getpid())  # the parent removes a crashed one's
        cache_dir.mkdir(parents=True, exist_ok=True)
    return ModelServer(
        config["tracking_uri"],
        config["models"],
        alias=config["alias"],
        poll_interval=config["poll_interval"],
        max_bytes=config["max_bytes"],
        max_rows=config["max_rows"],
        threads=config["threads"],
        max_queue=config["max_queue"],
        read_timeout=config["read_timeout"],
        batch_wait_ms=config["batch_wait_ms"],
        max_batch_rows=config["max_batch_rows"],
        cache_dir=cache_dir,
        state_dir=state_dir,
        recording=config.get("recording") or {},
    )


def app_from_env() -> Starlette:
    """The app of one worker process (uvicorn's factory): settings from CONFIG_ENV."""
    config: ServerConfig = json.loads(os.environ[CONFIG_ENV])
    logging.basicConfig(
        level=config["log_level"].upper(),
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    tokens = Tokens.from_env(
        dict(os.environ),
        token_file=config["token_file"],
        metrics_token_file=config["metrics_token_file"],
    )
    return build_app(build_server(config), tokens=tokens)


def run(
    config: ServerConfig,
    tokens: Tokens,
    *,
    host: str,
    port: int,
    workers: int,
    access_log: bool = False,
) -> None:
    """Serve until SIGINT/SIGTERM: in this process with one worker, else `workers` processes."""
    options = {
        "host": host,
        "port": port,
        "log_level": config["log_level"].lower(),
        "access_log": access_log,
        "timeout_graceful_shutdown": 10,
    }
    if workers == 1:
        app = build_app(build_server(config), tokens=tokens)
        uvicorn.Server(uvicorn.Config(app, **options)).run()  # type: ignore[arg-type]
        return
    with tempfile.TemporaryDirectory(prefix="airmlops-model-api-") as tmp:
        metrics_dir, state_dir = Path(tmp) / "metrics", Path(tmp) / "workers"
        metrics_dir.mkdir()
        state_dir.mkdir()
        # read by the spawned workers' prometheus_client when it is imported
        os.environ[MULTIPROC_ENV] = str(metrics_dir)
        os.environ[CONFIG_ENV] = json.dumps({**config, "run_dir": tmp})
        log.info("starting %d worker processes", workers)
        uvicorn.run(FACTORY, factory=True, workers=workers, **options)  # type: ignore[arg-type]
