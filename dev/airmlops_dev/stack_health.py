"""The local stack's health: each component as its own endpoint reports it, status, waiting,
and what a component being down means (`down_lines`: the scheduler's last heartbeat, ...)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import time
import urllib.error
import urllib.request
from typing import Any

from airmlops_dev import process_group
from airmlops_dev.stack_config import AIRFLOW_JOBS, NO_DB, ComponentStatus, StackConfig, StackError
from airmlops_dev.stack_pids import is_ours, read_pid

log = logging.getLogger(__name__)
_LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes] | None:
    """(status, body) of a GET without proxies, or None when nothing answers."""
    try:
        with _LOCAL_HTTP.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError):
        return None


def _health_urls(cfg: StackConfig) -> dict[str, str]:
    """The endpoint that tells each component's health."""
    af = f"{cfg.airflow_url}/api/v2/monitor/health"
    return {
        "receiver": f"{cfg.receiver_url}/health",
        "mlflow": f"{cfg.mlflow_url}/health",
        # /health is 503 until every model has a champion: the process is up when it answers
        "model-api": f"{cfg.model_api_url}/health",
        "api-server": af,
        "scheduler": af,
        "dag-processor": af,
        "triggerer": af,
    }


def airflow_health(cfg: StackConfig) -> dict[str, Any]:
    """Airflow's /api/v2/monitor/health (metadata DB, scheduler, dag processor and triggerer
    status with their latest heartbeats); empty when the API server does not answer."""
    got = _http_get(_health_urls(cfg)["api-server"])
    if not got or got[0] != 200:
        return {}
    try:
        body = json.loads(got[1])
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _health(cfg: StackConfig) -> dict[str, bool]:
    """Health of every component as its own endpoint reports it (one request per server)."""
    urls = _health_urls(cfg)
    result = {}
    for name in NO_DB:
        got = _http_get(urls[name])
        up = (200, 503) if name == "model-api" else (200,)
        result[name] = bool(got and got[0] in up)
    body = airflow_health(cfg)
    result["api-server"] = body.get("metadatabase", {}).get("status") == "healthy"
    for name, key in AIRFLOW_JOBS.items():
        result[name] = (body.get(key) or {}).get("status") == "healthy"
    for worker in cfg.workers:
        result[worker] = _worker_ready(cfg, worker)
    return result


def _worker_ready(cfg: StackConfig, worker: str) -> bool:
    """Whether the worker's current start logged Celery's ``celery@<hostname> ready.``

    A worker has no health endpoint; ``celery inspect ping`` costs a Python start per check.
    """
    try:
        with cfg.log_file(worker).open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 8 * 1024 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return False
    current = text.rsplit(f" starting {worker}\n", 1)[-1]
    return f"celery@{cfg.worker_hostname(worker)} ready." in current


def status(cfg: StackConfig) -> list[ComponentStatus]:
    """The state of every component.

    A component is healthy only when its PID-file process is alive and its health endpoint says
    so (Airflow's health reflects recent heartbeats, which outlive a killed process briefly).

    Args:
        cfg: The stack configuration.

    Returns:
        One row per component, in start order.
    """
    health = _health(cfg)
    urls = cfg.urls
    rows = []
    for name in cfg.components:
        pid = read_pid(cfg.pid_file(name))
        alive = bool(pid and is_ours(pid, cfg))
        rows.append(
            ComponentStatus(name, pid, alive, urls.get(name), alive and health.get(name, False))
        )
    return rows


def format_status(rows: list[ComponentStatus]) -> str:
    """Render ``status()`` rows as a fixed-width table."""
    header = ("component", "pid", "alive", "healthy", "url")
    yes_no = {True: "yes", False: "no"}
    table = [header] + [
        (r.component, str(r.pid or "-"), yes_no[r.alive], yes_no[r.healthy], r.url or "-")
        for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(header))]
    return "\n".join(
        "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in table
    )


# What stops working while a component is down.
CONSEQUENCES = {
    "receiver": "Slack messages of the stack are not recorded",
    "mlflow": "no tracking or registry: training, the gate and the model API's polls fail",
    "model-api": "no model is served",
    "api-server": "the Airflow UI and REST API do not answer",
    "scheduler": "nothing is scheduled or run, so no alert can be sent "
    "(the health probe runs inside Airflow)",
    "dag-processor": "DAG files and spec changes are not parsed",
    "triggerer": "deferred tasks and deadline alerts do not resume",
}


def _ago(stamp: str, now: dt.datetime) -> str:
    try:
        when = dt.datetime.fromisoformat(stamp)
    except ValueError:
        return stamp
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = max(0, int((now - when).total_seconds()))
    minutes, sec = divmod(seconds, 60)
    return (f"{minutes} min {sec} s" if minutes else f"{sec} s") + f" ago ({stamp})"


def _airflow_job(name: str, alive: bool, airflow: dict[str, Any], now: dt.datetime) -> str:
    """Why an Airflow job (scheduler, dag processor, triggerer) is down, with its heartbeat."""
    key = AIRFLOW_JOBS[name]
    job = airflow.get(key) or {}
    if not airflow:
        heartbeat = "heartbeat unknown: the Airflow API server does not answer"
    elif job.get(f"latest_{key}_heartbeat"):
        heartbeat = "last heartbeat " + _ago(str(job[f"latest_{key}_heartbeat"]), now)
    else:
        heartbeat = "no heartbeat recorded"
    state = (
        "its process is not running"
        if not alive
        else f"Airflow reports it {job.get('status') or 'unknown'}"
    )
    return f"{state}; {heartbeat}"


def down_lines(
    rows: list[ComponentStatus], airflow: dict[str, Any], now: dt.datetime | None = None
) -> list[str]:
    """One line per component that is down: why, and what stops working meanwhile.

    Args:
        rows: ``status()``.
        airflow: Airflow's health answer (``airflow_health``; empty when it did not answer).
        now: The time heartbeats are aged against (default: now, UTC).
    """
    now = now or dt.datetime.now(dt.UTC)
    if rows and not any(r.alive for r in rows):
        return ["DOWN: the stack is not running (`make up` starts it)."]
    lines = []
    for r in rows:
        if r.healthy:
            continue
        if r.component in AIRFLOW_JOBS:
            why = _airflow_job(r.component, r.alive, airflow, now)
        elif not r.alive:
            why = "its process is not running"
        elif r.component == "api-server" and airflow:
            db = (airflow.get("metadatabase") or {}).get("status")
            why = f"running, but Airflow reports its metadata database {db or 'unknown'}"
        else:
            why = f"running, but its health endpoint does not say healthy ({r.url or '-'})"
        what = CONSEQUENCES.get(r.component, "queued tasks are not run")
        lines.append(f"DOWN {r.component}: {why}. Meanwhile {what}.")
    return lines


def wait_healthy(cfg: StackConfig, names: list[str], timeout: float) -> None:
    """Wait until every component in ``names`` is healthy.

    Raises:
        StackError: A component exited, or is not healthy after ``timeout`` seconds (the
            message shows the tail of its log).
    """
    started = time.monotonic()
    deadline = started + timeout
    pending = list(names)
    while True:
        health = _health(cfg)
        for name in list(pending):
            pid = read_pid(cfg.pid_file(name))
            if not pid or not process_group.alive(pid):
                raise StackError(
                    f"{name} exited during start-up; last lines of {cfg.log_file(name)}:\n"
                    + process_group.log_tail(cfg.log_file(name))
                )
            if health.get(name):
                pending.remove(name)
                log.info("%s healthy (waited %.0fs)", name, time.monotonic() - started)
        if not pending:
            return
        if time.monotonic() > deadline:
            name = pending[0]
            probe = _health_urls(cfg).get(name, "its log")
            raise StackError(
                f"{', '.join(pending)} not healthy after {timeout:.0f}s "
                f"(health: {probe}); last lines of {cfg.log_file(name)}:\n"
                + process_group.log_tail(cfg.log_file(name))
            )
        time.sleep(0.5)
