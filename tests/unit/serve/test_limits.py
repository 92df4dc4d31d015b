"""The model API's limits, tried the way an abusive caller would.

In-process (the app over a hand-set server, httpx's ASGI transport): JSON nested a hundred
thousand levels deep, Infinity and 1e999, too many rows, more requests than the queue holds, a
body that trickles in, and a failure inside the server. Each gets a 4xx naming the limit (or a
500 that says nothing of the failure), and the server keeps serving. The test marked
integration repeats the attacks that depend on the HTTP server against a real uvicorn process.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd
import pytest

from airmlops_core.serve.app import build_app
from airmlops_core.serve.auth import Tokens, generate_token
from airmlops_core.serve.metrics import PREFIX
from airmlops_core.serve.scoring import MAX_JSON_DEPTH, json_depth
from airmlops_core.serve.server import ModelServer
from airmlops_core.serve.state import Served
from airmlops_core.tracking import model_load
from model_api_process import MODEL, Api, Registry, asgi_client, good_request, records

TOKEN = generate_token()
RECORD = {"a": 1.0, "n": 2, "c": "x"}


class Model:
    """A pyfunc stand-in: 0.5 per row; waits for `release` when it is given one."""

    def __init__(self, release: threading.Event | None = None):
        self.release = release

    def predict(self, data: Any) -> list[float]:
        if self.release is not None:
            assert self.release.wait(10), "never released"
        return [0.5] * len(data)


def app_over(tmp_path: Path, model: Any = None, schema: Any = None, **limits: Any) -> Any:
    server = ModelServer("http://127.0.0.1:9", ["m"], cache_dir=tmp_path, **limits)
    golden = json.dumps({"dataframe_records": [RECORD]})
    server.states["m"].served = Served(
        "m", "1", "r", model or Model(), schema, golden, 1.7e9, tmp_path
    )
    return server, build_app(server, tokens=Tokens(TOKEN), start_poller=False)


def post(app: Any, body: bytes | dict, content_type: str = "application/json") -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()

    async def call() -> httpx.Response:
        async with asgi_client(app, TOKEN) as client:
            return await client.post(
                "/invocations/m", content=content, headers={"Content-Type": content_type}
            )

    return anyio.run(call)


def refused(r: httpx.Response, status: int, code: str, fragment: str) -> None:
    assert r.status_code == status, r.text
    assert r.json()["error_code"] == code, r.text
    assert fragment in r.json()["message"], r.text


def nested(depth: int) -> bytes:
    return b'{"dataframe_records": ' + b"[" * (depth - 1) + b"1" + b"]" * (depth - 1) + b"}"


# -- JSON depth -------------------------------------------------------------------------------


def reference_depth(value: Any) -> int:
    """Nesting depth of a parsed JSON value, computed independently (recursion on the value)."""
    if isinstance(value, dict):
        return 1 + max((reference_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((reference_depth(v) for v in value), default=0)
    return 0


@pytest.mark.parametrize(
    "text",
    [
        '"no container"',
        '{"a": "[[[[{{{{"}',
        '{"a": "\\"[[[", "b": [[1]]}',
        '{"a": "\\\\", "b": [[1]]}',
        '{"a": "\\\\\\"]]]]", "b": {"c": [[[]]]}}',
        '[{"x": "]}"}, [[{"y": "\\u005b"}]]]',
        json.dumps({"dataframe_split": {"columns": ["a"], "data": [[1.0], ['[\\"']]}}),
    ],
)
def test_json_depth_agrees_with_the_parsed_value(text: str) -> None:
    assert json_depth(text.encode()) == reference_depth(json.loads(text))


def test_deeply_nested_json_is_a_400_not_a_500(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, app = app_over(tmp_path)
    r = post(app, nested(100_000))  # deeper than Python's recursion limit
    refused(r, 400, "JSON_TOO_DEEP", f"100000 levels deep; the limit is {MAX_JSON_DEPTH}")
    r = post(app, b"[" * 1_000_000)  # never closed
    refused(r, 400, "JSON_TOO_DEEP", "1000000 levels deep")
    r = post(app, nested(MAX_JSON_DEPTH + 1))
    refused(r, 400, "JSON_TOO_DEEP", f"{MAX_JSON_DEPTH + 1} levels deep")
    assert post(app, nested(MAX_JSON_DEPTH)).status_code == 200  # at the limit: parsed
    assert not [rec for rec in caplog.records if rec.levelno >= logging.ERROR]
    assert "Traceback" not in caplog.text
    assert post(app, {"dataframe_records": [RECORD]}).status_code == 200


# -- NaN and Infinity -------------------------------------------------------------------------


def test_infinity_is_refused_in_every_spelling(tmp_path: Path) -> None:
    _, app = app_over(tmp_path)
    for body in (
        b'{"dataframe_records": [{"a": Infinity, "n": 2, "c": "x"}]}',
        b'{"dataframe_records": [{"a": -Infinity, "n": 2, "c": "x"}]}',
        b'{"dataframe_split": {"columns": ["a"], "data": [[1e999]]}}',
        b'{"inputs": {"a": [1.0, 1e999]}}',
    ):
        refused(post(app, body), 400, "NON_FINITE_NUMBER", "'a' holds an infinite number")
    refused(
        post(app, b"a,n\n1.0,inf\n", "text/csv"),
        400,
        "NON_FINITE_NUMBER",
        "'n' holds an infinite number",
    )


@pytest.fixture(scope="module")
def pyfunc(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A real pyfunc with a signature (a: double, n: long, c: string), saved and loaded."""
    import mlflow
    from mlflow.models import infer_signature
    from sklearn.compose import make_column_transformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder

    rng = np.random.default_rng(3)
    X = pd.DataFrame(
        {
            "a": rng.normal(size=60),
            "n": rng.integers(0, 4, 60),
            "c": rng.choice(["x", "y"], 60).astype(object),
        }
    )
    y = (X.a > 0).astype(int)
    pipe = make_pipeline(
        make_column_transformer(
            (SimpleImputer(), ["a", "n"]), (OneHotEncoder(handle_unknown="ignore"), ["c"])
        ),
        LogisticRegression(),
    ).fit(X, y)
    path = tmp_path_factory.mktemp("pyfunc") / "model"
    from airmlops_core.train.estimator import trusted_types

    mlflow.sklearn.save_model(
        pipe,
        str(path),
        signature=infer_signature(X, pipe.predict_proba(X)),
        serialization_format="skops",
        skops_trusted_types=trusted_types(pipe),
        pyfunc_predict_fn="predict_proba",
        pip_requirements=["scikit-learn"],  # inferring them costs seconds
    )
    # loaded as the API loads it (MLflow's own loader refuses skops with the pickle switch off)
    return model_load.load_dir(path, "test model").pyfunc()


def test_nan_is_a_missing_value_where_the_signature_allows_one(tmp_path: Path, pyfunc: Any) -> None:
    _, app = app_over(tmp_path, pyfunc, pyfunc.metadata.get_input_schema())
    ok = post(app, b'{"dataframe_records": [{"a": NaN, "n": 2, "c": "x"}]}')
    assert ok.status_code == 200, ok.text  # a double column may be missing: imputed
    assert len(ok.json()["predictions"]) == 1
    r = post(app, b'{"dataframe_records": [{"a": 1.0, "n": NaN, "c": "x"}]}')
    refused(r, 400, "SCHEMA_MISMATCH", "Failed to convert column n")  # a long column may not
    r = post(app, b'{"dataframe_records": [{"a": Infinity, "n": 2, "c": "x"}]}')
    refused(r, 400, "NON_FINITE_NUMBER", "'a'")


# -- rows ----------------------------------------------------------------------------------------


def test_more_rows_than_the_limit_are_refused_in_every_format(tmp_path: Path) -> None:
    server, app = app_over(tmp_path, max_rows=5)
    six = [RECORD] * 6
    for body in (
        {"dataframe_records": six},
        {"instances": six},
        {"dataframe_split": {"columns": ["a"], "data": [[1.0]] * 6}},
        {"inputs": {"a": [1.0] * 6}},
    ):
        refused(post(app, body), 413, "TOO_MANY_ROWS", "6 rows; the limit is 5 rows per request")
    refused(post(app, b"a\n" + b"1.0\n" * 6, "text/csv"), 413, "TOO_MANY_ROWS", "6 rows")
    wide = {"dataframe_split": {"columns": [f"c{i}" for i in range(50)], "data": [[0.0] * 50]}}
    assert post(app, wide).status_code == 200  # columns are not rows
    assert post(app, {"dataframe_records": [RECORD] * 5}).status_code == 200
    reason = {"model": "m", "reason": "too_many_rows"}
    assert server.metrics.registry.get_sample_value(f"{PREFIX}request_errors_total", reason) == 5


# -- the queue, slow bodies, internal errors ----------------------------------------------------


def test_a_full_queue_answers_429_with_retry_after(tmp_path: Path) -> None:
    release = threading.Event()
    server, app = app_over(tmp_path, Model(release), threads=1, max_queue=1)
    in_flight = f"{PREFIX}invocations_in_flight"
    statuses: list[int] = []

    async def calls() -> httpx.Response:
        async with asgi_client(app, TOKEN) as client:

            async def one() -> None:
                r = await client.post("/invocations/m", json={"dataframe_records": [RECORD]})
                statuses.append(r.status_code)

            async with anyio.create_task_group() as group:
                group.start_soon(one)  # predicting (blocked)
                group.start_soon(one)  # waiting for the one thread
                with anyio.fail_after(10):
                    while server.metrics.registry.get_sample_value(in_flight) != 2:
                        await anyio.sleep(0.01)
                third = await client.post("/invocations/m", json={"dataframe_records": [RECORD]})
                release.set()
        return third

    third = anyio.run(calls)
    refused(third, 429, "TOO_MANY_REQUESTS", "1 requests are being scored and 1 wait")
    assert third.headers["Retry-After"] == "1"
    assert statuses == [200, 200]
    assert server.metrics.registry.get_sample_value(in_flight) == 0
    assert post(app, {"dataframe_records": [RECORD]}).status_code == 200


def test_a_body_that_trickles_in_times_out(tmp_path: Path) -> None:
    server, app = app_over(tmp_path, read_timeout=0.3)

    async def trickle() -> AsyncIterator[bytes]:
        yield b'{"dataframe_records": ['
        await anyio.sleep(30)
        yield b"]}"

    async def call() -> tuple[httpx.Response, float]:
        async with asgi_client(app, TOKEN) as client:
            start = time.monotonic()
            r = await client.post(
                "/invocations/m", content=trickle(), headers={"Content-Type": "application/json"}
            )
            return r, time.monotonic() - start

    r, took = anyio.run(call)
    refused(r, 408, "REQUEST_TIMEOUT", "did not arrive within 0.3 s")
    assert r.headers["Connection"] == "close"
    assert took < 5
    assert server.metrics.registry.get_sample_value(f"{PREFIX}invocations_in_flight") == 0


def test_a_500_carries_a_request_id_and_no_internals(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    server, app = app_over(tmp_path)
    internal = "KeyError /var/lib/secret-cache/v3 at 0x7f00deadbeef"

    def boom(name: str | None) -> Served:
        raise RuntimeError(internal)

    server.served_for = boom  # type: ignore[method-assign]
    r = post(app, {"dataframe_records": [RECORD]})
    assert r.status_code == 500
    body = r.json()
    assert set(body) == {"error_code", "message", "request_id"}
    assert body["error_code"] == "INTERNAL_ERROR"
    assert body["request_id"] == r.headers["X-Request-ID"]
    for leak in ("RuntimeError", "secret-cache", "0x7f00", "Traceback"):
        assert leak not in r.text, leak
    logged = [rec for rec in caplog.records if body["request_id"] in rec.getMessage()]
    assert logged, caplog.text  # the server log has the details under the request id
    assert logged[0].exc_info is not None
    assert internal in caplog.text


# -- the same attacks against the real server ---------------------------------------------------


@pytest.mark.integration
def test_limits_and_auth_hold_on_the_real_server(registry: Registry, tmp_path: Path) -> None:
    api = Api(registry.url, MODEL, tmp_path / "api.log", "--read-timeout", "0.5")
    try:
        api.wait(lambda: api.status()[0] == 200, "the champion served")
        rows = pd.DataFrame([{"a": 0.1, "b": -0.2, "n": 1.0, "c": "x"}])
        for method, path in (
            ("POST", f"/invocations/{MODEL}"),
            ("GET", f"/models/{MODEL}/golden"),
            ("GET", "/status"),
            ("GET", "/metrics"),
        ):
            r = api.anonymous.request(method, path, json={"dataframe_records": records(rows)})
            assert r.status_code == 401, (path, r.text)
            assert "Bearer" in r.headers["WWW-Authenticate"]
        r = api.anonymous.get("/health")
        assert (r.status_code, r.json()) == (200, {"status": "ok"})
        # a slow body: headers and part of it, then nothing
        with socket.create_connection(("127.0.0.1", api.port), timeout=10) as sock:
            sock.sendall(
                f"POST /invocations/{MODEL} HTTP/1.1\r\nHost: x\r\n"
                f"Authorization: Bearer {api.token}\r\nContent-Type: application/json\r\n"
                "Content-Length: 1000\r\n\r\n{".encode()
            )
            start = time.monotonic()
            chunks = []  # headers and body may come in separate segments: read to the close
            while chunk := sock.recv(4096):
                chunks.append(chunk)
            took = time.monotonic() - start
            answer = b"".join(chunks).decode()
        assert answer.startswith("HTTP/1.1 408"), answer
        assert "REQUEST_TIMEOUT" in answer
        assert took < 5
        r = api.http.post(
            f"/invocations/{MODEL}",
            content=nested(20_000),  # within --max-bytes, far beyond the recursion limit
            headers={"Content-Type": "application/json"},
        )
        assert (r.status_code, r.json()["error_code"]) == (400, "JSON_TOO_DEEP")
        good_request(api, registry, rows)
    finally:
        api.stop()
    log = api.log_path.read_text()
    assert api.token not in log
    assert "Traceback" not in log
