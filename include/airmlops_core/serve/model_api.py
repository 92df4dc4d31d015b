"""The model REST API: each model's `champion` from the MLflow registry, over HTTP.

    AIRMLOPS_MODEL_API_TOKEN=... python -m airmlops_core.serve.model_api --tracking-uri URL
        [--models a,b | --models-dir DIR] [--host 127.0.0.1] [--port 5001] [--poll-interval 5]
        [--token-file PATH] [--metrics-token-file PATH] [--max-bytes 8388608]
        [--max-rows 10000] [--threads 4] [--max-queue 32] [--read-timeout 30]
        [--workers N] [--batch-wait-ms 2] [--max-batch-rows 256] [--no-record]

The API token comes from $AIRMLOPS_MODEL_API_TOKEN or a file ($AIRMLOPS_MODEL_API_TOKEN_FILE or
--token-file), never from the command line; the API refuses to start without one.

Endpoints (all but /health need `Authorization: Bearer <token>`, else 401):
    POST /invocations/<model>, POST /models/<model>/invocations (and POST /invocations when
        exactly one model is served): MLflow's scoring protocol, JSON `dataframe_split`,
        `dataframe_records`, `inputs` or `instances` (or text/csv). Answers MLflow's
        `{"predictions": [...]}`: whatever the model's pyfunc returns (for the pack's
        classifiers predict_proba, one list of class probabilities per row; for regressors one
        number per row). Headers X-Model-Name and X-Model-Version say which version answered.
    GET /health (open): 200 when every model has a version served, else 503; the status only.
    GET /status: the same status code, with the served and champion version of every model and
        `started_at` / `uptime_s` (the health probe's grace period after a restart).
    GET /metrics: Prometheus text format (also takes the scrape-only metrics token).
    GET /models/<model>/golden: the request body the served version was verified with.

Live traffic: a model whose spec sets `monitoring.live` (looked up in `--models-dir`, else
$AIRMLOPS_MODELS_DIR or the pack's) has a sample of its requests recorded under
$AIRMLOPS_WORK_URI/live/<model>/ for the online drift check (recording.py); `--no-record`
turns that off.

`--workers N` processes (default one per core) each follow the alias and serve on their own
(workers.py); /status is the answering worker's, with every worker's served versions under
`workers`; /metrics adds up all workers. Concurrent requests for one version are merged into
one predict call (batching.py: `--batch-wait-ms`, `--max-batch-rows`), with answers equal to
one-by-one predictions; every request limit holds per request.

This module is the command line; the pieces, and why each is built as it is:
    scoring (request parsing, limits and scoring, MLflow's own machinery), state (the served
    model state), poller (follows the alias, verifies and swaps versions), metrics
    (Prometheus), server (the served models, their poller and metrics), auth (the bearer
    tokens), batching (merging requests), app (the Starlette app), workers (processes).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from airmlops_core import settings
from airmlops_core.errors import CredentialError
from airmlops_core.serve import workers
from airmlops_core.serve.auth import Tokens
from airmlops_core.serve.batching import DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH_ROWS
from airmlops_core.serve.poller import DEFAULT_ALIAS, DEFAULT_POLL_SECONDS
from airmlops_core.serve.recording import RecordingSettings, settings_from_spec
from airmlops_core.serve.scoring import DEFAULT_MAX_ROWS
from airmlops_core.serve.server import (
    DEFAULT_MAX_BYTES,
    DEFAULT_MAX_QUEUE,
    DEFAULT_READ_TIMEOUT,
    DEFAULT_THREADS,
)
from airmlops_core.spec import load_specs

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001
PORT_ENV = "AIRMLOPS_MODEL_API_PORT"


def models_from_dir(models_dir: str | Path) -> list[str]:
    """Model names of every valid spec in a directory (invalid specs are logged and skipped)."""
    specs, errors = load_specs(models_dir)
    for path, exc in errors.items():
        log.warning("skipping invalid spec %s: %s", path, exc)
    return sorted(specs)


def parse_args(
    argv: list[str] | None = None, env: dict[str, str] | None = None
) -> argparse.Namespace:
    """The CLI; MLFLOW_TRACKING_URI and AIRMLOPS_MODEL_API_PORT are the env fallbacks.

    The tokens are read here (`args.tokens`): a missing or bad one exits with its reason.
    """
    env = dict(os.environ) if env is None else env
    ap = argparse.ArgumentParser(
        prog="python -m airmlops_core.serve.model_api",
        description="Serve each model's champion over HTTP.",
        allow_abbrev=False,  # `--token SECRET` must not pass for `--token-file SECRET`
    )
    ap.add_argument("--host", default=DEFAULT_HOST, help="bind address (default 127.0.0.1)")
    ap.add_argument(
        "--port",
        type=int,
        default=settings.current(env).model_api_port or DEFAULT_PORT,
        help=f"port (default ${PORT_ENV} or {DEFAULT_PORT})",
    )
    ap.add_argument(
        "--tracking-uri",
        default=env.get("MLFLOW_TRACKING_URI"),
        help="MLflow tracking/registry URI (default $MLFLOW_TRACKING_URI)",
    )
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--models", help="comma-separated registered model names")
    group.add_argument(
        "--models-dir",
        help="serve the model of every spec in this directory (default: the pack's models dir)",
    )
    ap.add_argument("--alias", default=DEFAULT_ALIAS, help="registry alias to follow")
    ap.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_SECONDS,
        help="seconds between alias look-ups",
    )
    ap.add_argument(
        "--token-file",
        help="file holding the API token (default $AIRMLOPS_MODEL_API_TOKEN_FILE, else the "
        "token in $AIRMLOPS_MODEL_API_TOKEN)",
    )
    ap.add_argument(
        "--metrics-token-file",
        help="file holding a scrape-only token for /metrics (default "
        "$AIRMLOPS_MODEL_API_METRICS_TOKEN_FILE or $AIRMLOPS_MODEL_API_METRICS_TOKEN; optional)",
    )
    ap.add_argument(
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help="largest request body accepted (413 above)",
    )
    ap.add_argument(
        "--max-rows",
        type=int,
        default=DEFAULT_MAX_ROWS,
        help=f"most rows per request (413 above; default {DEFAULT_MAX_ROWS})",
    )
    ap.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="predictions running at once"
    )
    ap.add_argument(
        "--max-queue",
        type=int,
        default=DEFAULT_MAX_QUEUE,
        help=f"requests waiting for a thread before 429 (default {DEFAULT_MAX_QUEUE})",
    )
    ap.add_argument(
        "--read-timeout",
        type=float,
        default=DEFAULT_READ_TIMEOUT,
        help=f"seconds to receive a request body (408 after; default {DEFAULT_READ_TIMEOUT:g})",
    )
    ap.add_argument(
        "--workers",
        type=int,
        default=workers.default_workers(),
        help="worker processes, each following the alias on its own (default: one per core)",
    )
    ap.add_argument(
        "--batch-wait-ms",
        type=float,
        default=DEFAULT_BATCH_WAIT_MS,
        help="how long a batch waits for requests already in flight to join it "
        f"(0: no wait; default {DEFAULT_BATCH_WAIT_MS:g})",
    )
    ap.add_argument(
        "--max-batch-rows",
        type=int,
        default=DEFAULT_MAX_BATCH_ROWS,
        help=f"most rows merged into one predict call (default {DEFAULT_MAX_BATCH_ROWS})",
    )
    ap.add_argument(
        "--no-record",
        action="store_true",
        help="record no live traffic, whatever the specs' monitoring.live says",
    )
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--access-log", action="store_true", help="log every request")
    args = ap.parse_args(argv)
    if not args.tracking_uri:
        ap.error("no tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    positive = (
        args.poll_interval,
        args.max_bytes,
        args.max_rows,
        args.threads,
        args.read_timeout,
        args.workers,
        args.max_batch_rows,
    )
    if min(positive) <= 0 or args.max_queue < 0 or args.batch_wait_ms < 0:
        ap.error(
            "--poll-interval, --max-bytes, --max-rows, --threads, --read-timeout, --workers and "
            "--max-batch-rows must be positive, --max-queue and --batch-wait-ms zero or more"
        )
    try:
        args.tokens = Tokens.from_env(
            env, token_file=args.token_file, metrics_token_file=args.metrics_token_file
        )
    except CredentialError as exc:
        ap.error(str(exc))
    return args


def model_names(args: argparse.Namespace) -> list[str]:
    """The models to serve: `--models`, else every valid spec of `--models-dir` or the pack's.

    Raises:
        SystemExit: no model to serve.
    """
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
    else:
        names = models_from_dir(args.models_dir or settings.models_dir())
    if not names:
        raise SystemExit("no models to serve (empty --models, or no valid spec in the dir)")
    return names


def recording_settings(names: list[str], args: argparse.Namespace) -> dict[str, RecordingSettings]:
    """The live-traffic recording of each served model whose spec asks for it."""
    if args.no_record:
        return {}
    specs, _ = load_specs(args.models_dir or settings.models_dir())
    found = {name: settings_from_spec(specs[name]) for name in names if name in specs}
    return {name: cfg for name, cfg in found.items() if cfg is not None}


def main(argv: list[str] | None = None) -> int:
    """Parse the CLI, then run the API until SIGINT/SIGTERM."""
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # The poller retries on its own schedule: fail fast rather than back off for minutes.
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ["_MLFLOW_IS_IN_SERVING_ENVIRONMENT"] = "true"  # as MLflow's scoring server sets
    names = model_names(args)
    recording = recording_settings(names, args)
    for name, cfg in recording.items():
        log.info(
            "recording %.0f%% of %s's requests under %s",
            100 * cfg["sample_rate"],
            name,
            cfg["base"],
        )
    log.info(
        "serving %s ('%s' alias, poll every %ss) on http://%s:%d with %d worker(s); every "
        "route but /health needs the bearer token%s",
        names,
        args.alias,
        args.poll_interval,
        args.host,
        args.port,
        args.workers,
        " (/metrics also the metrics token)" if args.tokens.metrics else "",
    )
    config: workers.ServerConfig = {
        "tracking_uri": args.tracking_uri,
        "models": names,
        "alias": args.alias,
        "poll_interval": args.poll_interval,
        "max_bytes": args.max_bytes,
        "max_rows": args.max_rows,
        "threads": args.threads,
        "max_queue": args.max_queue,
        "read_timeout": args.read_timeout,
        "batch_wait_ms": args.batch_wait_ms,
        "max_batch_rows": args.max_batch_rows,
        "token_file": args.token_file,
        "metrics_token_file": args.metrics_token_file,
        "recording": recording,
        "run_dir": None,
        "log_level": args.log_level,
    }
    workers.run(
        config,
        args.tokens,
        host=args.host,
        port=args.port,
        workers=args.workers,
        access_log=args.access_log,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
