"""Micro-batching: merged requests answer exactly as one-by-one ones, and errors stay per request.

In-process with a stand-in model that records its predict calls (so merging is observed, not
assumed), and against a real API process over the real registry model, whose answers through a
merged predict are compared bit for bit with the answers to the same requests sent alone.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd
import pytest

from airmlops_core.serve import batching
from airmlops_core.serve.app import build_app
from airmlops_core.serve.auth import Tokens, generate_token
from airmlops_core.serve.metrics import PREFIX
from airmlops_core.serve.server import ModelServer
from airmlops_core.serve.state import Served
from model_api_process import FEATURES, MODEL, Api, Registry, asgi_client, frame, records

TOKEN = generate_token()


class Doubler:
    """A pyfunc stand-in: 2 * a per row; refuses a negative `a`; records each call's rows."""

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.lock = threading.Lock()

    def predict(self, data: Any) -> np.ndarray:
        with self.lock:
            self.calls.append(len(data))
        if (data["a"] < 0).any():
            raise ValueError("a must not be negative")
        return np.asarray(data["a"], dtype=float) * 2


def app_over(tmp_path: Path, model: Any, **options: Any) -> tuple[ModelServer, Any]:
    server = ModelServer("http://127.0.0.1:9", ["m"], cache_dir=tmp_path, **options)
    golden = json.dumps({"dataframe_records": [{"a": 1.0}]})
    server.states["m"].served = Served(
        "m", "1", "r", model, None, golden, 1.7e9, tmp_path, batchable=True
    )
    return server, build_app(server, tokens=Tokens(TOKEN), start_poller=False)


def concurrently(app: Any, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    """POST every body at once (one event loop, as in one worker); answers in order."""
    answers: list[httpx.Response | None] = [None] * len(bodies)

    async def calls() -> None:
        async with asgi_client(app, TOKEN) as client:

            async def one(i: int) -> None:
                answers[i] = await client.post("/invocations/m", json=bodies[i])

            async with anyio.create_task_group() as group:
                for i in range(len(bodies)):
                    group.start_soon(one, i)

    anyio.run(calls)
    assert all(a is not None for a in answers)
    return [a for a in answers if a is not None]


def test_concurrent_requests_merge_and_a_bad_one_fails_alone(tmp_path: Path) -> None:
    model = Doubler()
    server, app = app_over(tmp_path, model, batch_wait_ms=200, max_rows=3)
    good = [{"dataframe_records": [{"a": float(i)}, {"a": i + 0.5}]} for i in range(12)]
    bad_value = {"dataframe_records": [{"a": -1.0}]}  # parses, then the model refuses it
    too_many = {"dataframe_records": [{"a": 1.0}] * 4}  # over max_rows: refused before merging
    malformed = {"no_format_key": []}
    answers = concurrently(app, [*good[:6], bad_value, too_many, malformed, *good[6:]])
    ok = answers[:6] + answers[9:]
    for i, r in enumerate(ok):
        assert r.status_code == 200, r.text
        assert r.json() == {"predictions": [2.0 * i, 2.0 * i + 1.0]}
    assert answers[6].status_code == 400
    assert answers[6].json()["error_code"] == "PREDICT_FAILED"
    assert "a must not be negative" in answers[6].json()["message"]
    assert (answers[7].status_code, answers[7].json()["error_code"]) == (413, "TOO_MANY_ROWS")
    assert answers[8].status_code == 400
    # merged: 13 requests reached the model in fewer calls than requests, each padded
    assert max(model.calls) > batching.ALIGN
    assert all(n % batching.ALIGN == 0 for n in model.calls)
    batches = server.metrics.registry.get_sample_value(f"{PREFIX}batch_requests_count")
    assert batches is not None
    assert batches < 13


def test_max_batch_rows_splits_batches(tmp_path: Path) -> None:
    model = Doubler()
    _, app = app_over(tmp_path, model, batch_wait_ms=200, max_batch_rows=4)
    bodies = [{"dataframe_records": [{"a": float(i)}, {"a": 1.0}]} for i in range(10)]
    answers = concurrently(app, bodies)
    assert [r.json()["predictions"][0] for r in answers] == [2.0 * i for i in range(10)]
    assert max(model.calls) == batching.ALIGN  # 4 rows at most, padded to 8


def test_an_unbatchable_version_predicts_each_request_alone(tmp_path: Path) -> None:
    model = Doubler()
    server, app = app_over(tmp_path, model, batch_wait_ms=200)
    served = server.states["m"].served
    assert served is not None
    server.states["m"].served = Served(**{**served.__dict__, "batchable": False})
    answers = concurrently(app, [{"dataframe_records": [{"a": float(i)}]} for i in range(6)])
    assert [r.json()["predictions"] for r in answers] == [[2.0 * i] for i in range(6)]
    assert model.calls == [1] * 6


def test_row_stable_refuses_a_model_whose_answer_depends_on_the_batch(tmp_path: Path) -> None:
    class BatchMean:
        def predict(self, data: Any) -> np.ndarray:
            return np.full(len(data), float(data["a"].mean()))

    rows = pd.DataFrame({"a": [1.0, 2.0, 3.0]})
    flaky = Served("m", "1", "r", BatchMean(), None, "{}", 0.0, tmp_path)
    assert not batching.row_stable(flaky, rows)
    steady = Served("m", "1", "r", Doubler(), None, "{}", 0.0, tmp_path)
    assert batching.row_stable(steady, rows)


@pytest.mark.integration
def test_merged_answers_equal_single_request_answers_bit_for_bit(
    registry: Registry, tmp_path: Path
) -> None:
    """The real model of the registry: 48 requests with different rows (both JSON formats),
    merged vs alone."""
    registry.set_champion("1")
    api = Api(
        registry.url, MODEL, tmp_path / "api.log", "--batch-wait-ms", "50", "--max-queue", "64"
    )
    try:
        api.wait_served("1")
        assert api.status()[1]["models"][MODEL]["batched"] is True
        data = frame(7, 48 * 3)[FEATURES]
        bodies: list[dict[str, Any]] = []
        for i in range(48):
            part = data.iloc[3 * i : 3 * i + 3]
            split = {"columns": FEATURES, "data": [list(r) for r in part.itertuples(index=False)]}
            bodies.append(
                {"dataframe_split": split} if i % 2 else {"dataframe_records": records(part)}
            )
        alone = [api.http.post(f"/invocations/{MODEL}", json=b) for b in bodies]
        before = batch_count(api)
        barrier = threading.Barrier(48)

        def send(body: dict[str, Any]) -> httpx.Response:
            with httpx.Client(base_url=api.base, headers=api.http.headers, timeout=60) as c:
                barrier.wait()
                return c.post(f"/invocations/{MODEL}", json=body)

        with ThreadPoolExecutor(48) as pool:
            together = list(pool.map(send, bodies))
        merged_calls = batch_count(api) - before
        for one, other in zip(alone, together, strict=True):
            assert (one.status_code, other.status_code) == (200, 200), other.text
            assert other.text == one.text  # the same JSON, every digit
        assert merged_calls < 48, "no request was merged"
        want = registry.pipelines["1"].predict_proba(data)
        got = np.concatenate([np.asarray(r.json()["predictions"]) for r in together])
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)
    finally:
        api.stop()


def batch_count(api: Api) -> float:
    for line in api.http.get("/metrics").text.splitlines():
        if line.startswith(f"{PREFIX}batch_requests_count"):
            return float(line.split()[-1])
    raise AssertionError("no batch metric")
