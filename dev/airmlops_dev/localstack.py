"""The embedded local stack: Airflow (4 components), MLflow and a Slack stand-in, without Docker.

One module starts and stops everything, for ``make up/down/status`` and for the integration tests:

    python -m airmlops_dev.localstack up|down|status

Every component runs in its own process group, logs to ``<home>/logs/<name>.log`` and records
its PID in ``<home>/run/<name>.pid``. Every process of the stack (and everything it spawns, such
as Airflow task processes, which get their own process groups) carries
``AIRMLOPS_STACK_HOME=<home>`` in its environment, so ``down`` can find and stop all of them, and
a test can prove none is left.

State lives under ``home`` (default ``<project>/.local``), created with mode 0700; every
process of the stack runs with umask 077, so what it creates there is owner-only too:

    secrets.env       fernet key, JWT secret, API secret key, the MLflow admin's password
                      (MLFLOW_AUTH_ADMIN_PASSWORD), MLflow's CSRF key and the model API token
                      (generated once, 0600)
    airflow/          AIRFLOW_HOME: airflow.db (SQLite), task logs, the admin password file
    mlflow/           mlflow.db (SQLite), artifacts/, basic_auth.db (MLflow's users)
    receiver/         messages.jsonl: what was posted to the Slack stand-in
    data/, work/      AIRMLOPS_DATA_DIR and AIRMLOPS_WORK_URI
    logs/, run/       component logs and PID files
    private/<name>/   with StackConfig.private_component_dirs: each component's working
                      directory, TMPDIR, AIRMLOPS_LOCAL_DIR and AIRMLOPS_DATA_DIR (no shared
                      disk between components, as on separate hosts)

The default (``make up``) is the LocalExecutor on SQLite and MLflow on SQLite with local
artifacts, behind MLflow's basic auth (user ``admin``; every component, the demo and
``airmlops onboard`` authenticate with the generated password). The production topology runs
natively too (tests/integration/test_distributed.py), configured through StackConfig:
``executor="CeleryExecutor"`` with ``sql_alchemy_conn`` (e.g. PostgreSQL), a Celery broker
(Redis) and ``celery_workers`` workers (components ``celery-worker-1..N``, each with its own
hostname), MLflow with ``mlflow_backend_store_uri``, ``mlflow_artifacts_destination``
(``s3://...``, credentials in ``mlflow_server_env`` only: the artifacts are proxied). No secret
goes on a command line: database and broker URLs reach the processes through their environment.
The databases, the broker and the object store themselves are the caller's to start.

The stack is split by concern: stack_config (StackConfig, names, ports, URLs), stack_secrets,
stack_env (process environments), stack_commands (command lines), stack_pids (PID files, which
processes are the stack's, starting one), stack_health (health, status), stack_setup (the
metadata DB) and this module, the lifecycle (up, down) and the command line. Launching and
stopping process groups is airmlops_dev.process_group's, shared with the tests' servers.

No Airflow imports here: these modules only launch processes and speak HTTP.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from airmlops_dev import process_group
from airmlops_dev.ports import port_free
from airmlops_dev.private_files import UnsafePathError, make_private_dir, private_opener
from airmlops_dev.stack_commands import commands
from airmlops_dev.stack_config import ADMIN_USER, NO_DB, ComponentStatus, StackConfig, StackError
from airmlops_dev.stack_health import (
    airflow_health,
    down_lines,
    format_status,
    status,
    wait_healthy,
)
from airmlops_dev.stack_pids import (
    is_ours,
    read_pid,
    session_members,
    stack_processes,
    start_component,
)
from airmlops_dev.stack_setup import check_binaries, initialize, prepare_airflow_db
from airmlops_dev.up_timeline import Timeline

log = logging.getLogger(__name__)


@contextlib.contextmanager
def _locked(cfg: StackConfig) -> Iterator[None]:
    """Serialize up/down of one stack across processes (creating the home, mode 0700)."""
    make_private_dir(cfg.root)
    make_private_dir(cfg.run_dir)
    with open(cfg.run_dir / "stack.lock", "a", opener=private_opener) as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def up(
    cfg: StackConfig, wait: bool = True, timeline: Timeline | None = None
) -> list[ComponentStatus]:
    """Start whatever part of the stack is not running; a no-op when all is up.

    First run: creates directories and secrets, migrates the Airflow DB, loads the settings file
    (again whenever it changes). Then starts the Slack stand-in, MLflow and the four Airflow
    components, each in its own process group and session. Leftovers of a component that died
    (e.g. an orphaned worker still holding its port) are stopped before it is restarted.

    Args:
        cfg: The stack configuration.
        wait: Wait until every component reports healthy.
        timeline: Where to record the phases (setup, metadata DB, waiting for health).

    Returns:
        ``status()`` after starting (and waiting).

    Raises:
        StackError: A port is taken by another program, a setup step failed, or a component
            did not become healthy in ``cfg.startup_timeout`` (the message names it and shows
            the tail of its log).
    """
    started_at = time.monotonic()
    timeline = timeline or Timeline()
    check_binaries(cfg)
    with _locked(cfg):
        with timeline.phase("stack: setup, start receiver, MLflow, model API"):
            initialize(cfg)
            missing = []
            for name in cfg.components:
                pid = read_pid(cfg.pid_file(name))
                if pid and is_ours(pid, cfg):
                    continue
                missing.append(name)
                if pid and (leftovers := session_members(cfg, pid)):
                    log.warning("%s died; stopping its %d leftover processes", name, len(leftovers))
                    process_group.terminate(leftovers, timeout=10.0)
                cfg.pid_file(name).unlink(missing_ok=True)
            for name, port in cfg.ports.items():
                if name in missing and not port_free(port, cfg.host):
                    env_name = {"api-server": "AIRFLOW", "model-api": "MODEL_API"}.get(
                        name, name.upper()
                    )
                    raise StackError(
                        f"cannot start {name}: {cfg.host}:{port} is in use by another program "
                        f"(stop it, or choose another port with AIRMLOPS_{env_name}_PORT)"
                    )
            launches = commands(cfg) if missing else {}
            # The receiver, MLflow and the model API need no metadata DB: start them while
            # Airflow migrates.
            for name in NO_DB:
                if name in missing:
                    start_component(cfg, name, *launches[name])
        airflow_missing = [n for n in missing if n not in NO_DB]
        with timeline.phase("stack: Airflow metadata DB (migrate, settings)"):
            prepare_airflow_db(cfg, migrate=bool(airflow_missing))
        for name in airflow_missing:
            start_component(cfg, name, *launches[name])
        if wait:
            with timeline.phase("stack: wait until every component is healthy"):
                wait_healthy(cfg, list(cfg.components), cfg.startup_timeout)
    log.info(
        "stack up in %.1fs (%s)",
        time.monotonic() - started_at,
        "started " + ", ".join(missing) if missing else "already running",
    )
    return status(cfg)


def down(cfg: StackConfig, timeout: float = 20.0) -> None:
    """Stop every process of the stack and check that nothing is left.

    SIGTERM to every process of the stack and its process group (components lead their own
    groups; Airflow task processes get groups of their own), SIGKILL after ``timeout`` seconds.
    Then the stack's ports must be free.

    Args:
        cfg: The stack configuration.
        timeout: Seconds to wait after SIGTERM before SIGKILL.

    Raises:
        StackError: Processes survived SIGKILL, or a port is still in use after stopping.
    """
    started_at = time.monotonic()
    stopped = 0
    with _locked(cfg):
        # Twice: a component may have spawned a process while the first round stopped it.
        for _ in range(2):
            pids = set(stack_processes(cfg))
            if not pids:
                break
            log.info("stopping %d processes", len(pids))
            stopped += len(pids)
            left = process_group.terminate(pids, timeout)
            if left:
                raise StackError(f"processes of the stack survived SIGKILL: {left}")
        if left := stack_processes(cfg):
            raise StackError(f"processes of the stack are still running: {left}")
        for name in cfg.components:
            cfg.pid_file(name).unlink(missing_ok=True)
        process_group.reap()
        deadline = time.monotonic() + 5.0
        while busy := [f"{n} ({p})" for n, p in cfg.ports.items() if not port_free(p, cfg.host)]:
            if not stopped:  # not ours: the stack was not running
                log.warning("ports in use by other programs: %s", ", ".join(busy))
                break
            if time.monotonic() > deadline:
                raise StackError(f"ports still in use after stopping the stack: {busy}")
            time.sleep(0.2)
    log.info("stack down in %.1fs (%d processes stopped)", time.monotonic() - started_at, stopped)


# CLI ------------------------------------------------------------------------------------------
def summary(cfg: StackConfig) -> str:
    """Where everything of a running stack is: UIs, APIs, logins, the Slack stand-in, logs.

    Names the files that hold the passwords, never a password.
    """
    mlflow_login = (
        f"(user {ADMIN_USER}; password: MLFLOW_AUTH_ADMIN_PASSWORD in {cfg.secrets_file})"
        if cfg.mlflow_auth
        else "(no login)"
    )
    return "\n".join(
        [
            f"Airflow UI:      {cfg.airflow_url}  (user {ADMIN_USER}; password in "
            f"{cfg.passwords_file})",
            f"MLflow UI:       {cfg.mlflow_url}  {mlflow_login}",
            f"Model API:       {cfg.model_api_url}/invocations/<model>  (open: GET /health; "
            f"the rest needs the bearer token AIRMLOPS_MODEL_API_TOKEN in {cfg.secrets_file})",
            f"Slack stand-in:  {cfg.webhook_url} -> {cfg.messages_file} "
            f"(also GET {cfg.receiver_url}/messages)",
            f"Logs:            {cfg.logs_dir}",
        ]
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m airmlops_dev.localstack up|down|status``."""
    parser = argparse.ArgumentParser(
        prog="python -m airmlops_dev.localstack",
        description="Start, stop or inspect the local stack (Airflow, MLflow, Slack stand-in).",
    )
    parser.add_argument("command", choices=("up", "down", "status"))
    parser.add_argument("--home", type=Path, help="state directory (default <project>/.local)")
    parser.add_argument("--no-wait", action="store_true", help="up: do not wait for health")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    cfg = StackConfig(home=args.home)
    try:
        if args.command == "up":
            rows = up(cfg, wait=not args.no_wait)
            print(format_status(rows))
            print()
            print(summary(cfg))
        elif args.command == "down":
            down(cfg)
            print("stack stopped; no process left, ports free.")
        else:
            rows = status(cfg)
            print(format_status(rows))
            print()
            problems = down_lines(rows, airflow_health(cfg))
            for line in problems:
                print(line)
            if problems:
                print()
            print(summary(cfg))
            return 3 if problems else 0
    except (StackError, UnsafePathError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
