"""The model REST API: each model's `champion` from the MLflow registry, over HTTP.

    python -m airmlops_core.serve.model_api --tracking-uri URL [--models a,b | --models-dir DIR]
        [--host 127.0.0.1] [--port 5001] [--poll-interval 5] [--max-bytes 8388608]

Endpoints:
    POST /invocations/<model>, POST /models/<model>/invocations (and POST /invocations when
        exactly one model is served): MLflow's scoring protocol, JSON `dataframe_split`,
        `dataframe_records`, `inputs` or `instances` (or text/csv). Answers MLflow's
        `{"predictions": [...]}`: whatever the model's pyfunc returns (for the pack's
        classifiers predict_proba, one list of class probabilities per row; for regressors one
        number per row). Headers X-Model-Name and X-Model-Version say which version answered.
    GET /health: 200 when every model has a version served, else 503; JSON per model.
    GET /metrics: Prometheus text format.
    GET /models/<model>/golden: the request body the served version was verified with.

Why it is built this way:
- Scoring uses MLflow's own machinery, not a copy: `mlflow.pyfunc.load_model` of the registry
  version, the scoring server's parser (`scoring_server.infer_and_parse_data`, which builds the
  frame with the signature's types), the pyfunc's signature enforcement in `predict` (missing
  columns, uncastable types) and `scoring_server.predictions_to_json` for the answer, so the
  API answers as `mlflow models serve` does. MLflow's server itself is not used because it
  serves one fixed model: it cannot follow an alias, swap versions, serve several models,
  limit payload size or export Prometheus metrics. The request checks before parsing (size,
  JSON, exactly one format key, no rows) exist to give clear 4xx messages where MLflow's
  answer is vague ("unexpected error", or a missing-inputs message for an empty payload).
- HTTP stack: Starlette + uvicorn, the ASGI stack MLflow's scoring server (FastAPI) already
  runs on, installed with mlflow. Handlers are async; parsing and predict run in a bounded
  thread pool (`--threads`), so slow predictions never block /health or /metrics.
- Models come only from the registry (`models:/<name>/<version>`, downloaded by MLflow); a
  request carries data, never a model. Parquet bodies are refused (JSON and CSV only).
- One background thread polls the alias every `--poll-interval` seconds. A new champion is
  downloaded, loaded and sent its golden request (the serving input example logged with the
  model, else one row built from the signature) through the same scoring path requests take;
  only when that answered is the model published, by replacing one reference. A request reads
  that reference once, so it is scored wholly by the old or wholly by the new version. A
  version that fails keeps the old one served, is reported (log, reload-failure metric,
  /health `problem`) and is retried with backoff. A model without champion answers 503.
- One process: the poller, the served models and the metrics live in it. Scale out with more
  processes behind a proxy, each following the alias on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    generate_latest,
)

from airmlops_core import settings
from airmlops_core.spec import load_specs

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 5001
DEFAULT_ALIAS = "champion"
DEFAULT_POLL_SECONDS = 5.0
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_THREADS = 4
MAX_RETRY_SECONDS = 300.0
PORT_ENV = "AIRMLOPS_MODEL_API_PORT"
FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
UNKNOWN_MODEL = "_unknown"
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RequestError(Exception):
    """A request the API refuses: HTTP status, a short code and a message naming the problem."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Served:
    """One loaded model version that answered its golden request. Never mutated."""

    name: str
    version: str
    run_id: str
    model: Any  # mlflow.pyfunc.PyFuncModel
    input_schema: Any  # mlflow.types.Schema | None
    golden: str  # the JSON request body it was verified with
    loaded_at: float
    local_dir: Path


@dataclass
class ModelState:
    """What the API knows about one model; `served` is swapped whole, the rest under `lock`."""

    name: str
    served: Served | None = None
    champion: str | None = None  # the alias target at the last successful poll
    problem: str | None = None
    failed_version: str | None = None
    failures: int = 0
    retry_at: float = 0.0
    last_poll: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class Metrics:
    """The API's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        from prometheus_client import PlatformCollector, ProcessCollector

        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        r = self.registry
        p = "airmlops_model_api_"
        self.requests = Counter(
            f"{p}requests",
            "Invocation requests by model and HTTP status",
            ["model", "status"],
            registry=r,
        )
        self.errors = Counter(
            f"{p}request_errors",
            "Refused or failed invocations by reason",
            ["model", "reason"],
            registry=r,
        )
        self.latency = Histogram(
            f"{p}request_duration_seconds",
            "Invocation latency, from body received to answer built",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rows = Counter(f"{p}predicted_rows", "Rows scored", ["model"], registry=r)
        self.served_version = Gauge(
            f"{p}served_version", "Registry version served (0: none)", ["model"], registry=r
        )
        self.champion_version = Gauge(
            f"{p}champion_version",
            "Version the alias named at the last poll (0: none)",
            ["model"],
            registry=r,
        )
        self.loaded = Gauge(f"{p}model_loaded", "1 when a version is served", ["model"], registry=r)
        self.info = Info(f"{p}model", "The served version and its run", ["model"], registry=r)
        self.last_reload = Gauge(
            f"{p}last_reload_timestamp_seconds",
            "When the served version was swapped in (unix time)",
            ["model"],
            registry=r,
        )
        self.reloads = Counter(
            f"{p}reloads",
            "Version loads by outcome (success, failed)",
            ["model", "outcome"],
            registry=r,
        )
        self.poll_errors = Counter(
            f"{p}registry_poll_errors",
            "Alias look-ups that failed (registry unreachable or error)",
            ["model"],
            registry=r,
        )


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds") if ts else None


def _short(message: str, limit: int = 1500) -> str:
    """MLflow's schema errors quote the whole input frame: drop it, lead with the error."""
    found = re.search(
        r"Failed to enforce schema of data '.*' with schema '(.*?)'\.\s*"
        r"Error:\s*(.*)$",
        message,
        flags=re.DOTALL,
    )
    if found:
        message = f"{found.group(2).strip()} (model signature: {found.group(1)})"
    if len(message) > limit:
        message = message[: limit // 3] + " ... " + message[-(2 * limit) // 3 :]
    return message


def _row_count(data: Any) -> int:
    if hasattr(data, "shape"):
        return int(data.shape[0])
    if isinstance(data, dict):
        lengths = [
            len(v) if hasattr(v, "__len__") and not isinstance(v, str) else 1 for v in data.values()
        ]
        return max(lengths, default=0)
    return len(data) if hasattr(data, "__len__") else 1


def _empty_payload(fmt: str, value: Any) -> bool:
    if value is None:
        return True
    if fmt == "dataframe_split":
        return isinstance(value, dict) and not value.get("data")
    if isinstance(value, dict):
        return not value or all(
            hasattr(v, "__len__") and not isinstance(v, str) and not v for v in value.values()
        )
    return isinstance(value, list) and not value


def parse_request(body: bytes, content_type: str | None, input_schema: Any) -> tuple[Any, Any]:
    """A request body -> (model input, params), with MLflow's scoring-server parser.

    Raises:
        RequestError: empty, not JSON/CSV, malformed, no or several format keys, no rows.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    if not body.strip():
        raise RequestError(
            400,
            "EMPTY_PAYLOAD",
            f"empty request body: send a JSON object with one of {list(FORMATS)}",
        )
    mime = (content_type or "application/json").split(";")[0].strip().lower()
    if mime == "text/csv":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(400, "MALFORMED_CSV", f"body is not UTF-8: {exc}") from None
        from io import StringIO

        try:
            frame = scoring_server.parse_csv_input(StringIO(text), schema=input_schema)
        except MlflowException as exc:
            raise RequestError(400, "MALFORMED_CSV", _short(exc.message)) from None
        if len(frame) == 0:
            raise RequestError(400, "EMPTY_PAYLOAD", "CSV body has a header but no rows")
        return frame, None
    if mime != "application/json":
        raise RequestError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"content type '{mime}' is not accepted: send application/json (or text/csv)",
        )
    try:
        payload = json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError(400, "MALFORMED_JSON", f"body is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            400,
            "MALFORMED_JSON",
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})",
        ) from None
    if not isinstance(payload, dict):
        raise RequestError(
            400,
            "BAD_REQUEST",
            "the body must be a JSON object with one of "
            f"{list(FORMATS)}; got a JSON {type(payload).__name__}",
        )
    keys = [k for k in FORMATS if k in payload]
    if len(keys) != 1:
        found = "none of them" if not keys else f"several: {keys}"
        raise RequestError(
            400,
            "BAD_REQUEST",
            f"the body must have exactly one of "
            f"{list(FORMATS)}; found {found} (keys: {sorted(payload)[:10]})",
        )
    fmt = keys[0]
    if _empty_payload(fmt, payload[fmt]):
        raise RequestError(400, "EMPTY_PAYLOAD", f"'{fmt}' holds no rows")
    try:
        data = scoring_server.infer_and_parse_data({fmt: payload[fmt]}, input_schema)
    except MlflowException as exc:
        code = "SCHEMA_MISMATCH" if "signature" in exc.message else "BAD_REQUEST"
        raise RequestError(400, code, f"cannot read '{fmt}': {_short(exc.message)}") from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RequestError(
            400, "BAD_REQUEST", f"cannot read '{fmt}' as a table: {type(exc).__name__}: {exc}"
        ) from None
    if _row_count(data) == 0:
        raise RequestError(400, "EMPTY_PAYLOAD", f"'{fmt}' holds no rows")
    return data, payload.get("params")


def score(served: Served, body: bytes, content_type: str | None) -> tuple[str, int]:
    """Score one request with one served version -> (JSON answer, rows scored).

    Raises:
        RequestError: the input is refused (parsing, schema enforcement or the model's own
            checks; 400, as MLflow's scoring server answers).
    """
    from io import StringIO

    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    data, params = parse_request(body, content_type, served.input_schema)
    try:
        raw = served.model.predict(data, params=params) if params else served.model.predict(data)
    except MlflowException as exc:
        raise RequestError(400, "SCHEMA_MISMATCH", _short(exc.message)) from None
    except Exception as exc:  # the model rejects the input (MLflow answers 400 too)
        raise RequestError(
            400,
            "PREDICT_FAILED",
            f"the model could not score this input: {type(exc).__name__}: {_short(str(exc))}",
        ) from None
    out = StringIO()
    scoring_server.predictions_to_json(raw, out)
    return out.getvalue(), _row_count(data)


def golden_request(model_meta: Any, local_dir: Path) -> str:
    """The verification request: the logged serving input example, else a row from the signature.

    Raises:
        ValueError: the model has neither.
    """
    example = model_meta.get_serving_input(str(local_dir))
    if example:
        return str(example)
    schema = model_meta.get_input_schema()
    if schema is None or not schema.has_input_names():
        raise ValueError(
            "the model has neither a serving input example nor a column signature: "
            "no golden request can be built (log it with input_example=)"
        )
    fill = {
        "double": 0.0,
        "float": 0.0,
        "long": 0,
        "integer": 0,
        "boolean": False,
        "string": "",
        "datetime": "1970-01-01T00:00:00",
    }
    row = {}
    for col in schema.inputs:
        kind = getattr(getattr(col, "type", None), "name", "string")
        row[col.name] = fill.get(kind, "")
    return json.dumps({"dataframe_records": [row]})


class ModelServer:
    """The served models, their alias poller and their metrics; the HTTP app wraps this."""

    def __init__(
        self,
        tracking_uri: str,
        models: list[str],
        *,
        alias: str = DEFAULT_ALIAS,
        poll_interval: float = DEFAULT_POLL_SECONDS,
        max_bytes: int = DEFAULT_MAX_BYTES,
        threads: int = DEFAULT_THREADS,
        cache_dir: Path | None = None,
    ):
        if not models:
            raise ValueError("no models to serve: pass --models a,b or --models-dir")
        self.tracking_uri = tracking_uri
        self.alias = alias
        self.poll_interval = poll_interval
        self.max_bytes = max_bytes
        self.threads = threads
        self.states = {name: ModelState(name) for name in dict.fromkeys(models)}
        self.metrics = Metrics()
        self._own_cache = cache_dir is None
        self.cache_dir = cache_dir or Path(tempfile.mkdtemp(prefix="airmlops-model-api-"))
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._client: Any = None
        for name in self.states:
            self.metrics.loaded.labels(model=name).set(0)
            self.metrics.served_version.labels(model=name).set(0)
            self.metrics.champion_version.labels(model=name).set(0)

    # -- registry side -------------------------------------------------------------------

    @property
    def client(self) -> Any:
        if self._client is None:
            from mlflow import MlflowClient

            self._client = MlflowClient(
                tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
            )
        return self._client

    def resolve(self, name: str) -> tuple[str, str] | None:
        """(version, run_id) the alias names now; None when the model or the alias is absent.

        Raises:
            MlflowException: the registry could not answer.
        """
        from mlflow.exceptions import MlflowException

        try:
            mv = self.client.get_model_version_by_alias(name, self.alias)
        except MlflowException as exc:
            if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return None
            raise
        return str(mv.version), str(mv.run_id or "")

    def load_verified(self, name: str, version: str, run_id: str) -> Served:
        """Download, load and verify one version; nothing is published here.

        Raises:
            Exception: any failure to download, load or answer the golden request.
        """
        import mlflow
        from mlflow.models import Model

        local = self.cache_dir / name / f"v{version}-{time.monotonic_ns()}"
        local.mkdir(parents=True)
        try:
            path = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=f"models:/{name}/{version}",
                    dst_path=str(local),
                    tracking_uri=self.tracking_uri,
                    registry_uri=self.tracking_uri,
                )
            )
            model = mlflow.pyfunc.load_model(str(path))
            golden = golden_request(Model.load(str(path)), path)
            candidate = Served(
                name=name,
                version=version,
                run_id=run_id,
                model=model,
                input_schema=model.metadata.get_input_schema(),
                golden=golden,
                loaded_at=time.time(),
                local_dir=local,
            )
            try:
                answer, rows = score(candidate, golden.encode(), "application/json")
            except RequestError as exc:
                raise RuntimeError(f"golden request refused: {exc.message}") from None
            predictions = json.loads(answer).get("predictions")
            if predictions is None or len(predictions) != rows or rows == 0:
                raise RuntimeError(f"golden request answered {rows} row(s) with {answer[:200]!r}")
            return candidate
        except BaseException:
            shutil.rmtree(local, ignore_errors=True)
            raise

    def refresh(self, name: str) -> None:
        """Follow the alias of one model: load, verify and swap in a new target."""
        state = self.states[name]
        m = self.metrics
        now = time.time()
        try:
            target = self.resolve(name)
        except Exception as exc:
            m.poll_errors.labels(model=name).inc()
            log.warning("%s: registry poll failed: %s", name, exc)
            with state.lock:
                state.problem = f"registry poll failed: {_short(str(exc), 300)}"
                state.last_poll = now
            return
        with state.lock:
            state.last_poll = now
        if target is None:
            m.champion_version.labels(model=name).set(0)
            served = state.served
            with state.lock:
                state.champion = None
                state.problem = f"no '{self.alias}' alias on registered model '{name}'" + (
                    f"; still serving version {served.version}"
                    if served
                    else " (model not registered or never promoted)"
                )
            return
        version, run_id = target
        m.champion_version.labels(model=name).set(_version_number(version))
        with state.lock:
            state.champion = version
        if state.served is not None and state.served.version == version:
            with state.lock:
                state.problem = None
                state.failed_version, state.failures = None, 0
            return
        if state.failed_version == version and now < state.retry_at:
            return
        log.info("%s: '%s' is version %s; loading it", name, self.alias, version)
        try:
            candidate = self.load_verified(name, version, run_id)
        except Exception as exc:
            m.reloads.labels(model=name, outcome="failed").inc()
            with state.lock:
                state.failures = state.failures + 1 if state.failed_version == version else 1
                state.failed_version = version
                delay = min(self.poll_interval * 2**state.failures, MAX_RETRY_SECONDS)
                state.retry_at = time.time() + delay
                kept = (
                    f"; still serving version {state.served.version}"
                    if state.served
                    else "; nothing served"
                )
                state.problem = (
                    f"version {version} failed to load: {type(exc).__name__}: "
                    f"{_short(str(exc), 500)}{kept}; retry in {delay:.0f}s"
                )
            log.error("%s: %s", name, state.problem)
            return
        old = state.served
        state.served = candidate  # the swap: one reference, read once per request
        with state.lock:
            state.problem = None
            state.failed_version, state.failures = None, 0
        m.reloads.labels(model=name, outcome="success").inc()
        m.served_version.labels(model=name).set(_version_number(version))
        m.loaded.labels(model=name).set(1)
        m.info.labels(model=name).info({"version": version, "run_id": run_id})
        m.last_reload.labels(model=name).set(candidate.loaded_at)
        log.info(
            "%s: now serving version %s (was %s)", name, version, old.version if old else "none"
        )
        if old is not None:
            shutil.rmtree(old.local_dir, ignore_errors=True)

    def poll_once(self) -> None:
        for name in self.states:
            if self._stop.is_set():
                return
            try:
                self.refresh(name)
            except Exception:  # never let one model's bug stop the poller
                log.exception("%s: alias refresh crashed", name)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll_once()
            self._stop.wait(self.poll_interval)

    def start(self) -> None:
        """Start the alias poller (its first poll loads every champion)."""
        self._thread = threading.Thread(target=self._run, name="alias-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        if self._own_cache:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    # -- serving side --------------------------------------------------------------------

    def served_for(self, name: str | None) -> Served:
        """The version that answers a request for `name` (None: the only model).

        Raises:
            RequestError: 400 no model named on a multi-model server, 404 unknown, 503 none yet.
        """
        if name is None:
            if len(self.states) != 1:
                raise RequestError(
                    400,
                    "MODEL_NOT_SPECIFIED",
                    f"this API serves {sorted(self.states)}: POST /invocations/<model>",
                )
            name = next(iter(self.states))
        state = self.states.get(name)
        if state is None:
            raise RequestError(
                404,
                "UNKNOWN_MODEL",
                f"model '{name}' is not served here; served: {sorted(self.states)}",
            )
        served = state.served
        if served is None:
            raise RequestError(
                503,
                "NO_MODEL_LOADED",
                f"model '{name}' has no version loaded: {state.problem or 'loading'}",
            )
        return served

    def health(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, body): 200 when every model has a served version."""
        models: dict[str, Any] = {}
        for name, state in self.states.items():
            served = state.served
            with state.lock:
                problem, champion, last_poll = state.problem, state.champion, state.last_poll
            if served is None and problem is None:
                problem = "loading: first registry poll not finished"
            models[name] = {
                "status": "serving" if served else "unavailable",
                "served_version": served.version if served else None,
                "champion_version": champion,
                "run_id": served.run_id if served else None,
                "loaded_at": _iso(served.loaded_at) if served else None,
                "last_poll": _iso(last_poll),
                "problem": problem,
            }
        all_served = all(m["served_version"] for m in models.values())
        clean = all_served and all(m["problem"] is None for m in models.values())
        status = "ok" if clean else "degraded" if all_served else "unavailable"
        return (200 if all_served else 503), {
            "status": status,
            "alias": self.alias,
            "models": models,
        }


def _version_number(version: str) -> float:
    try:
        return float(int(version))
    except ValueError:
        return -1.0


def build_app(server: ModelServer, *, start_poller: bool = True) -> Any:
    """The Starlette app over `server`; its lifespan starts and stops the alias poller."""
    import anyio
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    limiter = anyio.CapacityLimiter(server.threads)
    m = server.metrics

    def error(exc: RequestError, model: str | None) -> JSONResponse:
        body = {"error_code": exc.code, "message": exc.message}
        if model:
            body["model"] = model
        return JSONResponse(body, status_code=exc.status)

    async def read_body(request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > server.max_bytes:
            raise RequestError(
                413,
                "PAYLOAD_TOO_LARGE",
                f"body of {int(declared)} bytes "
                f"exceeds the limit of {server.max_bytes} bytes (--max-bytes)",
            )
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > server.max_bytes:
                raise RequestError(
                    413,
                    "PAYLOAD_TOO_LARGE",
                    f"body exceeds the limit of {server.max_bytes} bytes (--max-bytes)",
                )
            chunks.append(chunk)
        return b"".join(chunks)

    async def invoke(request: Request) -> Response:
        name = request.path_params.get("model")
        label = name if name in server.states else UNKNOWN_MODEL
        if name is None and len(server.states) == 1:
            label = next(iter(server.states))
        start = time.perf_counter()
        try:
            served = server.served_for(name)
            body = await read_body(request)
            answer, rows = await anyio.to_thread.run_sync(
                score, served, body, request.headers.get("content-type"), limiter=limiter
            )
            response: Response = Response(
                answer,
                media_type="application/json",
                headers={"X-Model-Name": served.name, "X-Model-Version": served.version},
            )
            m.rows.labels(model=label).inc(rows)
        except RequestError as exc:
            m.errors.labels(model=label, reason=exc.code.lower()).inc()
            if exc.status >= 500 or exc.status == 413:
                log.warning("%s: %s %s", label, exc.status, exc.message)
            response = error(exc, name)
        except Exception as exc:
            log.exception("%s: internal error", label)
            m.errors.labels(model=label, reason="internal").inc()
            response = error(
                RequestError(500, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}"), name
            )
        m.latency.labels(model=label).observe(time.perf_counter() - start)
        m.requests.labels(model=label, status=str(response.status_code)).inc()
        return response

    async def health(request: Request) -> Response:
        status, body = server.health()
        return JSONResponse(body, status_code=status)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(m.registry), media_type=CONTENT_TYPE_LATEST)

    async def golden(request: Request) -> Response:
        name = request.path_params["model"]
        try:
            served = server.served_for(name)
        except RequestError as exc:
            return error(exc, name)
        return Response(
            served.golden,
            media_type="application/json",
            headers={"X-Model-Name": served.name, "X-Model-Version": served.version},
        )

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        if start_poller:
            server.start()
        try:
            yield
        finally:
            await asyncio.to_thread(server.stop)

    return Starlette(
        routes=[
            Route("/invocations", invoke, methods=["POST"]),
            Route("/invocations/{model}", invoke, methods=["POST"]),
            Route("/models/{model}/invocations", invoke, methods=["POST"]),
            Route("/models/{model}/golden", golden, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        lifespan=lifespan,
    )


def models_from_dir(models_dir: str | Path) -> list[str]:
    """Model names of every valid spec in a directory (invalid specs are logged and skipped)."""

    specs, errors = load_specs(models_dir)
    for path, exc in errors.items():
        log.warning("skipping invalid spec %s: %s", path, exc)
    return sorted(specs)


def parse_args(
    argv: list[str] | None = None, env: dict[str, str] | None = None
) -> argparse.Namespace:
    """The CLI; MLFLOW_TRACKING_URI and AIRMLOPS_MODEL_API_PORT are the env fallbacks."""
    env = dict(os.environ) if env is None else env
    ap = argparse.ArgumentParser(
        prog="python -m airmlops_core.serve.model_api",
        description="Serve each model's champion over HTTP.",
    )
    ap.add_argument("--host", default=DEFAULT_HOST, help="bind address (default 127.0.0.1)")
    ap.add_argument(
        "--port",
        type=int,
        default=int(env.get(PORT_ENV) or DEFAULT_PORT),
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
        "--max-bytes",
        type=int,
        default=DEFAULT_MAX_BYTES,
        help="largest request body accepted (413 above)",
    )
    ap.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, help="predictions running at once"
    )
    ap.add_argument("--log-level", default="info")
    ap.add_argument("--access-log", action="store_true", help="log every request")
    args = ap.parse_args(argv)
    if not args.tracking_uri:
        ap.error("no tracking URI: pass --tracking-uri or set MLFLOW_TRACKING_URI")
    if args.poll_interval <= 0 or args.max_bytes <= 0 or args.threads <= 0:
        ap.error("--poll-interval, --max-bytes and --threads must be positive")
    return args


def model_names(args: argparse.Namespace) -> list[str]:
    if args.models:
        names = [n.strip() for n in args.models.split(",") if n.strip()]
    else:
        names = models_from_dir(args.models_dir or settings.models_dir())
    if not names:
        raise SystemExit("no models to serve (empty --models, or no valid spec in the dir)")
    return names


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
    import uvicorn

    names = model_names(args)
    server = ModelServer(
        args.tracking_uri,
        names,
        alias=args.alias,
        poll_interval=args.poll_interval,
        max_bytes=args.max_bytes,
        threads=args.threads,
    )
    log.info(
        "serving %s ('%s' alias, poll every %ss) on http://%s:%d",
        names,
        args.alias,
        args.poll_interval,
        args.host,
        args.port,
    )
    config = uvicorn.Config(
        build_app(server),
        host=args.host,
        port=args.port,
        log_level=args.log_level.lower(),
        access_log=args.access_log,
        timeout_graceful_shutdown=10,
    )
    uvicorn.Server(config).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
