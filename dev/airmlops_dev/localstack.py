"""The embedded local stack: Airflow (4 components), MLflow and a Slack stand-in, without Docker.

One module starts and stops everything, for ``make up/down/status`` and for the integration tests:

    python -m airmlops_dev.localstack up|down|status

Every component runs in its own process group, logs to ``<home>/logs/<name>.log`` and records
its PID in ``<home>/run/<name>.pid``. Every process of the stack (and everything it spawns, such
as Airflow task processes, which get their own process groups) carries
``AIRMLOPS_STACK_HOME=<home>`` in its environment, so ``down`` can find and stop all of them, and
a test can prove none is left.

State lives under ``home`` (default ``<project>/.local``):

    secrets.env       fernet key, JWT secret, API secret key (generated once, mode 0600)
    airflow/          AIRFLOW_HOME: airflow.db (SQLite), task logs, the admin password file
    mlflow/           mlflow.db (SQLite) and artifacts/
    receiver/         messages.jsonl: what was posted to the Slack stand-in
    data/, work/      AIRMLOPS_DATA_DIR and AIRMLOPS_WORK_URI
    logs/, run/       component logs and PID files

The default (``make up``) is the LocalExecutor on SQLite and MLflow on SQLite with local
artifacts. The production topology runs natively too (tests/integration/test_distributed.py),
configured through StackConfig: ``executor="CeleryExecutor"`` with ``sql_alchemy_conn`` (e.g.
PostgreSQL), a Celery broker (Redis) and ``celery_workers`` workers (components
``celery-worker-1..N``, each with its own hostname), MLflow with ``mlflow_backend_store_uri``,
``mlflow_artifacts_destination`` (``s3://...``, credentials in ``mlflow_server_env`` only: the
artifacts are proxied) and ``mlflow_auth`` (the basic-auth app with a generated admin password).
The databases, the broker and the object store themselves are the caller's to start.

No Airflow imports here: this module only launches processes and speaks HTTP.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, NamedTuple

from airmlops_core import settings
from airmlops_dev.ports import port_free

log = logging.getLogger(__name__)

MARKER_ENV = "AIRMLOPS_STACK_HOME"
ADMIN_USER = "admin"
WEBHOOK_PATH = "/services/T000/B000/local"
COMPONENTS = (
    "receiver",
    "mlflow",
    "model-api",
    "api-server",
    "scheduler",
    "dag-processor",
    "triggerer",
)
NO_DB = ("receiver", "mlflow", "model-api")  # components that need no Airflow metadata DB
AIRFLOW_JOBS = {
    "scheduler": "scheduler",
    "dag-processor": "dag_processor",
    "triggerer": "triggerer",
}
SECRET_KEYS = (
    "AIRFLOW__CORE__FERNET_KEY",
    "AIRFLOW__API_AUTH__JWT_SECRET",
    "AIRFLOW__API__SECRET_KEY",
)
# Generated only for a stack with MLflow basic auth (StackConfig.mlflow_auth).
MLFLOW_SECRET_KEYS = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
EXECUTORS = ("LocalExecutor", "CeleryExecutor")
WORKER_PREFIX = "celery-worker-"
# Set in a Celery worker's environment: the hostname its task instances report (see
# task_hostname), so the task instances of two workers on one machine can be told apart.
WORKER_HOSTNAME_ENV = "AIRMLOPS_WORKER_HOSTNAME"
_NO_PROXY_HOSTS = ("127.0.0.1", "localhost")
_AIRFLOW_ENV_PREFIXES = ("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_VAR_")
_LOCAL_HTTP = urllib.request.build_opener(urllib.request.ProxyHandler({}))
# Popen objects of the processes this interpreter started, so they can be reaped (no zombies).
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class StackError(RuntimeError):
    """The local stack could not be started, checked or stopped."""


def _env_port(name: str, default: int) -> int:
    value = os.environ.get(name)
    if not value:
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise StackError(f"{name}={value!r} is not a port number") from exc


@dataclass
class StackConfig:
    """Where the local stack lives and how it is reached.

    Attributes:
        project_dir: The repository root (dags/, plugins/, airflow_settings.yaml).
        home: State directory; default AIRMLOPS_LOCAL_DIR, else ``<project>/.local``.
        host: Interface every server binds to.
        airflow_port: Airflow api-server port (AIRMLOPS_AIRFLOW_PORT, default 8080).
        mlflow_port: MLflow server port (AIRMLOPS_MLFLOW_PORT, default 5000).
        receiver_port: Slack stand-in port (AIRMLOPS_RECEIVER_PORT, default 8099).
        model_api_port: model REST API port (AIRMLOPS_MODEL_API_PORT, default 5001).
        bin_dir: The virtualenv's bin directory (python, airflow, mlflow); default: the running
            interpreter's directory.
        dags_folder: Airflow's dags folder; default ``<project>/dags``.
        plugins_folder: Airflow's plugins folder; default ``<project>/plugins``.
        extra_dag_folders: More folders to parse, each as its own local DAG bundle (tests use
            this for smoke DAGs next to the project's DAGs).
        settings_file: Astro-format settings loaded into the metadata DB; default
            ``<project>/airflow_settings.yaml`` (skipped when missing).
        extra_env: Extra environment for every process, applied last (e.g. AIRMLOPS_MODELS_DIR,
            or an ``AIRFLOW__SECTION__KEY`` override).
        receiver_mode: Failure mode of the Slack stand-in (see webhook_receiver.MODES).
        parallelism: AIRFLOW__CORE__PARALLELISM (task slots of the LocalExecutor).
        max_active_tasks: AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG.
        startup_timeout: Seconds to wait for every component to be healthy.
        executor: ``LocalExecutor`` (default) or ``CeleryExecutor``.
        sql_alchemy_conn: Airflow's metadata DB URL; default SQLite in the home. Required for
            the CeleryExecutor (e.g. ``postgresql+psycopg2://...``).
        celery_broker_url: The Celery broker (e.g. ``redis://:<password>@127.0.0.1:6379/0``);
            required for the CeleryExecutor.
        celery_result_backend: Celery's result backend; default ``db+<sql_alchemy_conn>``.
        celery_workers: Number of Celery workers (components ``celery-worker-1..N``).
        worker_concurrency: Task slots of each Celery worker.
        mlflow_backend_store_uri: MLflow's backend store; default SQLite in the home.
        mlflow_artifacts_destination: Where the MLflow server stores artifacts (it proxies
            them: clients never see this location); default ``<home>/mlflow/artifacts``.
        mlflow_server_env: Environment of the MLflow server only (S3 credentials,
            ``MLFLOW_S3_ENDPOINT_URL``), applied after ``extra_env``.
        mlflow_auth: Run MLflow's basic-auth app; the admin password is generated into
            ``secrets.env``, and every process of the stack gets it as
            MLFLOW_TRACKING_USERNAME/PASSWORD (and the ``mlflow_default`` connection).
    """

    project_dir: Path = field(default_factory=settings.project_dir)
    home: Path | None = None
    host: str = "127.0.0.1"
    airflow_port: int = field(default_factory=lambda: _env_port("AIRMLOPS_AIRFLOW_PORT", 8080))
    mlflow_port: int = field(default_factory=lambda: _env_port("AIRMLOPS_MLFLOW_PORT", 5000))
    receiver_port: int = field(default_factory=lambda: _env_port("AIRMLOPS_RECEIVER_PORT", 8099))
    model_api_port: int = field(default_factory=lambda: _env_port("AIRMLOPS_MODEL_API_PORT", 5001))
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)
    dags_folder: Path | None = None
    plugins_folder: Path | None = None
    extra_dag_folders: tuple[Path, ...] = ()
    settings_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    receiver_mode: str = "ok"
    parallelism: int = 4
    max_active_tasks: int = 2
    startup_timeout: float = 240.0
    executor: str = "LocalExecutor"
    sql_alchemy_conn: str | None = None
    celery_broker_url: str | None = None
    celery_result_backend: str | None = None
    celery_workers: int = 2
    worker_concurrency: int = 1
    mlflow_backend_store_uri: str | None = None
    mlflow_artifacts_destination: str | None = None
    mlflow_server_env: dict[str, str] = field(default_factory=dict)
    mlflow_auth: bool = False

    def __post_init__(self) -> None:
        if self.executor not in EXECUTORS:
            raise StackError(f"executor {self.executor!r} is not one of {', '.join(EXECUTORS)}")
        if self.executor == "CeleryExecutor":
            if not self.celery_broker_url:
                raise StackError("the CeleryExecutor needs celery_broker_url (e.g. a Redis URL)")
            if not self.sql_alchemy_conn or self.sql_alchemy_conn.startswith("sqlite"):
                raise StackError(
                    "the CeleryExecutor needs a metadata DB other than SQLite "
                    "(sql_alchemy_conn, e.g. postgresql+psycopg2://...)"
                )
            if self.celery_workers < 1 or self.worker_concurrency < 1:
                raise StackError("celery_workers and worker_concurrency must be at least 1")
        self.project_dir = Path(self.project_dir).absolute()
        if self.home is None:
            env_home = os.environ.get("AIRMLOPS_LOCAL_DIR")
            self.home = Path(env_home) if env_home else self.project_dir / ".local"
        self.home = Path(self.home).absolute()
        self.bin_dir = Path(self.bin_dir).absolute()  # not resolve(): keep the venv's symlink
        self.dags_folder = Path(self.dags_folder or self.project_dir / "dags").absolute()
        self.plugins_folder = Path(self.plugins_folder or self.project_dir / "plugins").absolute()
        self.extra_dag_folders = tuple(Path(p).absolute() for p in self.extra_dag_folders)
        self.settings_file = Path(
            self.settings_file or self.project_dir / "airflow_settings.yaml"
        ).absolute()

    # Components ------------------------------------------------------------------------------
    @property
    def workers(self) -> tuple[str, ...]:
        """Component names of the Celery workers (none for the LocalExecutor)."""
        if self.executor != "CeleryExecutor":
            return ()
        return tuple(f"{WORKER_PREFIX}{i}" for i in range(1, self.celery_workers + 1))

    @property
    def components(self) -> tuple[str, ...]:
        """Every long-running component of this stack, in start order."""
        return COMPONENTS + self.workers

    def worker_hostname(self, worker: str) -> str:
        """The hostname a worker's task instances report (and its Celery node name's host)."""
        return f"{worker}.{socket.gethostname()}"

    @property
    def airflow_db_is_sqlite(self) -> bool:
        return not self.sql_alchemy_conn or self.sql_alchemy_conn.startswith("sqlite")

    # Paths -----------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """``home`` as a Path (never None after construction)."""
        assert self.home is not None
        return self.home

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    @property
    def logs_dir(self) -> Path:
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def secrets_file(self) -> Path:
        return self.root / "secrets.env"

    @property
    def passwords_file(self) -> Path:
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    @property
    def messages_file(self) -> Path:
        return self.root / "receiver" / "messages.jsonl"

    # URLs ------------------------------------------------------------------------------------
    @property
    def airflow_url(self) -> str:
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def model_api_url(self) -> str:
        return f"http://{self.host}:{self.model_api_port}"

    @property
    def receiver_url(self) -> str:
        return f"http://{self.host}:{self.receiver_port}"

    @property
    def webhook_url(self) -> str:
        return self.receiver_url + WEBHOOK_PATH

    def log_file(self, name: str) -> Path:
        return self.logs_dir / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"


class ComponentStatus(NamedTuple):
    """One row of ``status()``."""

    component: str
    pid: int | None
    alive: bool
    url: str | None
    healthy: bool


# Secrets and credentials ----------------------------------------------------------------------
def _write_private(path: Path, text: str) -> None:
    """Write a file readable by the owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)


def _ensure_secrets(cfg: StackConfig, keys: tuple[str, ...] = SECRET_KEYS) -> dict[str, str]:
    """Read ``<home>/secrets.env``, generating missing ``keys`` once (never logged)."""
    values: dict[str, str] = {}
    if cfg.secrets_file.exists():
        for line in cfg.secrets_file.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
    generators = {
        "AIRFLOW__CORE__FERNET_KEY": lambda: base64.urlsafe_b64encode(
            secrets.token_bytes(32)
        ).decode(),
        "AIRFLOW__API_AUTH__JWT_SECRET": lambda: secrets.token_urlsafe(48),
        "AIRFLOW__API__SECRET_KEY": lambda: secrets.token_urlsafe(32),
        # MLflow's password policy: at least 12 characters, letters and digits
        "MLFLOW_AUTH_ADMIN_PASSWORD": lambda: "Ml1" + secrets.token_urlsafe(24),
        "MLFLOW_FLASK_SERVER_SECRET_KEY": lambda: secrets.token_urlsafe(32),
    }
    missing = [k for k in keys if not values.get(k)]
    if missing:
        for key in missing:
            values[key] = generators[key]()
        body = "# Generated by airmlops_dev.localstack; keep private.\n"
        body += "".join(f"{k}={v}\n" for k, v in values.items())
        _write_private(cfg.secrets_file, body)
        log.info("generated secrets in %s", cfg.secrets_file)
    return {k: values[k] for k in keys}


def mlflow_credentials(cfg: StackConfig) -> tuple[str, str] | None:
    """The MLflow admin's (user, password) of a stack with basic auth, else None.

    Generated into ``secrets.env`` on first use; the caller must never log the password.
    """
    if not cfg.mlflow_auth:
        return None
    return ADMIN_USER, _ensure_secrets(cfg, MLFLOW_SECRET_KEYS)["MLFLOW_AUTH_ADMIN_PASSWORD"]


def _ensure_admin_password(cfg: StackConfig) -> None:
    """Create the simple auth manager's password file ourselves.

    Airflow would otherwise generate the password on the api-server's first start and print it
    into the api-server log; writing the file first keeps the password out of every log.
    """
    passwords: dict[str, str] = {}
    if cfg.passwords_file.exists():
        text = cfg.passwords_file.read_text(encoding="utf-8").strip()
        passwords = json.loads(text) if text else {}
    if not passwords.get(ADMIN_USER):
        passwords[ADMIN_USER] = secrets.token_urlsafe(16)
        _write_private(cfg.passwords_file, json.dumps(passwords) + "\n")


def credentials(cfg: StackConfig) -> tuple[Path, tuple[str, str]]:
    """The admin credentials of the local Airflow.

    Returns:
        The password file's path, and the (user, password) pair read from it.

    Raises:
        StackError: The stack was never started, so there is no password yet.
    """
    path = cfg.passwords_file
    try:
        passwords = json.loads(path.read_text(encoding="utf-8"))
        return path, (ADMIN_USER, passwords[ADMIN_USER])
    except (OSError, ValueError, KeyError) as exc:
        raise StackError(f"no admin password in {path}; run `up` first") from exc


# Environment ----------------------------------------------------------------------------------
# the caller's MLflow servers: the stack's processes use the stack's own MLflow
_CALLER_ONLY_ENV = (
    "AIRFLOW_HOME",
    "AIRFLOW_CONFIG",
    "MLFLOW_REGISTRY_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLFLOW_TRACKING_TOKEN",
)


def _inherited_env() -> dict[str, str]:
    """The caller's environment minus Airflow settings and the caller's MLflow registry and
    credentials, so the stack is the same from any shell (a registry URI left by the caller
    would send the stack's registrations to another server).

    Use ``StackConfig.extra_env`` to override anything on purpose.
    """
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(_AIRFLOW_ENV_PREFIXES) and k not in _CALLER_ONLY_ENV
    }


def _base_env(cfg: StackConfig) -> dict[str, str]:
    env = _inherited_env()
    env["PATH"] = os.pathsep.join([str(cfg.bin_dir), env.get("PATH", "")])
    for key in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in env.get(key, "").split(",") if h]
        hosts += [h for h in (*_NO_PROXY_HOSTS, cfg.host) if h not in hosts]
        env[key] = ",".join(hosts)
    env.update(
        {
            "PYTHONUNBUFFERED": "1",
            "AIRMLOPS_PROJECT_DIR": str(cfg.project_dir),
            "AIRMLOPS_LOCAL_DIR": str(cfg.root),
            "AIRMLOPS_DATA_DIR": str(cfg.root / "data"),
            "AIRMLOPS_WORK_URI": str(cfg.root / "work"),
            "MLFLOW_TRACKING_URI": cfg.mlflow_url,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "AIRMLOPS_MODEL_API_URL": cfg.model_api_url,
        }
    )
    if creds := mlflow_credentials(cfg):  # MLflow's client reads them (tasks, model API)
        env["MLFLOW_TRACKING_USERNAME"], env["MLFLOW_TRACKING_PASSWORD"] = creds
    env.update(cfg.extra_env)
    return env


def _dag_bundles(cfg: StackConfig) -> str:
    bundles: list[dict[str, Any]] = [
        {
            "name": "dags-folder",
            "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
            "kwargs": {},
        }
    ]
    for i, folder in enumerate(cfg.extra_dag_folders, start=1):
        bundles.append(
            {
                "name": f"extra-dags-{i}",
                "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
                "kwargs": {"path": str(folder)},
            }
        )
    return json.dumps(bundles)


def airflow_env(cfg: StackConfig) -> dict[str, str]:
    """The full environment for every Airflow process of the stack, and so for its tasks.

    Airflow variables of the caller's environment (``AIRFLOW__*``, ``AIRFLOW_CONN_*``,
    ``AIRFLOW_VAR_*``, ``AIRFLOW_HOME``, ``AIRFLOW_CONFIG``) are dropped so the stack behaves the
    same from any shell; ``cfg.extra_env`` is applied last and can override anything. Generates
    ``<home>/secrets.env`` on first use. The result contains secrets: never log it.

    Args:
        cfg: The stack configuration.

    Returns:
        ``os.environ`` overlaid with the stack's Airflow, MLflow and airmlops settings.
    """
    ah = cfg.airflow_home
    env = _base_env(cfg)
    env.update(_ensure_secrets(cfg))
    mlflow_conn: dict[str, Any] = {"conn_type": "http", "host": cfg.mlflow_url}
    if creds := mlflow_credentials(cfg):
        mlflow_conn["login"], mlflow_conn["password"] = creds
    env.update(
        {
            "AIRFLOW_HOME": str(ah),
            "AIRFLOW__CORE__DAGS_FOLDER": str(cfg.dags_folder),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(cfg.plugins_folder),
            "AIRFLOW__CORE__EXECUTOR": cfg.executor,
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": (
                cfg.sql_alchemy_conn or f"sqlite:///{ah / 'airflow.db'}"
            ),
            "AIRFLOW__CORE__PARALLELISM": str(cfg.parallelism),
            "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": str(cfg.max_active_tasks),
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{cfg.airflow_url}/execution/",
            "AIRFLOW__CORE__AUTH_MANAGER": (
                "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
            ),
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(cfg.passwords_file),
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "10",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_STORAGE_PATH": str(ah / "dag_bundles"),
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": _dag_bundles(cfg),
            "AIRFLOW__API__HOST": cfg.host,
            "AIRFLOW__API__PORT": str(cfg.airflow_port),
            "AIRFLOW__API__BASE_URL": cfg.airflow_url,
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__EXPOSE_CONFIG": "False",
            "AIRFLOW__LOGGING__COLORED_CONSOLE_LOG": "False",
            "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(mlflow_conn),
            "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(
                {"conn_type": "slackwebhook", "password": cfg.webhook_url}
            ),
        }
    )
    if cfg.executor == "CeleryExecutor":
        assert cfg.sql_alchemy_conn  # both checked by StackConfig
        assert cfg.celery_broker_url
        env.update(
            {
                "AIRFLOW__CELERY__BROKER_URL": cfg.celery_broker_url,
                "AIRFLOW__CELERY__RESULT_BACKEND": (
                    cfg.celery_result_backend or f"db+{cfg.sql_alchemy_conn}"
                ),
                "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(cfg.worker_concurrency),
                # Airflow's default, explicit so that it does not warn; a task a dead worker
                # held is re-queued by the scheduler's heartbeat check, not by the broker
                "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
            }
        )
    env.update(cfg.extra_env)
    return env


def _launch_env(cfg: StackConfig, env: dict[str, str]) -> dict[str, str]:
    """Tag an environment so every process of this stack (and its descendants) is findable."""
    # SPT_NOENV: setproctitle (used by Airflow) must not overwrite the environment, which holds
    # the marker.
    return {**env, MARKER_ENV: str(cfg.root), "SPT_NOENV": "1"}


# Processes ------------------------------------------------------------------------------------
def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, session id) of a process from procfs, or None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
        return fields[0], int(fields[3])
    except (OSError, IndexError, ValueError):
        return None


def _alive(pid: int) -> bool:
    """True when the process exists and is not a zombie (reaping our own children)."""
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        _CHILDREN.pop(pid, None)
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if sys.platform != "linux":
        return True
    stat = _proc_stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def _environ_has_marker(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


def _marker(cfg: StackConfig) -> bytes:
    return f"{MARKER_ENV}={cfg.root}".encode()


def _is_ours(pid: int, cfg: StackConfig) -> bool:
    """Whether ``pid`` is a live component of this stack (guards against PID reuse)."""
    if not _alive(pid):
        return False
    if not Path("/proc").is_dir():  # no procfs (macOS): trust the PID file
        return True
    if _environ_has_marker(pid, _marker(cfg)):
        return True
    # Airflow renames its processes with setproctitle, which wipes /proc/<pid>/environ unless
    # SPT_NOENV is set; a session leader running in the stack's home is ours too.
    stat = _proc_stat(pid)
    try:
        cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
    except OSError:
        return False
    return stat is not None and stat[1] == pid and cwd == cfg.root


def stack_processes(cfg: StackConfig) -> list[int]:
    """PIDs of every live process of this stack (components, their children, tasks).

    A process belongs to the stack when it carries the ``AIRMLOPS_STACK_HOME`` marker in its
    environment or runs in the session of a component (each component leads its own session).

    Args:
        cfg: The stack configuration.

    Returns:
        Sorted PIDs; the calling process is never included. Without procfs only the PID files
        are consulted.
    """
    leaders: set[int] = set()
    for name in cfg.components:
        pid = _read_pid(cfg.pid_file(name))
        if pid and _is_ours(pid, cfg):
            leaders.add(pid)
    pids = set(leaders)
    proc = Path("/proc")
    if proc.is_dir():
        marker = _marker(cfg)
        for entry in proc.iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _proc_stat(pid)
            if stat is None or stat[0] in ("Z", "X"):
                continue
            if stat[1] in leaders or _environ_has_marker(pid, marker):
                pids.add(pid)
    pids.discard(os.getpid())
    return sorted(pids)


def _ports(cfg: StackConfig) -> dict[str, int]:
    return {
        "receiver": cfg.receiver_port,
        "mlflow": cfg.mlflow_port,
        "model-api": cfg.model_api_port,
        "api-server": cfg.airflow_port,
    }


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return f"(no log at {path})"
    return "\n".join(text.splitlines()[-lines:])


def _allowed_hosts(cfg: StackConfig) -> str:
    """MLflow's Host-header allow-list: the bind host and localhost, with and without a port."""
    hosts = dict.fromkeys([cfg.host, "127.0.0.1", "localhost"])
    return ",".join([f"{h}:*" for h in hosts] + list(hosts))


def _commands(cfg: StackConfig) -> dict[str, tuple[list[str], dict[str, str]]]:
    py, airflow, mlflow = (str(cfg.bin_dir / n) for n in ("python", "airflow", "mlflow"))
    base = _base_env(cfg)
    af_env = airflow_env(cfg)
    mlflow_env = {
        **base,
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",
    }
    mlflow_dir = cfg.root / "mlflow"
    mlflow_argv = (
        [mlflow, "server", "--host", cfg.host, "--port", str(cfg.mlflow_port)]
        + [
            "--backend-store-uri",
            cfg.mlflow_backend_store_uri or f"sqlite:///{mlflow_dir / 'mlflow.db'}",
        ]
        + [
            "--artifacts-destination",
            cfg.mlflow_artifacts_destination or str(mlflow_dir / "artifacts"),
        ]
        + ["--serve-artifacts", "--workers", "1"]
        + ["--allowed-hosts", _allowed_hosts(cfg)]
    )
    if cfg.mlflow_auth:
        mlflow_argv += ["--app-name", "basic-auth"]
        mlflow_env.update(_ensure_secrets(cfg, MLFLOW_SECRET_KEYS))
        mlflow_env["MLFLOW_AUTH_ADMIN_USERNAME"] = ADMIN_USER
        mlflow_env["MLFLOW_AUTH_CONFIG_PATH"] = str(_mlflow_auth_config(cfg))
    mlflow_env.update(cfg.mlflow_server_env)
    commands: dict[str, tuple[list[str], dict[str, str]]] = {
        "receiver": (
            [py, "-m", "airmlops_dev.webhook_receiver", "--host", cfg.host]
            + ["--port", str(cfg.receiver_port), "--out", str(cfg.messages_file)]
            + ["--mode", cfg.receiver_mode],
            base,
        ),
        "mlflow": (mlflow_argv, mlflow_env),
        "model-api": (
            [py, "-m", "airmlops_core.serve.model_api", "--host", cfg.host]
            + ["--port", str(cfg.model_api_port), "--tracking-uri", cfg.mlflow_url],
            base,
        ),
        "api-server": ([airflow, "api-server"], af_env),
        "scheduler": ([airflow, "scheduler", "--skip-serve-logs"], af_env),
        "dag-processor": ([airflow, "dag-processor"], af_env),
        "triggerer": ([airflow, "triggerer", "--skip-serve-logs"], af_env),
    }
    for worker in cfg.workers:
        hostname = cfg.worker_hostname(worker)
        commands[worker] = (
            # task logs are files under AIRFLOW_HOME, read by the api-server: no log server
            [
                airflow,
                "celery",
                "worker",
                "--concurrency",
                str(cfg.worker_concurrency),
                "--celery-hostname",
                f"celery@{hostname}",
                "--skip-serve-logs",
                "--pid",
                str(cfg.run_dir / f"{worker}.celery.pid"),
            ],
            {
                **af_env,
                WORKER_HOSTNAME_ENV: hostname,
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "airmlops_dev.localstack.task_hostname",
            },
        )
    return commands


def task_hostname() -> str:
    """Airflow's ``hostname_callable`` in the stack's Celery workers.

    Several workers on one machine would all report the machine's name; each reports
    ``$AIRMLOPS_WORKER_HOSTNAME`` instead (``celery-worker-<n>.<host>``), so a task instance's
    ``hostname`` tells which worker ran it.
    """
    return os.environ.get(WORKER_HOSTNAME_ENV) or socket.getfqdn()


def _mlflow_auth_config(cfg: StackConfig) -> Path:
    """MLflow's basic-auth config: users in ``<home>/mlflow/basic_auth.db``, no credential."""
    path = cfg.root / "mlflow" / "basic_auth.ini"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "# Written by airmlops_dev.localstack. The admin is created on the first start from\n"
        "# MLFLOW_AUTH_ADMIN_USERNAME / MLFLOW_AUTH_ADMIN_PASSWORD (secrets.env).\n"
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = sqlite:///{cfg.root / 'mlflow' / 'basic_auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n",
        encoding="utf-8",
    )
    return path


def _start(cfg: StackConfig, name: str, argv: list[str], env: dict[str, str]) -> int:
    log_path = cfg.log_file(name)
    with log_path.open("ab") as logf:
        logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} starting {name}\n".encode())
        logf.flush()
        proc = subprocess.Popen(
            argv,
            cwd=cfg.root,
            env=_launch_env(cfg, env),
            stdin=subprocess.DEVNULL,
            stdout=logf,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
        )
    _CHILDREN[proc.pid] = proc
    cfg.pid_file(name).write_text(f"{proc.pid}\n")
    log.info("started %s (pid %d), log %s", name, proc.pid, log_path)
    return proc.pid


def _run_once(cfg: StackConfig, name: str, argv: list[str], env: dict[str, str]) -> None:
    """Run a setup command to completion, logging to ``<home>/logs/<name>.log``."""
    log_path = cfg.log_file(name)
    with log_path.open("ab") as logf:
        logf.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(argv[1:])}\n".encode())
        logf.flush()
        try:
            result = subprocess.run(
                argv,
                cwd=cfg.root,
                env=_launch_env(cfg, env),
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                timeout=900,
                check=False,
            )
            failure = f"exit {result.returncode}" if result.returncode else ""
        except subprocess.TimeoutExpired:
            failure = "timed out after 900s"
    if failure:
        raise StackError(
            f"{name} failed ({failure}); last lines of {log_path}:\n" + _tail(log_path)
        )


# Health ---------------------------------------------------------------------------------------
def _http_get(url: str, timeout: float = 3.0) -> tuple[int, bytes] | None:
    try:
        with _LOCAL_HTTP.open(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (OSError, ValueError):
        return None


def _health_urls(cfg: StackConfig) -> dict[str, str]:
    af = f"{cfg.airflow_url}/api/v2/monitor/health"
    return {
        "receiver": f"{cfg.receiver_url}/health",
        "mlflow": f"{cfg.mlflow_url}/health",
        # /health is 503 until every model has a champion; the process is up when /metrics is
        "model-api": f"{cfg.model_api_url}/metrics",
        "api-server": af,
        "scheduler": af,
        "dag-processor": af,
        "triggerer": af,
    }


def _health(cfg: StackConfig) -> dict[str, bool]:
    """Health of every component as its own endpoint reports it (one request per server)."""
    urls = _health_urls(cfg)
    result = {}
    for name in NO_DB:
        got = _http_get(urls[name])
        result[name] = bool(got and got[0] == 200)
    got = _http_get(urls["api-server"])
    body: dict[str, Any] = {}
    if got and got[0] == 200:
        try:
            body = json.loads(got[1])
        except ValueError:
            body = {}
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
    urls = {
        "receiver": cfg.receiver_url,
        "mlflow": cfg.mlflow_url,
        "model-api": cfg.model_api_url,
        "api-server": cfg.airflow_url,
    }
    rows = []
    for name in cfg.components:
        pid = _read_pid(cfg.pid_file(name))
        alive = bool(pid and _is_ours(pid, cfg))
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


def _wait_healthy(cfg: StackConfig, names: list[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = list(names)
    while True:
        health = _health(cfg)
        for name in list(pending):
            pid = _read_pid(cfg.pid_file(name))
            if not pid or not _alive(pid):
                raise StackError(
                    f"{name} exited during start-up; last lines of {cfg.log_file(name)}:\n"
                    + _tail(cfg.log_file(name))
                )
            if health.get(name):
                pending.remove(name)
        if not pending:
            return
        if time.monotonic() > deadline:
            name = pending[0]
            raise StackError(
                f"{', '.join(pending)} not healthy after {timeout:.0f}s "
                f"(health: {_health_urls(cfg)[name]}); last lines of {cfg.log_file(name)}:\n"
                + _tail(cfg.log_file(name))
            )
        time.sleep(0.5)


@contextlib.contextmanager
def _locked(cfg: StackConfig) -> Iterator[None]:
    """Serialize up/down of one stack across processes."""
    cfg.run_dir.mkdir(parents=True, exist_ok=True)
    with (cfg.run_dir / "stack.lock").open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# Setup ----------------------------------------------------------------------------------------
def _file_sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _airflow_version() -> str:
    try:
        return metadata.version("apache-airflow-core")
    except metadata.PackageNotFoundError:
        return "unknown"


def _initialize(cfg: StackConfig) -> None:
    """Create directories and secrets; migrate the DB and load settings when needed."""
    for d in (
        cfg.logs_dir,
        cfg.run_dir,
        cfg.airflow_home,
        cfg.root / "mlflow" / "artifacts",
        cfg.root / "receiver",
        cfg.root / "data",
        cfg.root / "work",
    ):
        d.mkdir(parents=True, exist_ok=True)
    _ensure_secrets(cfg)
    _ensure_admin_password(cfg)
    cfg_file = cfg.airflow_home / "airflow.cfg"
    if not cfg_file.exists():
        # Airflow writes a full default airflow.cfg (with unused random secrets and defaults that
        # the environment overrides) when none exists; a stub avoids that confusion.
        _write_private(
            cfg_file,
            "# The local stack configures Airflow through environment variables:\n"
            "# see airflow_env() in airmlops_core/localstack.py. Settings here are overridden.\n",
        )


def _prepare_airflow_db(cfg: StackConfig, migrate: bool) -> None:
    """Prepare the metadata DB.

    Migrates it (first run, or a new Airflow version) when ``migrate`` is set, and loads the
    settings file when it changed since the last load.
    """
    state_file = cfg.airflow_home / ".airmlops_state.json"
    try:
        state = json.loads(state_file.read_text())
    except (OSError, ValueError):
        state = {}
    env = airflow_env(cfg)
    version = _airflow_version()
    db = cfg.airflow_home / "airflow.db"
    # which database the state describes (a digest: the URL may hold a password)
    db_id = hashlib.sha256(env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].encode()).hexdigest()[:16]
    exists = db.exists() if cfg.airflow_db_is_sqlite else state.get("db") == db_id
    if migrate and (not exists or state.get("airflow_version") != version):
        log.info(
            "migrating the Airflow metadata DB (%s)",
            db if cfg.airflow_db_is_sqlite else "sql_alchemy_conn",
        )
        _run_once(cfg, "airflow-db-migrate", [str(cfg.bin_dir / "airflow"), "db", "migrate"], env)
        state = {"airflow_version": version, "db": db_id}
        state_file.write_text(json.dumps(state))
        exists = True
    settings_file = cfg.settings_file
    digest = _file_sha256(settings_file) if settings_file else None
    if exists and digest and state.get("settings_sha256") != digest:
        log.info("loading %s into the metadata DB", settings_file)
        argv = [
            str(cfg.bin_dir / "python"),
            "-m",
            "airmlops_dev.settings_loader",
            str(settings_file),
        ]
        _run_once(cfg, "settings-loader", argv, env)
        state["settings_sha256"] = digest
        state_file.write_text(json.dumps(state))


def _check_binaries(cfg: StackConfig) -> None:
    for name in ("python", "airflow", "mlflow"):
        if not (cfg.bin_dir / name).exists():
            raise StackError(
                f"{name} not found in {cfg.bin_dir}; pass StackConfig(bin_dir=<venv>/bin)"
            )


# Public lifecycle -----------------------------------------------------------------------------
def _session_members(cfg: StackConfig, sid: int) -> set[int]:
    """Live processes of this stack in session ``sid`` (a component's leftovers)."""
    return {pid for pid in stack_processes(cfg) if (st := _proc_stat(pid)) and st[1] == sid}


def up(cfg: StackConfig, wait: bool = True) -> list[ComponentStatus]:
    """Start whatever part of the stack is not running; a no-op when all is up.

    First run: creates directories and secrets, migrates the Airflow DB, loads the settings file
    (again whenever it changes). Then starts the Slack stand-in, MLflow and the four Airflow
    components, each in its own process group and session. Leftovers of a component that died
    (e.g. an orphaned worker still holding its port) are stopped before it is restarted.

    Args:
        cfg: The stack configuration.
        wait: Wait until every component reports healthy.

    Returns:
        ``status()`` after starting (and waiting).

    Raises:
        StackError: A port is taken by another program, a setup step failed, or a component
            did not become healthy in ``cfg.startup_timeout`` (the message names it and shows
            the tail of its log).
    """
    started_at = time.monotonic()
    _check_binaries(cfg)
    with _locked(cfg):
        _initialize(cfg)
        missing = []
        for name in cfg.components:
            pid = _read_pid(cfg.pid_file(name))
            if pid and _is_ours(pid, cfg):
                continue
            missing.append(name)
            if pid and (leftovers := _session_members(cfg, pid)):
                log.warning("%s died; stopping its %d leftover processes", name, len(leftovers))
                _terminate(leftovers, timeout=10.0)
            cfg.pid_file(name).unlink(missing_ok=True)
        for name, port in _ports(cfg).items():
            if name in missing and not port_free(port, cfg.host):
                env_name = {"api-server": "AIRFLOW", "model-api": "MODEL_API"}.get(
                    name, name.upper()
                )
                raise StackError(
                    f"cannot start {name}: {cfg.host}:{port} is in use by another program "
                    f"(stop it, or choose another port with AIRMLOPS_{env_name}_PORT)"
                )
        commands = _commands(cfg) if missing else {}
        # The receiver, MLflow and the model API need no metadata DB: start them while
        # Airflow migrates.
        for name in NO_DB:
            if name in missing:
                _start(cfg, name, *commands[name])
        airflow_missing = [n for n in missing if n not in NO_DB]
        _prepare_airflow_db(cfg, migrate=bool(airflow_missing))
        for name in airflow_missing:
            _start(cfg, name, *commands[name])
        if wait:
            _wait_healthy(cfg, list(cfg.components), cfg.startup_timeout)
    log.info(
        "stack up in %.1fs (%s)",
        time.monotonic() - started_at,
        "started " + ", ".join(missing) if missing else "already running",
    )
    return status(cfg)


def _signal(pids: set[int], sig: signal.Signals) -> None:
    """Signal each process and its process group (never the caller's own group)."""
    own_group = os.getpgrp()
    groups = set()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            groups.add(os.getpgid(pid))
    for pgid in groups - {own_group}:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)


def _terminate(pids: set[int], timeout: float) -> list[int]:
    """SIGTERM, wait up to ``timeout``, SIGKILL what is left; return the survivors."""
    _signal(pids, signal.SIGTERM)
    for sig, wait in ((signal.SIGKILL, timeout), (None, 5.0)):
        deadline = time.monotonic() + wait
        while (alive := {p for p in pids if _alive(p)}) and time.monotonic() < deadline:
            time.sleep(0.2)
        if not alive:
            return []
        if sig is not None:
            log.warning("SIGKILL to %d processes still running after %.0fs", len(alive), wait)
            _signal(alive, sig)
    return sorted(alive)


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
            left = _terminate(pids, timeout)
            if left:
                raise StackError(f"processes of the stack survived SIGKILL: {left}")
        if left := stack_processes(cfg):
            raise StackError(f"processes of the stack are still running: {left}")
        for name in cfg.components:
            cfg.pid_file(name).unlink(missing_ok=True)
        for pid, child in list(_CHILDREN.items()):
            if child.poll() is not None:
                _CHILDREN.pop(pid, None)
        deadline = time.monotonic() + 5.0
        while busy := [f"{n} ({p})" for n, p in _ports(cfg).items() if not port_free(p, cfg.host)]:
            if not stopped:  # not ours: the stack was not running
                log.warning("ports in use by other programs: %s", ", ".join(busy))
                break
            if time.monotonic() > deadline:
                raise StackError(f"ports still in use after stopping the stack: {busy}")
            time.sleep(0.2)
    log.info("stack down in %.1fs (%d processes stopped)", time.monotonic() - started_at, stopped)


# CLI ------------------------------------------------------------------------------------------
def summary(cfg: StackConfig) -> str:
    return "\n".join(
        [
            f"Airflow UI:      {cfg.airflow_url}  (user {ADMIN_USER}; password in "
            f"{cfg.passwords_file})",
            f"MLflow UI:       {cfg.mlflow_url}",
            f"Model API:       {cfg.model_api_url}/invocations/<model>  (GET /health, /metrics)",
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
            print(summary(cfg))
            return 0 if all(r.healthy for r in rows) else 3
    except StackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
