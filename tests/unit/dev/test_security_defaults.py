"""Secure defaults, checked statically: version floors, Airflow and MLflow settings, templates.

The floors clear published advisories: apache-airflow >= 3.3.0 (connection secrets readable by
read-only users, Slack credential fields returned in plain text, XCom PATCH code execution,
shell injection through dag_run.conf), raised to 3.3.1 and starlette >= 1.3.1 for the
advisories of those releases, and mlflow >= 3.16.1 (earlier releases ship a default basic-auth
login). `make audit` checks the whole lock against PyPI's advisory data where it answers.
Settings are checked in docker-compose.yml and in the local stack's environment
(airmlops_dev.stack_env.airflow_env).
"""

from __future__ import annotations

import ast
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from airmlops_dev.stack_config import StackConfig
from airmlops_dev.stack_env import airflow_env
from paths import PROJECT_DIR as ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
FLOORS = {
    "apache-airflow": Version("3.3.1"),
    "apache-airflow-core": Version("3.3.1"),
    "mlflow": Version("3.16.1"),
    "mlflow-skinny": Version("3.16.1"),
    "starlette": Version("1.3.1"),
}
# Built from parts so this file does not contain what it forbids.
DEFAULT_LOGINS = ("admin" + ":" + "admin", "admin" + "/" + "admin", "password" + "1234")
ALL_ADMINS_ON = re.compile(
    r"simple_auth_manager_all_admins['\"]?\s*[:=]\s*['\"]?(true|1|yes|on)\b", re.I
)
TRUE = {"true", "1", "yes", "on", "t", "y"}


def _tracked_text_files() -> Iterator[tuple[Path, str]]:
    """Every text file git tracks (the whole repository in CI's fresh clone)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True, timeout=60
        ).stdout
        paths = [ROOT / p for p in out.decode().split("\0") if p]
    except (OSError, subprocess.SubprocessError):
        pytest.skip("not a git checkout")
    for path in paths:
        try:
            yield path, path.read_text(encoding="utf-8")
        except (UnicodeDecodeError, FileNotFoundError, IsADirectoryError):
            continue


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _airflow_services(compose: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {
        name: env
        for name, service in compose["services"].items()
        if "AIRFLOW__CORE__EXECUTOR" in (env := _environment(service))
    }


@pytest.fixture(scope="module")
def local_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    home = tmp_path_factory.mktemp("stack")
    return airflow_env(StackConfig(project_dir=ROOT, home=home))


def _pack_sources() -> Iterator[tuple[Path, str]]:
    """The pack's Python files: dags/, plugins/, include/."""
    for path, text in _tracked_text_files():
        if path.suffix == ".py" and path.relative_to(ROOT).parts[0] in (
            "dags",
            "plugins",
            "include",
        ):
            yield path, text


# Version floors -------------------------------------------------------------------------------
def _locked() -> dict[str, Version]:
    versions = {}
    for line in (ROOT / "requirements" / "lock.txt").read_text(encoding="utf-8").splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            versions[name.split("[")[0].lower()] = Version(version.strip())
    return versions


@pytest.mark.parametrize("package", sorted(FLOORS))
def test_lock_clears_the_advisory_floors(package):
    locked = _locked()
    assert package in locked, f"requirements/lock.txt does not pin {package}"
    assert locked[package] >= FLOORS[package], (
        f"requirements/lock.txt pins {package}=={locked[package]}, below the floor "
        f"{FLOORS[package]} that clears published advisories"
    )


def test_pyproject_forbids_versions_below_the_floors():
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = [d for ds in project["optional-dependencies"].values() for d in ds]
    reqs = [Requirement(d) for d in [*project["dependencies"], *extras]]
    for name in ("apache-airflow", "mlflow", "starlette"):
        floor = FLOORS[name]
        below = Version(f"{floor.major}.{floor.minor}.{floor.micro}.dev0")
        found = [r for r in reqs if r.name.lower() == name]
        assert found, f"pyproject.toml does not depend on {name} (nor does any extra)"
        for req in found:
            assert not req.specifier.contains(below, prereleases=True), (
                f"pyproject.toml allows {req} {below} (< {floor}): raise the lower bound"
            )
            assert req.specifier.contains(_locked()[name])


def test_compose_runs_the_locked_versions(compose):
    """The compose image is built from the runtime lock (lock.txt's versions:
    test_runtime_lock.py); no service pulls an older Airflow or MLflow."""
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    arg = re.search(r"^ARG AIRFLOW_VERSION=(\S+)$", dockerfile, re.M)
    assert arg, "docker/Dockerfile must pin ARG AIRFLOW_VERSION"
    assert Version(arg[1]) >= FLOORS["apache-airflow"]
    assert "requirements/runtime.lock.txt" in dockerfile
    for name, service in compose["services"].items():
        image = str(service.get("image", ""))
        for repo, floor in (("apache/airflow", "apache-airflow"), ("mlflow/mlflow", "mlflow")):
            if repo in image and not service.get("build"):
                tag = re.search(r"(\d+\.\d+\.\d+)", image.rpartition(":")[2])
                assert tag, f"{name}: {image} is not pinned to a version"
                assert Version(tag[1]) >= FLOORS[floor], f"{name}: {image} below {floor} floor"
    assert compose["services"]["mlflow"].get("build"), "MLflow must run the locked version"


# Airflow settings -----------------------------------------------------------------------------
def _false(value: str | None) -> bool:
    return value is not None and value.strip().lower() in {"false", "0", "no", "off", "f", "n"}


def _check_airflow_env(where: str, env: dict[str, str]) -> None:
    assert _false(env.get("AIRFLOW__CORE__LOAD_EXAMPLES")), f"{where}: load_examples must be off"
    assert _false(env.get("AIRFLOW__API__EXPOSE_CONFIG")), f"{where}: expose_config must be off"
    all_admins = env.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS")
    assert not ALL_ADMINS_ON.search(f"simple_auth_manager_all_admins = {all_admins}"), (
        f"{where}: all-admins mode is on"
    )
    assert env.get("AIRFLOW__CORE__AUTH_MANAGER"), f"{where}: no auth manager configured"
    assert not _false(env.get("AIRFLOW__CORE__HIDE_SENSITIVE_VAR_CONN_FIELDS", "True")), (
        f"{where}: secrets masking is off"
    )
    assert env.get("AIRFLOW__CORE__ENABLE_XCOM_PICKLING", "False").lower() not in TRUE, (
        f"{where}: XCom pickling is on"
    )


def test_compose_airflow_settings(compose):
    services = _airflow_services(compose)
    assert len(services) == 7  # init, api-server, scheduler, dag-processor, triggerer, 2 workers
    for name, env in services.items():
        _check_airflow_env(f"docker-compose.yml: {name}", env)
        users = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(",")
        assert len(users) == 1, f"{name}: one admin user only"


def test_local_stack_airflow_settings(local_env):
    _check_airflow_env("stack_env.airflow_env()", local_env)


def test_no_all_admins_mode_anywhere():
    hits = [
        f"{path.relative_to(ROOT)}:{text.count(chr(10), 0, m.start()) + 1}"
        for path, text in _tracked_text_files()
        for m in ALL_ADMINS_ON.finditer(text.replace('"', "").replace("'", ""))
    ]
    assert not hits, f"simple auth manager all-admins mode switched on in: {hits}"
    assert ALL_ADMINS_ON.search("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=" + "True")


def test_no_default_login_anywhere():
    hits = [
        f"{path.relative_to(ROOT)}: {login}"
        for path, text in _tracked_text_files()
        for login in DEFAULT_LOGINS
        if login in text.lower()
    ]
    assert not hits, f"default credentials in the repository: {hits}"


# No dag_run.conf in shell templates ------------------------------------------------------------
SHELL_OPERATORS = {"BashOperator", "SSHOperator", "BashSensor"}
SHELL_KEYWORDS = {"bash_command", "command", "cmd", "ssh_command", "env"}
SHELL_CALLS = {"os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"}
SUBPROCESS = {"run", "Popen", "call", "check_call", "check_output"}
CONF = re.compile(r"dag_run\s*\.\s*conf|dag_run\s*\[\s*['\"]conf")


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    if isinstance(node, ast.Call):
        return _dotted(node.func)
    return ""


def _texts(node: ast.AST) -> Iterator[str]:
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str):
            yield sub.value
        elif isinstance(sub, ast.Name | ast.Attribute):
            yield _dotted(sub)  # dag_run.conf used in an f-string or concatenation


def shell_templates_using_conf(source: str, filename: str = "<source>") -> list[str]:
    """Places where a shell command or template reads ``dag_run.conf``.

    Shell contexts: BashOperator/SSHOperator arguments, ``bash_command``/``command``/``cmd``
    keywords, ``@task.bash`` functions, ``subprocess`` calls with ``shell=True`` and
    ``os.system``/``os.popen``.
    """
    tree = ast.parse(source, filename)
    shell_nodes: list[ast.AST] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = _dotted(node.func)
            short = name.rpartition(".")[2]
            shell_kw = any(
                k.arg == "shell" and isinstance(k.value, ast.Constant) and k.value.value
                for k in node.keywords
            )
            if (
                short in SHELL_OPERATORS
                or name in SHELL_CALLS
                or (short in SUBPROCESS and shell_kw)
            ):
                shell_nodes.append(node)
            else:
                shell_nodes += [k.value for k in node.keywords if k.arg in SHELL_KEYWORDS]
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            if any(_dotted(d).endswith("task.bash") for d in node.decorator_list):
                shell_nodes.append(node)
    return [
        f"{filename}:{getattr(node, 'lineno', '?')}"
        for node in shell_nodes
        if any(CONF.search(text) for text in _texts(node))
    ]


def test_no_dag_run_conf_in_any_shell_template():
    sources = [(path, text) for path, text in _pack_sources()]
    assert len(sources) > 20
    hits = [
        hit
        for path, text in sources
        for hit in shell_templates_using_conf(text, str(path.relative_to(ROOT)))
    ]
    assert not hits, (
        f"dag_run.conf reaches a shell command (injection risk; pass it through params or env "
        f"and quote it): {hits}"
    )


@pytest.mark.parametrize(
    ("snippet", "flagged"),
    [
        ('BashOperator(task_id="t", bash_command="echo {{ dag_run.conf[\'x\'] }}")', True),
        ('SSHOperator(task_id="t", command="run {{ dag_run.conf.get(\'x\') }}")', True),
        ('subprocess.run(f"echo {dag_run.conf}", shell=True)', True),
        ("@task.bash\ndef f(dag_run=None):\n    return f\"echo {dag_run.conf['x']}\"", True),
        ('os.system("ls " + "{{ dag_run.conf }}")', True),
        ('BashOperator(task_id="t", bash_command="echo $X", env={"X": "{{ params.x }}"})', False),
        ('PythonOperator(task_id="t", op_kwargs={"c": "{{ dag_run.conf }}"})', False),
        ('subprocess.run(["echo", str(conf)], check=True)', False),
    ],
)
def test_shell_template_detector(snippet, flagged):
    assert bool(shell_templates_using_conf(snippet)) is flagged


# Nothing unpickles user input ------------------------------------------------------------------
UNSAFE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}


def test_no_pickle_loading_in_the_pack():
    """Models load from the registry (skops format); no code path unpickles bytes."""
    hits = []
    for path, text in _pack_sources():
        for node in ast.walk(ast.parse(text)):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            hits += [
                f"{path.relative_to(ROOT)}:{node.lineno} imports {n}"
                for n in names
                if n.split(".")[0] in UNSAFE_MODULES
            ]
    assert not hits, hits


# MLflow ---------------------------------------------------------------------------------------
def test_mlflow_auth_allow_list_and_proxied_artifacts(compose):
    mlflow = compose["services"]["mlflow"]
    argv = [str(a) for a in mlflow["command"]]
    options = dict(a.partition("=")[::2] for a in argv if a.startswith("--"))
    assert options.get("--app-name") == "basic-auth"
    assert "--serve-artifacts" in options
    assert "--no-serve-artifacts" not in options
    assert options["--artifacts-destination"].startswith("s3://")
    hosts = options["--allowed-hosts"].split(",")
    assert {"mlflow:*", "localhost:*"} <= set(hosts), hosts
    assert "*" not in hosts
    env = _environment(mlflow)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"].startswith("${MLFLOW_ADMIN_PASSWORD:?")
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"].startswith("${")
    ini = (ROOT / "docker" / "mlflow" / "basic_auth.ini").read_text(encoding="utf-8")
    assert env["MLFLOW_AUTH_CONFIG_PATH"].endswith("basic_auth.ini")
    assert not re.search(r"^\s*admin_password\s*=", ini, re.M), "password in basic_auth.ini"
    assert re.search(r"^default_permission = (READ|NO_PERMISSIONS)$", ini, re.M)
    for name, service in compose["services"].items():
        security_off = _environment(service).get("MLFLOW_SERVER_DISABLE_SECURITY_MIDDLEWARE", "")
        assert security_off.lower() not in TRUE, f"{name}: MLflow security middleware is off"


def test_only_the_mlflow_server_holds_artifact_store_credentials(compose):
    for name, service in compose["services"].items():
        env = _environment(service)
        text = " ".join(env.values())
        if name == "mlflow":
            assert "S3_MLFLOW_SECRET_KEY" in env["AWS_SECRET_ACCESS_KEY"]
            continue
        if name == "objectstore":  # the S3 server itself defines the identities
            continue
        assert "AWS_SECRET_ACCESS_KEY" not in env, f"{name} holds S3 credentials"
        assert "S3_MLFLOW_" not in text, f"{name} holds the artifact store's credentials"
