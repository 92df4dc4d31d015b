"""The model API's Starlette app: invocations, /health, /metrics and the golden request.

Starlette + uvicorn is the ASGI stack MLflow's scoring server (FastAPI) already runs on,
installed with mlflow. Handlers are async; parsing and predict run in a bounded thread pool
(`threads`), so slow predictions never block /health or /metrics. MLflow's server itself is not
used because it serves one fixed model: it cannot follow an alias, swap versions, serve several
models, limit payload size or export Prometheus metrics.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import NotRequired, TypedDict

import anyio
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from airmlops_core.serve.scoring import RequestError, score
from airmlops_core.serve.server import ModelServer

log = logging.getLogger(__name__)

UNKNOWN_MODEL = "_unknown"


class ErrorBody(TypedDict):
    """The JSON answer to a refused or failed request."""

    error_code: str
    message: str
    model: NotRequired[str]


def build_app(server: ModelServer, *, start_poller: bool = True) -> Starlette:
    """The Starlette app over `server`; its lifespan starts and stops the alias poller."""
    limiter = anyio.CapacityLimiter(server.threads)
    m = server.metrics

    def error(exc: RequestError, model: str | None) -> JSONResponse:
        body: ErrorBody = {"error_code": exc.code, "message": exc.message}
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
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
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
