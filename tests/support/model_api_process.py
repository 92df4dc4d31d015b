"""The model API as a real subprocess, and the request helpers the serve tests share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd

from airmlops_core.serve.auth import TOKEN_ENV, bearer, generate_token
from airmlops_dev.ports import free_ports

MODEL = "api_clf"
GHOST = "api_ghost"  # no champion until a test gives it one
POLL = 0.3
MAX_BYTES = 64 * 1024
FEATURES = ["a", "b", "n", "c"]


def frame(seed: int, n: int) -> pd.DataFrame:
    """A small binary-classification frame over FEATURES with target `y`."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "n": rng.integers(0, 5, n).astype(float),
            "c": rng.choice(["x", "y", "z"], n),
        }
    )
    df["y"] = ((df.a + (df.c == "x") - 0.3 * df.n + rng.normal(0, 0.5, n)) > 0).astype(int)
    return df


@dataclass
class Registry:
    """Versions of MODEL: 1 and 2 good, 3 unloadable artifact, 4 fails its golden request."""

    url: str
    pipelines: dict[str, Any]  # version -> the fitted pipeline, for independent predictions
    v1_uri: str

    def set_champion(self, version: str, name: str = MODEL) -> None:
        from mlflow import MlflowClient

        MlflowClient(self.url).set_registered_model_alias(name, "champion", version)


class Api:
    """One model API subprocess on a free loopback port, with its own token.

    The token reaches the API through its environment, as in the stack; `http` sends it,
    `anonymous` does not. One worker process unless `extra` says `--workers`: the tests that
    watch one version replace another read one worker's /status.
    """

    def __init__(
        self,
        tracking_uri: str,
        models: str,
        log_path: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ):
        self.token = generate_token()
        (self.port,) = free_ports(1)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("ab")
        argv = [
            sys.executable,
            "-m",
            "airmlops_core.serve.model_api",
            "--port",
            str(self.port),
            "--tracking-uri",
            tracking_uri,
            "--models",
            models,
            "--poll-interval",
            str(POLL),
            "--max-bytes",
            str(MAX_BYTES),
            *([] if "--workers" in extra else ["--workers", "1"]),
            *extra,
        ]
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, TOKEN_ENV: self.token, **(env or {})},
        )
        self.http = httpx.Client(base_url=self.base, timeout=30, headers=bearer(self.token))
        self.anonymous = httpx.Client(base_url=self.base, timeout=30)

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"API exited:\n{self.log_tail()}"
            try:
                if check():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log_tail()}")

    def status(self) -> tuple[int, dict[str, Any]]:
        """(status code, body) of GET /status: every model's served and champion version."""
        r = self.http.get("/status")
        return r.status_code, r.json()

    def served_versions(self, model: str = MODEL) -> list[str | None]:
        """The version of `model` each worker serves (one entry with one worker)."""
        body = self.status()[1]
        if "workers" not in body:
            return [body["models"][model]["served_version"]]
        return [w["models"][model]["served_version"] for w in body["workers"].values()]

    def wait_served(self, version: str, model: str = MODEL, workers: int = 1) -> None:
        """Until `workers` workers all serve `version`."""

        def served() -> bool:
            versions = self.served_versions(model)
            return len(versions) == workers and set(versions) == {version}

        self.wait(served, f"{model} v{version} served by {workers} worker(s)")

    def assert_clean_exit(self) -> None:
        """SIGTERM ran uvicorn's graceful shutdown (it re-raises the signal once done)."""
        assert self.proc.returncode in (0, -signal.SIGTERM), self.log_tail()
        assert "Application shutdown complete" in self.log_tail(), self.log_tail()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.http.close()
        self.anonymous.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


def asgi_client(app: Any, token: str | None = None) -> httpx.AsyncClient:
    """An HTTP client of the app in this process (no uvicorn), sending `token` when given."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://api",
        headers=bearer(token) if token else None,
    )


def records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [dict(zip(rows.columns, row, strict=True)) for row in rows.itertuples(index=False)]


def expected(registry: Registry, version: str, rows: pd.DataFrame) -> np.ndarray:
    return registry.pipelines[version].predict_proba(rows)


def assert_predictions(response: httpx.Response, want: np.ndarray) -> None:
    assert response.status_code == 200, response.text
    got = np.asarray(response.json()["predictions"])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def good_request(api: Api, registry: Registry, rows: pd.DataFrame) -> None:
    r = api.http.post(f"/invocations/{MODEL}", json={"dataframe_records": records(rows)})
    assert_predictions(r, expected(registry, r.headers["X-Model-Version"], rows))
