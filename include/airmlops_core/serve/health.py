"""Outage detection for the serving side: probe the model API and MLflow, alert on changes.

`probe` reads the model API's /status with its bearer token (when it started, which version
each model serves), asks the registry which models have a champion, sends the golden request
(the exact body the API checked the served version with) of each served model and reads
MLflow's /health. `judge` turns that into one `Check` per target, without network:

- a model without a champion is `idle`: nothing to serve is not an outage;
- a model the API does not serve yet is `starting` while the API is younger than the grace
  period (it loads every champion after a (re)start) or the champion is newer than it (the
  API follows the alias every few seconds); after that it is `down`;
- an API that does not answer, or refuses the probe's token, is `down` for every model with a
  champion.

`transitions` compares with the previous probe's state so that an outage sends one alert, not
one per probe, and the recovery sends one "recovered" message; `starting` and `idle` send
nothing and keep the last up/down state. The state is a small JSON-able dict the caller
stores between probes (an Airflow Variable).
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import requests

from airmlops_core.serve.auth import bearer
from airmlops_core.tracking import registry

TIMEOUT_S = 10.0
GRACE_S = 300.0  # one probe interval: the API loads its champions within it after a start
CONNECT_RETRY_S = (5.0, 15.0)  # an API that is still binding its port after a restart

Status = Literal["up", "down", "starting", "idle"]


@dataclass(frozen=True)
class Check:
    """One probed target: up, down, starting (within its grace period) or idle (no champion)."""

    target: str
    status: Status
    detail: str
    champion: str | None = None

    @property
    def ok(self) -> bool:
        """Not down (starting and idle targets are no outage)."""
        return self.status != "down"


@dataclass(frozen=True)
class ApiHealth:
    """What the model API's /status said, or why it said nothing (`reachable` False)."""

    reachable: bool
    detail: str
    uptime_s: float | None = None
    served: Mapping[str, str | None] = field(default_factory=dict)  # model -> served version
    champions: Mapping[str, str | None] = field(default_factory=dict)  # at the API's last poll


@dataclass(frozen=True)
class Observation:
    """Everything one probe saw. `champions` holds the registry's answer per model (a model
    missing from it: the registry could not say); `golden` the golden request of each model
    the API serves."""

    mlflow: Check
    api: ApiHealth
    champions: Mapping[str, str | None]
    golden: Mapping[str, Check]


def _get(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    return requests.get(url, headers=headers, timeout=TIMEOUT_S)


def probe_mlflow(mlflow_url: str) -> Check:
    """MLflow's /health answers 200."""
    try:
        resp = _get(f"{mlflow_url.rstrip('/')}/health")
    except requests.RequestException as exc:
        return Check("mlflow", "down", f"{mlflow_url} unreachable: {type(exc).__name__}")
    status: Status = "up" if resp.status_code == 200 else "down"
    return Check("mlflow", status, f"{mlflow_url}/health -> {resp.status_code}")


def api_health(
    api_url: str, token: str | None = None, retry_s: Sequence[float] = CONNECT_RETRY_S
) -> ApiHealth:
    """The API's /status, read with `token` (its status code aside: 503 still carries the
    per-model state).

    A connection that fails is retried after each delay of `retry_s`: a restarted API binds
    its port a few seconds after its process starts.
    """
    url = f"{api_url.rstrip('/')}/status"
    headers = bearer(token) if token else {}
    for delay in (*retry_s, None):
        try:
            resp = _get(url, headers)
            break
        except requests.RequestException as exc:
            if delay is None:
                return ApiHealth(False, f"{api_url} unreachable: {type(exc).__name__}")
            time.sleep(delay)
    if resp.status_code == 401:
        return ApiHealth(False, _refused(token))
    try:
        body = resp.json()
    except ValueError:
        return ApiHealth(False, f"{url} did not answer JSON")
    models = body.get("models") if isinstance(body, dict) else None
    if not isinstance(models, dict):
        return ApiHealth(False, f"{url} answered no per-model state")
    uptime = body.get("uptime_s")
    return ApiHealth(
        True,
        f"{url} answered",
        uptime_s=float(uptime) if isinstance(uptime, int | float) else None,
        served={m: (v or {}).get("served_version") for m, v in models.items()},
        champions={m: (v or {}).get("champion_version") for m, v in models.items()},
    )


def _refused(token: str | None) -> str:
    return "the API refused the probe's credentials (401): " + (
        "the token is wrong" if token else "the probe has no API token"
    )


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
            return Check(target, "down", _refused(token))
        if golden.status_code != 200:
            return Check(
                target, "down", f"no version served ({golden.status_code}): {golden.text[:300]}"
            )
        body = golden.json()
        resp = requests.post(
            f"{base}/invocations/{model}", json=body, headers=headers, timeout=TIMEOUT_S
        )
    except requests.RequestException as exc:
        return Check(target, "down", f"{api_url} unreachable: {type(exc).__name__}")
    except ValueError:
        return Check(target, "down", "golden request is not JSON")
    if resp.status_code != 200:
        return Check(target, "down", f"golden request -> {resp.status_code}: {resp.text[:300]}")
    version = resp.headers.get("X-Model-Version", "?")
    return Check(target, "up", f"version {version} answered the golden request")


def registry_champions(mlflow_url: str, models: Sequence[str]) -> dict[str, str | None]:
    """Each model's `champion` version (None: no champion); a model the registry could not
    answer for is left out."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_url, registry_uri=mlflow_url)
    found: dict[str, str | None] = {}
    for model in models:
        try:
            found[model] = registry.alias_version(client, model, registry.CHAMPION)
        except Exception:  # the registry's outage is MLflow's check; the API's view decides
            continue
    return found


def probe(
    api_url: str,
    mlflow_url: str,
    models: Sequence[str],
    *,
    token: str | None = None,
    retry_s: Sequence[float] = CONNECT_RETRY_S,
) -> Observation:
    """What the API, the registry and MLflow say now (network only; `judge` decides);
    `token` is the model API's bearer token."""
    mlflow = probe_mlflow(mlflow_url)
    champions = registry_champions(mlflow_url, models) if mlflow.ok else {}
    api = api_health(api_url, token, retry_s)
    golden = {m: probe_model(api_url, m, token) for m in models if api.served.get(m)}
    return Observation(mlflow=mlflow, api=api, champions=champions, golden=golden)


def _age_s(since: str | None, now: dt.datetime) -> float:
    if not since:
        return 0.0
    return (now - dt.datetime.fromisoformat(since)).total_seconds()


def judge_model(
    model: str,
    obs: Observation,
    before: Mapping[str, Any],
    now: dt.datetime,
    grace_s: float = GRACE_S,
) -> Check:
    """One model's check from what the probe saw and what the last probe stored (`before`).

    The champion is the registry's; when the registry could not answer, the one the API saw
    last, else the one the last probe recorded.
    """
    target = f"model-api/{model}"
    api = obs.api
    if model in obs.champions:
        champion = obs.champions[model]
    elif api.reachable and model in api.champions:
        champion = api.champions[model]
    else:
        champion = before.get("champion")
    if champion is None:
        return Check(target, "idle", "no champion yet: nothing to serve until a promotion")
    if not api.reachable:
        return Check(target, "down", api.detail, champion)
    if model in obs.golden:
        golden = obs.golden[model]
        return Check(target, golden.status, golden.detail, champion)
    seen = before.get("champion_seen") if before.get("champion") == champion else None
    champion_age = _age_s(seen, now)
    uptime = api.uptime_s if api.uptime_s is not None else float("inf")
    why = (
        "the model API does not serve this model (started before its spec existed? restart it)"
        if model not in api.served
        else f"champion v{champion} not loaded by the model API"
    )
    if uptime < grace_s:
        return Check(target, "starting", f"{why} yet: the API started {uptime:.0f}s ago", champion)
    if champion_age < grace_s:
        return Check(target, "starting", f"{why} yet: a new champion", champion)
    up_for = "an unknown time" if api.uptime_s is None else f"{api.uptime_s:.0f}s"
    return Check(target, "down", f"{why} (API up {up_for}, grace {grace_s:.0f}s)", champion)


def judge(
    previous: Mapping[str, Any],
    obs: Observation,
    models: Sequence[str],
    now: dt.datetime,
    grace_s: float = GRACE_S,
) -> list[Check]:
    """Every target's check, MLflow first (`previous`: the targets' state of the last probe)."""
    return [
        obs.mlflow,
        *(judge_model(m, obs, previous.get(f"model-api/{m}") or {}, now, grace_s) for m in models),
    ]


def transitions(
    previous: Mapping[str, Any], checks: Sequence[Check], now: dt.datetime | None = None
) -> tuple[dict[str, Any], list[str]]:
    """The new state and the messages to send: one per target that went down or came back.

    A target seen for the first time that is down alerts; one that is up says nothing.
    `starting` and `idle` targets send nothing and keep their last up/down state, so a model
    that was down and is loading again is announced once it answers.
    """
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    state = dict(previous)
    messages = []
    for check in checks:
        before: dict[str, Any] = dict(previous.get(check.target) or {})
        was_ok = bool(before.get("ok", True))
        entry = {**before, "status": check.status, "detail": check.detail}
        if check.champion != before.get("champion"):  # when this champion was first seen
            entry["champion"], entry["champion_seen"] = check.champion, when
        if check.status in ("up", "down"):
            if check.ok and not was_ok:
                messages.append(
                    f":large_green_circle: *{check.target}* recovered "
                    f"(down since {before.get('since', '?')}): {check.detail}"
                )
            elif not check.ok and was_ok:
                messages.append(f":red_circle: *{check.target}* is down: {check.detail}")
            changed = "ok" not in before or was_ok != check.ok
            entry["ok"] = check.ok
            entry["since"] = when if changed else before["since"]
        state[check.target] = entry
    return state, messages


def decide(
    previous: Mapping[str, Any],
    obs: Observation,
    models: Sequence[str],
    now: dt.datetime,
    grace_s: float = GRACE_S,
) -> tuple[dict[str, Any], list[str], list[Check]]:
    """(new state, messages to send, checks) of one probe: `judge`, then `transitions`."""
    checks = judge(previous, obs, models, now, grace_s)
    state, messages = transitions(previous, checks, now)
    return state, messages, checks
