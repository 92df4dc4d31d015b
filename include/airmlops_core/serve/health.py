"""Outage detection for the serving side: probe the model API and MLflow, alert on changes.

`probe` sends each model's golden request (the exact body the API checked the served version
with), with the API's bearer token, and reads MLflow's /health. `transitions` compares with the
previous probe's state so that an outage sends one alert, not one per probe, and the recovery
sends one "recovered" message.
The state is a small JSON-able dict the caller stores between probes (an Airflow Variable).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import requests

from airmlops_core.serve.auth import bearer

TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Check:
    """One probed target: ok or not, and why."""

    target: str
    ok: bool
    detail: str


def _get(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(url, headers=headers, timeout=TIMEOUT_S)


def probe_mlflow(mlflow_url: str) -> Check:
    """MLflow's /health answers 200."""
    try:
        resp = _get(f"{mlflow_url.rstrip('/')}/health")
    except requests.RequestException as exc:
        return Check("mlflow", False, f"{mlflow_url} unreachable: {type(exc).__name__}")
    return Check("mlflow", resp.status_code == 200, f"{mlflow_url}/health -> {resp.status_code}")


def probe_model(api_url: str, model: str, token: str | None = None) -> Check:
    """The API answers the model's golden request with one prediction per row.

    `token` is the API's bearer token; without it (or with a wrong one) the check fails with
    a detail that says so.
    """
    base = api_url.rstrip("/")
    target = f"model-api/{model}"
    headers = bearer(token) if token else {}
    try:
        golden = _get(f"{base}/models/{model}/golden", headers)
        if golden.status_code == 401:
            return Check(
                target,
                False,
                "the API refused the probe's credentials (401): "
                + ("the token is wrong" if token else "the probe has no API token"),
            )
        if golden.status_code != 200:
            return Check(
                target, False, f"no version served ({golden.status_code}): {golden.text[:300]}"
            )
        body = golden.json()
        resp = requests.post(
            f"{base}/invocations/{model}", json=body, headers=headers, timeout=TIMEOUT_S
        )
    except requests.RequestException as exc:
        return Check(target, False, f"{api_url} unreachable: {type(exc).__name__}")
    except ValueError:
        return Check(target, False, "golden request is not JSON")
    if resp.status_code != 200:
        return Check(target, False, f"golden request -> {resp.status_code}: {resp.text[:300]}")
    version = resp.headers.get("X-Model-Version", "?")
    return Check(target, True, f"version {version} answered the golden request")


def probe(
    api_url: str, mlflow_url: str, models: list[str], *, token: str | None = None
) -> list[Check]:
    """Every target's check, MLflow first; `token` is the model API's bearer token."""
    return [probe_mlflow(mlflow_url), *(probe_model(api_url, m, token) for m in models)]


def transitions(
    previous: dict[str, Any], checks: list[Check], now: dt.datetime | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The new state and the messages to send: one per target that went down or came back.

    A target seen for the first time that is down alerts; one that is up says nothing.
    """
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    state = dict(previous)
    messages = []
    for check in checks:
        before: dict[str, Any] = previous.get(check.target) or {}
        was_ok = bool(before.get("ok", True))
        if check.ok and not was_ok:
            messages.append(
                f":large_green_circle: *{check.target}* recovered "
                f"(down since {before['since']}): {check.detail}"
            )
        elif not check.ok and was_ok:
            messages.append(f":red_circle: *{check.target}* is down: {check.detail}")
        changed = not before or was_ok != check.ok
        state[check.target] = {
            "ok": check.ok,
            "detail": check.detail,
            "since": when if changed else before["since"],
        }
    return state, messages
