"""Authentication of the model API, tried the way a caller without the token would.

In-process (the app over a hand-set server, httpx's ASGI transport): every route but /health
refuses a request without the token, with a wrong one and with one a single byte off, before
reading its body; /health says the status and nothing else. The token is read from the
environment or a file, never from the command line, and never shows in an answer or a log.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import httpx
import pytest

from airmlops_core.errors import CredentialError
from airmlops_core.serve import model_api
from airmlops_core.serve.app import build_app
from airmlops_core.serve.auth import (
    METRICS_TOKEN_ENV,
    MIN_TOKEN_CHARS,
    TOKEN_ENV,
    TOKEN_FILE_ENV,
    Tokens,
    generate_token,
)
from airmlops_core.serve.metrics import PREFIX
from airmlops_core.serve.server import ModelServer
from airmlops_core.serve.state import Served
from model_api_process import asgi_client

GOLDEN = '{"dataframe_records": [{"a": 1.0}]}'
ROUTES = [
    ("POST", "/invocations"),
    ("POST", "/invocations/m"),
    ("POST", "/models/m/invocations"),
    ("GET", "/models/m/golden"),
    ("GET", "/status"),
    ("GET", "/metrics"),
    ("GET", "/no/such/route"),  # 401 before 404: the routes cannot be mapped without a token
]


class Model:
    def predict(self, data: object) -> list[float]:
        return [0.5] * len(data)  # type: ignore[arg-type]


def one_byte_off(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


def serving(tmp_path: Path) -> ModelServer:
    server = ModelServer("http://127.0.0.1:9", ["m"], cache_dir=tmp_path)
    server.states["m"].served = Served("m", "7", "run-7", Model(), None, GOLDEN, 1.7e9, tmp_path)
    server.states["m"].champion = "7"
    return server


def test_every_route_but_health_refuses_a_caller_without_the_token(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = generate_token()
    server = serving(tmp_path)
    app = build_app(server, tokens=Tokens(token), start_poller=False)
    body_read: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        body_read.append(b"chunk")
        yield b'{"dataframe_records": [{"a": 1.0}]}'

    async def calls() -> None:
        for sent, why in (
            (None, "missing"),
            ("Bearer " + generate_token(), "invalid"),
            ("Bearer " + one_byte_off(token), "invalid"),
            ("Bearer " + token[:-1], "invalid"),  # a prefix
            ("Bearer " + token + "x", "invalid"),
            ("Basic " + token, "missing"),  # another scheme
            (token, "missing"),  # no scheme
            ("Bearer", "missing"),
        ):
            headers = {"Authorization": sent} if sent else {}
            async with asgi_client(app) as client:
                for method, path in ROUTES:
                    kwargs = {"content": body()} if method == "POST" else {}
                    r = await client.request(method, path, headers=headers, **kwargs)
                    where = (sent and sent[:12], method, path)
                    assert r.status_code == 401, where
                    assert r.json()["error_code"] == "UNAUTHORIZED", where
                    challenge = r.headers["WWW-Authenticate"]
                    assert challenge.startswith('Bearer realm="airmlops-model-api"'), where
                    assert ('error="invalid_token"' in challenge) == (why == "invalid"), where
                    assert token not in r.text
        assert body_read == []  # refused before a byte of any body was read
        async with asgi_client(app, token) as client:
            for method, path in ROUTES[1:-1]:
                kwargs = {"json": {"dataframe_records": [{"a": 1.0}]}} if method == "POST" else {}
                r = await client.request(method, path, **kwargs)
                assert r.status_code == 200, (method, path, r.text)
            r = await client.get("/models/m/golden", headers={"Authorization": f"bEaReR  {token}"})
            assert r.status_code == 200  # the scheme is case-insensitive (RFC 7235)

    anyio.run(calls)
    sample = server.metrics.registry.get_sample_value
    per_round = len(ROUTES)
    assert sample(f"{PREFIX}auth_failures_total", {"reason": "missing"}) == 4 * per_round
    assert sample(f"{PREFIX}auth_failures_total", {"reason": "invalid"}) == 4 * per_round
    assert token not in caplog.text


def test_health_is_open_and_says_the_status_only(tmp_path: Path) -> None:
    server = serving(tmp_path)
    server.states["m"].problem = "version 8 failed to load: /tmp/secret-cache/model.skops"
    app = build_app(server, tokens=Tokens(generate_token()), start_poller=False)

    async def call() -> httpx.Response:
        async with asgi_client(app) as client:
            return await client.get("/health")

    r = anyio.run(call)
    assert (r.status_code, r.json()) == (200, {"status": "degraded"})
    for internal in ("m", "7", "run-7", "secret-cache", "champion"):
        assert internal not in r.text.replace("degraded", ""), internal
    server.states["m"].served = None
    r = anyio.run(call)
    assert (r.status_code, r.json()) == (503, {"status": "unavailable"})


def test_the_metrics_token_opens_metrics_only(tmp_path: Path) -> None:
    api, scrape = generate_token(), generate_token()
    app = build_app(serving(tmp_path), tokens=Tokens(api, scrape), start_poller=False)

    async def calls() -> dict[tuple[str, str], int]:
        got = {}
        for who, token in (("scrape", scrape), ("api", api)):
            async with asgi_client(app, token) as client:
                for method, path in ROUTES[1:-1]:
                    r = await client.request(method, path, json={"dataframe_records": [{"a": 1}]})
                    got[who, path] = r.status_code
        return got

    got = anyio.run(calls)
    assert got["scrape", "/metrics"] == 200
    assert {p: s for (who, p), s in got.items() if who == "scrape" and p != "/metrics"} == {
        "/invocations/m": 401,
        "/models/m/invocations": 401,
        "/models/m/golden": 401,
        "/status": 401,
    }
    assert all(s == 200 for (who, _), s in got.items() if who == "api")


# -- where the token comes from ----------------------------------------------------------------


def test_tokens_come_from_the_environment_or_a_file(tmp_path: Path) -> None:
    token, other = generate_token(), generate_token()
    assert Tokens.from_env({TOKEN_ENV: token}).api == token
    path = tmp_path / "token"
    path.write_text(other + "\n")
    path.chmod(0o600)
    # a file wins over the value: a flag, else the file variable
    assert Tokens.from_env({TOKEN_ENV: token}, token_file=str(path)).api == other
    assert Tokens.from_env({TOKEN_ENV: token, TOKEN_FILE_ENV: str(path)}).api == other
    both = Tokens.from_env({TOKEN_ENV: token, METRICS_TOKEN_ENV: other})
    assert (both.api, both.metrics) == (token, other)
    assert token not in repr(both)
    assert other not in repr(both)


@pytest.mark.parametrize(
    ("env", "problem"),
    [
        ({}, f"no API token: set ${TOKEN_ENV}"),
        ({TOKEN_ENV: "short-secret"}, f"at least {MIN_TOKEN_CHARS} are needed"),
        ({TOKEN_ENV: "with space " + "x" * 30}, "printable ASCII without spaces"),
        ({TOKEN_FILE_ENV: "/no/such/token/file"}, "/no/such/token/file"),
    ],
    ids=["none", "short", "space", "no file"],
)
def test_a_missing_or_weak_token_stops_the_start(env: dict[str, str], problem: str) -> None:
    with pytest.raises(CredentialError) as info:
        Tokens.from_env(env)
    assert problem in str(info.value)
    for value in env.values():
        if "/" not in value:
            assert value not in str(info.value)  # names the variable, never the value


def test_the_same_token_for_metrics_and_api_is_refused() -> None:
    token = generate_token()
    with pytest.raises(CredentialError, match="metrics token equals the API token"):
        Tokens.from_env({TOKEN_ENV: token, METRICS_TOKEN_ENV: token})


def test_a_token_file_others_can_read_is_named_in_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = generate_token()
    path = tmp_path / "token"
    path.write_text(token)
    path.chmod(0o644)
    assert Tokens.from_env({}, token_file=str(path)).api == token
    assert f"{path} can be read by other users (mode 644)" in caplog.text
    assert token not in caplog.text


def test_the_cli_takes_no_token_value_and_refuses_to_start_without_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {"MLFLOW_TRACKING_URI": "http://m:1"}
    with pytest.raises(SystemExit):
        model_api.parse_args(["--models", "a"], env=env)
    assert TOKEN_ENV in capsys.readouterr().err
    secret = generate_token()
    for flag in ("--token", "--tok", "--api-token"):  # no value flag, no abbreviation of one
        with pytest.raises(SystemExit):
            model_api.parse_args(["--models", "a", flag, secret], env={**env, TOKEN_ENV: secret})
        assert "unrecognized arguments" in capsys.readouterr().err
    args = model_api.parse_args(["--models", "a"], env={**env, TOKEN_ENV: secret})
    assert args.tokens.api == secret
    assert secret not in repr(args)
    assert os.environ.get(TOKEN_ENV) != secret  # read from the given env, not set anywhere
