"""The model API's HTTP app: routes, answers, refusals and the metrics they count.

The tests marked integration run the API as a subprocess against a real MLflow server.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd
import pytest

from airmlops_core.serve.app import build_app
from airmlops_core.serve.auth import Tokens, bearer, generate_token
from airmlops_core.serve.metrics import PREFIX
from airmlops_core.serve.server import ModelServer
from airmlops_core.serve.state import Served
from model_api_process import (
    FEATURES,
    MAX_BYTES,
    MODEL,
    Api,
    Registry,
    assert_predictions,
    expected,
    good_request,
    records,
)


class Model:
    """A pyfunc stand-in: one probability per input row."""

    def predict(self, data: Any) -> list[float]:
        return [0.5] * len(data)


def test_routes_answers_and_counts_in_process(tmp_path: Path) -> None:
    """The app over a server whose state is set by hand: no poller, no MLflow, no uvicorn."""
    server = ModelServer("http://127.0.0.1:9", ["m", "other"], max_bytes=200, cache_dir=tmp_path)
    golden = '{"dataframe_records": [{"a": 1.0}]}'
    server.states["m"].served = Served("m", "7", "r", Model(), None, golden, 1.7e9, tmp_path)
    body = {"dataframe_records": [{"a": 1.0}, {"a": 2.0}]}
    token = generate_token()
    transport = httpx.ASGITransport(app=build_app(server, tokens=Tokens(token), start_poller=False))

    async def requests() -> str:
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", headers=bearer(token)
        ) as client:
            for path in ("/invocations/m", "/models/m/invocations"):
                r = await client.post(path, json=body)
                assert (r.status_code, r.json()) == (200, {"predictions": [0.5, 0.5]})
                assert (r.headers["X-Model-Name"], r.headers["X-Model-Version"]) == ("m", "7")
            r = await client.post("/invocations", json=body)
            assert (r.status_code, r.json()["error_code"]) == (400, "MODEL_NOT_SPECIFIED")
            r = await client.post("/invocations/other", json=body)
            assert r.status_code == 503
            assert r.json() == {
                "error_code": "NO_MODEL_LOADED",
                "message": "model 'other' has no version loaded: loading",
                "model": "other",
            }
            r = await client.post("/invocations/m", content=b"x" * 201)
            assert (r.status_code, r.json()["error_code"]) == (413, "PAYLOAD_TOO_LARGE")
            assert (await client.get("/invocations/m")).status_code == 405
            r = await client.get("/models/m/golden")
            assert (r.text, r.headers["X-Model-Version"]) == (golden, "7")
            assert (await client.get("/models/other/golden")).status_code == 503
            r = await client.get("/health")
            assert (r.status_code, r.json()) == (503, {"status": "unavailable"})
            r = await client.get("/status")
            assert r.status_code == 503
            assert r.json()["models"]["m"]["served_version"] == "7"
            return (await client.get("/metrics")).text

    metrics = anyio.run(requests)
    sample = server.metrics.registry.get_sample_value
    assert sample(f"{PREFIX}requests_total", {"model": "m", "status": "200"}) == 2.0
    assert sample(f"{PREFIX}requests_total", {"model": "_unknown", "status": "400"}) == 1.0
    reason = {"model": "m", "reason": "payload_too_large"}
    assert sample(f"{PREFIX}request_errors_total", reason) == 1.0
    assert sample(f"{PREFIX}predicted_rows_total", {"model": "m"}) == 4.0
    assert f'{PREFIX}requests_total{{model="other",status="503"}} 1.0' in metrics


@pytest.mark.integration
def test_serves_the_champion_as_mlflow_scores_it(
    api: Api, registry: Registry, rows: pd.DataFrame
) -> None:
    registry.set_champion("1")
    api.wait_served("1")
    want = expected(registry, "1", rows)
    split = {"columns": list(rows.columns), "data": [list(r) for r in rows.itertuples(index=False)]}
    columns = {c: rows[c].tolist() for c in rows.columns}
    bodies = {
        "dataframe_split": split,
        "dataframe_records": records(rows),
        "inputs": columns,
        "instances": records(rows),
    }
    for path in (f"/invocations/{MODEL}", f"/models/{MODEL}/invocations", "/invocations"):
        for key, payload in bodies.items():
            r = api.http.post(path, json={key: payload})
            assert_predictions(r, want)
            assert (r.headers["X-Model-Name"], r.headers["X-Model-Version"]) == (MODEL, "1"), key
    csv = api.http.post(
        f"/invocations/{MODEL}",
        content=rows.to_csv(index=False),
        headers={"Content-Type": "text/csv"},
    )
    np.testing.assert_allclose(csv.json()["predictions"], want, rtol=1e-9)
    status, body = api.status()
    assert status == 200
    assert body["status"] == "ok"
    m = body["models"][MODEL]
    assert (m["served_version"], m["champion_version"], m["problem"]) == ("1", "1", None)
    golden = api.http.get(f"/models/{MODEL}/golden")
    assert golden.status_code == 200
    assert set(json.loads(golden.text)["dataframe_split"]["columns"]) == set(FEATURES)


# -- bad requests ----------------------------------------------------------------------------


def _bad_cases(rows: pd.DataFrame) -> list[tuple[str, dict[str, Any], int, str, str]]:
    good = records(rows)
    big = json.dumps({"dataframe_records": good * (MAX_BYTES // len(json.dumps(good)) + 2)})
    assert len(big) > MAX_BYTES

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096].encode()

    json_ct = {"Content-Type": "application/json"}
    return [
        (
            "malformed JSON",
            {"content": b'{"dataframe_records": [', "headers": json_ct},
            400,
            "MALFORMED_JSON",
            "line 1 column",
        ),
        ("not an object", {"json": [1, 2]}, 400, "BAD_REQUEST", "JSON list"),
        ("no format key", {"json": {"rows": good}}, 400, "BAD_REQUEST", "found none"),
        (
            "two format keys",
            {"json": {"dataframe_records": good, "inputs": good}},
            400,
            "BAD_REQUEST",
            "found several",
        ),
        (
            "empty body",
            {"content": b"", "headers": json_ct},
            400,
            "EMPTY_PAYLOAD",
            "empty request body",
        ),
        ("no records", {"json": {"dataframe_records": []}}, 400, "EMPTY_PAYLOAD", "no rows"),
        (
            "no split rows",
            {"json": {"dataframe_split": {"columns": FEATURES, "data": []}}},
            400,
            "EMPTY_PAYLOAD",
            "no rows",
        ),
        (
            "missing column",
            {
                "json": {
                    "dataframe_records": [{k: v for k, v in r.items() if k != "c"} for r in good]
                }
            },
            400,
            "SCHEMA_MISMATCH",
            "missing inputs ['c']",
        ),
        (
            "wrong type",
            {"json": {"dataframe_records": [{**good[0], "a": "tall"}]}},
            400,
            "SCHEMA_MISMATCH",
            "column a",
        ),
        (
            "unsupported media type",
            {"content": b"a,b", "headers": {"Content-Type": "application/vnd.apache.parquet"}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "parquet",
        ),
        (
            "oversized",
            {"content": big.encode(), "headers": json_ct},
            413,
            "PAYLOAD_TOO_LARGE",
            f"limit of {MAX_BYTES} bytes",
        ),
        (
            "oversized, chunked",
            {"content": chunks(), "headers": json_ct},
            413,
            "PAYLOAD_TOO_LARGE",
            f"limit of {MAX_BYTES} bytes",
        ),
    ]


@pytest.mark.integration
def test_bad_requests_get_4xx_naming_the_problem(
    api: Api, registry: Registry, rows: pd.DataFrame
) -> None:
    for what, kwargs, status, code, fragment in _bad_cases(rows):
        r = api.http.post(f"/invocations/{MODEL}", **kwargs)
        assert r.status_code == status, (what, r.text)
        body = r.json()
        assert body["error_code"] == code, (what, body)
        assert fragment in body["message"], (what, body)
        assert "Traceback" not in r.text
        good_request(api, registry, rows)  # the server keeps serving
    r = api.http.post("/invocations/no_such_model", json={"dataframe_records": records(rows)})
    assert (r.status_code, r.json()["error_code"]) == (404, "UNKNOWN_MODEL")
    assert "'no_such_model'" in r.json()["message"]
    assert MODEL in r.json()["message"]
    assert api.http.get(f"/invocations/{MODEL}").status_code == 405
    good_request(api, registry, rows)
    assert api.proc.poll() is None


@pytest.mark.integration
def test_metrics_count_the_requests(api: Api, registry: Registry, rows: pd.DataFrame) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def snapshot() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = api.http.get("/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }

    def delta(after: dict, before: dict, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    before = snapshot()
    for _ in range(3):
        good_request(api, registry, rows)
    api.http.post(
        f"/invocations/{MODEL}", content=b"{", headers={"Content-Type": "application/json"}
    )
    api.http.post(f"/invocations/{MODEL}", json={"dataframe_records": []})
    api.http.post("/invocations/nope", json={"dataframe_records": records(rows)})
    after = snapshot()
    p = "airmlops_model_api_"
    assert delta(after, before, f"{p}requests_total", model=MODEL, status="200") == 3
    assert delta(after, before, f"{p}requests_total", model=MODEL, status="400") == 2
    assert delta(after, before, f"{p}requests_total", model="_unknown", status="404") == 1
    assert (
        delta(after, before, f"{p}request_errors_total", model=MODEL, reason="malformed_json") == 1
    )
    assert (
        delta(after, before, f"{p}request_errors_total", model=MODEL, reason="empty_payload") == 1
    )
    assert delta(after, before, f"{p}request_duration_seconds_count", model=MODEL) == 5
    assert delta(after, before, f"{p}request_duration_seconds_bucket", model=MODEL, le="+Inf") == 5
    assert delta(after, before, f"{p}predicted_rows_total", model=MODEL) == 3 * len(rows)
    served = api.status()[1]["models"][MODEL]["served_version"]
    assert after[(f"{p}served_version", (("model", MODEL),))] == float(served)
    assert after[(f"{p}model_loaded", (("model", MODEL),))] == 1.0
    info = [k for k in after if k[0] == f"{p}model_info"]
    assert len(info) == 1
    assert ("version", served) in info[0][1]
    assert after[(f"{p}last_reload_timestamp_seconds", (("model", MODEL),))] > 1.7e9
