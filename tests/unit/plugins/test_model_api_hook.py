"""The health probe's credentials: connection `model_api_default` -> URL and bearer token.

A real model API app (over a hand-set server, no MLflow) runs under uvicorn on a free port; the
connection comes from an AIRFLOW_CONN_* variable, as a worker resolves it. The probe passes
with the connection's password, and fails with a detail that says why without it or with a
wrong one.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn

from airmlops.hooks.model_api_hook import ModelApiHook
from airmlops_core.serve import health
from airmlops_core.serve.app import build_app
from airmlops_core.serve.auth import Tokens, generate_token
from airmlops_core.serve.server import ModelServer
from airmlops_core.serve.state import Served
from airmlops_dev.ports import free_ports

TOKEN = generate_token()
GOLDEN = '{"dataframe_records": [{"a": 1.0}, {"a": 2.0}]}'


class Model:
    def predict(self, data: object) -> list[float]:
        return [0.5] * len(data)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("api")
    server = ModelServer("http://127.0.0.1:9", ["m"], cache_dir=tmp)
    server.states["m"].served = Served("m", "3", "r", Model(), None, GOLDEN, 1.7e9, Path(tmp))
    (port,) = free_ports(1)
    app = build_app(server, tokens=Tokens(TOKEN), start_poller=False)
    uv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.05)
    try:
        yield url
    finally:
        uv.should_exit = True
        thread.join(timeout=10)


def connect(monkeypatch: pytest.MonkeyPatch, url: str, password: str | None) -> ModelApiHook:
    conn: dict[str, str] = {"conn_type": "http", "host": url}
    if password is not None:
        conn["password"] = password
    monkeypatch.setenv("AIRFLOW_CONN_MODEL_API_DEFAULT", json.dumps(conn))
    return ModelApiHook()


def test_the_probe_passes_with_the_connection_password(
    api_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    hook = connect(monkeypatch, api_url, TOKEN)
    assert (hook.url, hook.token) == (api_url, TOKEN)
    check = health.probe_model(hook.url or "", "m", hook.token)
    assert check == health.Check("model-api/m", "up", "version 3 answered the golden request")


@pytest.mark.parametrize(
    ("password", "detail"),
    [(None, "the probe has no API token"), (generate_token(), "the token is wrong")],
    ids=["no password", "wrong password"],
)
def test_the_probe_says_why_the_api_refused_it(
    api_url: str, monkeypatch: pytest.MonkeyPatch, password: str | None, detail: str
) -> None:
    hook = connect(monkeypatch, api_url, password)
    check = health.probe_model(hook.url or "", "m", hook.token)
    assert not check.ok
    assert check.detail == f"the API refused the probe's credentials (401): {detail}"
    assert TOKEN not in check.detail


def test_a_bare_host_and_port_make_the_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "AIRFLOW_CONN_MODEL_API_DEFAULT",
        json.dumps({"conn_type": "http", "host": "model-api", "port": 5001, "password": TOKEN}),
    )
    assert ModelApiHook().url == "http://model-api:5001"
