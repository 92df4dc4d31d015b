"""The local stack's configuration: where it lives, its components, ports and URLs.

See airmlops_dev.localstack for what the stack is and how it is started and stopped.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from airmlops_core import settings

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
# Generated for a stack with MLflow basic auth (StackConfig.mlflow_auth, the default).
MLFLOW_SECRET_KEYS = ("MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY")
# The model API's bearer token: its environment, and the model_api_default connection.
MODEL_API_SECRET_KEYS = ("AIRMLOPS_MODEL_API_TOKEN",)
EXECUTORS = ("LocalExecutor", "CeleryExecutor")
WORKER_PREFIX = "celery-worker-"
# Set in a Celery worker's environment: the hostname its task instances report (see
# stack_commands.task_hostname), so the task instances of two workers on one machine can be
# told apart.
WORKER_HOSTNAME_ENV = "AIRMLOPS_WORKER_HOSTNAME"


class StackError(RuntimeError):
    """The local stack could not be started, checked or stopped."""


def env_port(name: str, default: int) -> int:
    """The port in environment variable `name`, else `default`."""
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
        dag_reparse_seconds: AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL: how often an
            unchanged DAG file is parsed again (Airflow's default, 30). Parsing the pack's DAG
            file costs seconds of CPU; new files are found every 5 s regardless.
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
        mlflow_auth: Run MLflow's basic-auth app (default): the admin password is generated
            into ``secrets.env`` (``MLFLOW_AUTH_ADMIN_PASSWORD``), and every process of the
            stack gets it as MLFLOW_TRACKING_USERNAME/PASSWORD (and the ``mlflow_default``
            connection). False runs MLflow without authentication.
        private_component_dirs: Give every component its own private local directory
            (``<home>/private/<component>/``: its working directory, TMPDIR,
            AIRMLOPS_LOCAL_DIR and AIRMLOPS_DATA_DIR), as on separate hosts: nothing one
            component writes to local disk is seen by another, so everything the DAGs hand
            each other must go through S3, the databases and MLflow (set AIRMLOPS_WORK_URI and
            the specs' URIs to ``s3://`` in ``extra_env`` and the specs). AIRFLOW_HOME (task
            logs, read by the api-server) stays shared. Default False: one shared home.
    """

    project_dir: Path = field(default_factory=settings.project_dir)
    home: Path | None = None
    host: str = "127.0.0.1"
    airflow_port: int = field(default_factory=lambda: env_port("AIRMLOPS_AIRFLOW_PORT", 8080))
    mlflow_port: int = field(default_factory=lambda: env_port("AIRMLOPS_MLFLOW_PORT", 5000))
    receiver_port: int = field(default_factory=lambda: env_port("AIRMLOPS_RECEIVER_PORT", 8099))
    model_api_port: int = field(default_factory=lambda: env_port("AIRMLOPS_MODEL_API_PORT", 5001))
    bin_dir: Path = field(default_factory=lambda: Path(sys.executable).parent)
    dags_folder: Path | None = None
    plugins_folder: Path | None = None
    extra_dag_folders: tuple[Path, ...] = ()
    settings_file: Path | None = None
    extra_env: dict[str, str] = field(default_factory=dict)
    receiver_mode: str = "ok"
    parallelism: int = 4
    max_active_tasks: int = 2
    dag_reparse_seconds: int = 30
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
    mlflow_auth: bool = True
    private_component_dirs: bool = False

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
        """Whether Airflow's metadata DB is SQLite (the default, in the home)."""
        return not self.sql_alchemy_conn or self.sql_alchemy_conn.startswith("sqlite")

    # Paths -----------------------------------------------------------------------------------
    @property
    def root(self) -> Path:
        """``home`` as a Path (never None after construction)."""
        assert self.home is not None
        return self.home

    @property
    def airflow_home(self) -> Path:
        """AIRFLOW_HOME: airflow.db, task logs, the admin password file."""
        return self.root / "airflow"

    @property
    def logs_dir(self) -> Path:
        """The components' logs."""
        return self.root / "logs"

    @property
    def run_dir(self) -> Path:
        """The components' PID files and the stack's lock."""
        return self.root / "run"

    @property
    def secrets_file(self) -> Path:
        """Generated secrets, the MLflow admin's password among them (mode 0600)."""
        return self.root / "secrets.env"

    @property
    def passwords_file(self) -> Path:
        """The simple auth manager's password file."""
        return self.airflow_home / "simple_auth_manager_passwords.json.generated"

    @property
    def messages_file(self) -> Path:
        """What was posted to the Slack stand-in."""
        return self.root / "receiver" / "messages.jsonl"

    # URLs ------------------------------------------------------------------------------------
    @property
    def airflow_url(self) -> str:
        """The Airflow api-server (UI and REST API)."""
        return f"http://{self.host}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        """The MLflow tracking server."""
        return f"http://{self.host}:{self.mlflow_port}"

    @property
    def model_api_url(self) -> str:
        """The model REST API."""
        return f"http://{self.host}:{self.model_api_port}"

    @property
    def receiver_url(self) -> str:
        """The Slack stand-in."""
        return f"http://{self.host}:{self.receiver_port}"

    @property
    def webhook_url(self) -> str:
        """The Slack stand-in's incoming webhook."""
        return self.receiver_url + WEBHOOK_PATH

    @property
    def ports(self) -> dict[str, int]:
        """The port of each component that listens on one."""
        return {
            "receiver": self.receiver_port,
            "mlflow": self.mlflow_port,
            "model-api": self.model_api_port,
            "api-server": self.airflow_port,
        }

    @property
    def urls(self) -> dict[str, str]:
        """The base URL of each component that listens on a port."""
        return {
            "receiver": self.receiver_url,
            "mlflow": self.mlflow_url,
            "model-api": self.model_api_url,
            "api-server": self.airflow_url,
        }

    def component_dir(self, name: str) -> Path:
        """The working directory of component `name`: its private directory with
        ``private_component_dirs``, else the home."""
        return self.root / "private" / name if self.private_component_dirs else self.root

    def component_env(self, name: str) -> dict[str, str]:
        """The local-directory environment of component `name` (empty without
        ``private_component_dirs``: the home's directories from ``base_env`` hold)."""
        if not self.private_component_dirs:
            return {}
        own = self.component_dir(name)
        return {
            "TMPDIR": str(own / "tmp"),
            "AIRMLOPS_LOCAL_DIR": str(own),
            "AIRMLOPS_DATA_DIR": str(own / "data"),
        }

    def log_file(self, name: str) -> Path:
        """The log of component (or setup step) `name`."""
        return self.logs_dir / f"{name}.log"

    def pid_file(self, name: str) -> Path:
        """The PID file of component `name`."""
        return self.run_dir / f"{name}.pid"


class ComponentStatus(NamedTuple):
    """One row of ``status()``."""

    component: str
    pid: int | None
    alive: bool
    url: str | None
    healthy: bool
