"""The model API's Starlette app: invocations, /health, /status, /metrics, the golden request.

Starlette + uvicorn is the ASGI stack MLflow's scoring server (FastAPI) already runs on,
installed with mlflow. Handlers are async; predict runs in a bounded thread pool (`threads`),
so slow predictions never block /health or /metrics, and so does reading a body above
INLINE_PARSE_BYTES (a small body's JSON is read in the event loop: a thread hop costs more).
Each request is read and checked on its own, then concurrent requests for the same version
are merged into one frame and one predict call (batching.Batcher). MLflow's server itself is not
used because it serves one fixed model: it cannot follow an alias, swap versions, serve several
models, limit payload size or export Prometheus metrics.

Every route but /health needs the bearer token (auth.BearerAuth, before any body is read).
An invocation is admitted only while fewer than `threads + max_queue` are in flight (else 429
with Retry-After), its body must arrive within `read_timeout` seconds (else 408), and an
unexpected failure answers 500 with a request id only: the traceback goes to the server log
under that id.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NotRequired, TypedDict

import anyio
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airmlops_core.serve import metrics as prom
from airmlops_core.serve.auth import BearerAuth, Refusal, Tokens
from airmlops_core.serve.batching import Batcher
from airmlops_core.serve.scoring import RequestError, read_payload
from airmlops_core.serve.server import ModelServer

log = logging.getLogger(__name__)

UNKNOWN_MODEL = "_unknown"
INLINE_PARSE_BYTES = 16 * 1024


class ErrorBody(TypedDict):
    """The JSON answer to a refused or failed request."""

    error_code: str
    message: str
    model: NotRequired[str]
    request_id: NotRequired[str]


def build_app(server: ModelServer, *, tokens: Tokens, start_poller: bool = True) -> Starlette:
    """The Starlette app over `server`, behind `tokens`; its lifespan runs the alias poller."""
    limiter = anyio.CapacityLimiter(server.threads)
    capacity = server.threads + server.max_queue
    in_flight = 0
    m = server.metrics
    batcher: Batcher | None = None  # made on first use: it belongs to the event loop

    def error(exc: RequestError, model: str | None) -> JSONResponse:
        body: ErrorBody = {"error_code": exc.code, "message": exc.message}
        if model:
            body["model"] = model
        headers = {"Retry-After": "1"} if exc.status == 429 else {}
        if exc.status in (408, 413):  # the rest of the body is never read
            headers["Connection"] = "close"
        return JSONResponse(body, status_code=exc.status, headers=headers)

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

    async def receive_body(request: Request) -> bytes:
        try:
            with anyio.fail_after(server.read_timeout):
                return await read_body(request)
        except TimeoutError:
            raise RequestError(
                408,
                "REQUEST_TIMEOUT",
                f"the body did not arrive within {server.read_timeout:g} s (--read-timeout)",
            ) from None

    async def predict(request: Request, name: str | None) -> Response:
        nonlocal in_flight
        if in_flight >= capacity:
            raise RequestError(
                429,
                "TOO_MANY_REQUESTS",
                f"{server.threads} requests are being scored and {server.max_queue} wait "
                "(--threads, --max-queue): retry later",
            )
        in_flight += 1
        m.in_flight.inc()
        try:
            served = server.served_for(name)
            body = await receive_body(request)
            read = functools.partial(
                read_payload,
                body,
                request.headers.get("content-type"),
                served.input_schema,
                max_rows=server.max_rows,
            )
            if len(body) <= INLINE_PARSE_BYTES:
                payload = read()
            else:
                payload = await anyio.to_thread.run_sync(read, limiter=limiter)
            answer, rows = await get_batcher().predict(served, payload)
            if server.recorder is not None:
                server.recorder.offer(
                    served, body, request.headers.get("content-type"), answer, rows
                )
        finally:
            in_flight -= 1
            m.in_flight.dec()
        m.rows.labels(model=served.name).inc(rows)
        return Response(
            answer,
            media_type="application/json",
            headers={"X-Model-Name": served.name, "X-Model-Version": served.version},
        )

    async def invoke(request: Request) -> Response:
        name = request.path_params.get("model")
        label = name if name in server.states else UNKNOWN_MODEL
        if name is None and len(server.states) == 1:
            label = next(iter(server.states))
        request_id = secrets.token_hex(8)
        start = time.perf_counter()
        try:
            response = await predict(request, name)
        except RequestError as exc:
            m.errors.labels(model=label, reason=exc.code.lower()).inc()
            if exc.status >= 500 or exc.status in (408, 413):  # 429s: counted, not logged
                log.warning("%s: %s %s (request %s)", label, exc.status, exc.message, request_id)
            response = error(exc, name)
        except Exception:
            log.exception("%s: internal error (request %s)", label, request_id)
            m.errors.labels(model=label, reason="internal").inc()
            internal: ErrorBody = {
                "error_code": "INTERNAL_ERROR",
                "message": "internal error; the server log has the details under the request id",
                "request_id": request_id,
            }
            response = JSONResponse(internal, status_code=500)
        response.headers["X-Request-ID"] = request_id
        m.latency.labels(model=label).observe(time.perf_counter() - start)
        m.requests.labels(model=label, status=str(response.status_code)).inc()
        return response

    def get_batcher() -> Batcher:
        nonlocal batcher
        if batcher is None or batcher.loop is not asyncio.get_running_loop():
            batcher = Batcher(
                limiter,
                wait_s=server.batch_wait_s,
                max_rows=server.max_batch_rows,
                waiting=lambda: in_flight - batcher_submitted(),
                observe=lambda requests, rows: m.batch_requests.observe(requests),
            )
        return batcher

    def batcher_submitted() -> int:
        return batcher.submitted if batcher is not None else 0

    async def health(request: Request) -> Response:
        status, body = server.health()
        return JSONResponse({"status": body["status"]}, status_code=status)

    async def status(request: Request) -> Response:
        code, body = server.health()
        return JSONResponse(body, status_code=code)

    async def metrics(request: Request) -> Response:
        text, media_type = prom.exposition(m.registry)
        return Response(text, media_type=media_type)

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

    def refused(reason: Refusal) -> None:
        m.auth_failures.labels(reason=reason).inc()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        prom.mark_dead_workers()
        if start_poller:
            server.start()
        try:
            yield
        finally:
            await asyncio.to_thread(server.stop)
            prom.mark_dead(os.getpid())

    return Starlette(
        routes=[
            Route("/invocations", invoke, methods=["POST"]),
            Route("/invocations/{model}", invoke, methods=["POST"]),
            Route("/models/{model}/invocations", invoke, methods=["POST"]),
            Route("/models/{model}/golden", golden, methods=["GET"]),
            Route("/health", health, methods=["GET"]),
            Route("/status", status, methods=["GET"]),
            Route("/metrics", metrics, methods=["GET"]),
        ],
        middleware=[Middleware(BearerAuth, tokens=tokens, on_refused=refused)],
        lifespan=lifespan,
    )
