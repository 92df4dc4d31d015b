"""docker-compose.yml, checked without a Docker engine, and the secret generator behind it.

No Docker engine runs where this project is built, so the compose file is validated statically:
build contexts, Dockerfile sources, bind mounts, variables, volumes, health checks, dependency
conditions, published ports and secrets. The helper scripts under docker/ run for real where
the machine allows it (the bucket job against a real SeaweedFS S3 server).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from airmlops_dev import compose_env
from paths import PROJECT_DIR as ROOT

COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DEPLOYMENT_DOC = ROOT / "docs" / "deployment.md"
LOCK = ROOT / "requirements" / "lock.txt"

# ${NAME}, ${NAME:-default}, ${NAME-default}, ${NAME:?message}, ${NAME?message}
VAR_REF = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}")
SECRET_KEY_NAME = re.compile(r"PASSWORD|SECRET|TOKEN|FERNET|(^|_)KEY(_ID)?$|ACCESS_KEY", re.I)
NOT_A_SECRET_NAME = re.compile(r"_(FILE|PATH|USERNAME|USER)$")
USERINFO = re.compile(r"[a-z][a-z0-9+.-]*://(?P<user>[^:/@\s]*):(?P<password>[^@\s]*)@", re.I)
CONDITIONS = {"service_healthy", "service_completed_successfully", "service_started"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def _strings(node: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """Every string (keys too) in a parsed YAML tree, with where it is."""
    if isinstance(node, dict):
        for key, value in node.items():
            yield f"{path}.{key}", str(key)
            yield from _strings(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _strings(value, f"{path}[{i}]")
    elif isinstance(node, str):
        yield path, node


def _unescaped(text: str) -> str:
    """The text with Compose's ``$$`` escapes (a literal $ for the container) removed."""
    return text.replace("$$", "")


def _refs(text: str) -> list[re.Match[str]]:
    return list(VAR_REF.finditer(_unescaped(text)))


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


def _one_shot(service: dict[str, Any]) -> bool:
    return str(service.get("restart", "no")) == "no"


def _volume_entries(service: dict[str, Any]) -> Iterator[tuple[str, str, bool]]:
    """(source, target, read_only) of each volume entry, short or long syntax."""
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            yield str(entry.get("source", "")), str(entry["target"]), bool(entry.get("read_only"))
        else:
            parts = str(entry).split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else ("", parts[0])
            yield source, target, len(parts) > 2 and "ro" in parts[2].split(",")


def _is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~", "$"))


# Build ----------------------------------------------------------------------------------------
def _dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", path.read_text(encoding="utf-8"))
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def _built_services(services: dict[str, dict[str, Any]]) -> dict[str, tuple[Path, Path]]:
    built = {}
    for name, service in services.items():
        build = service.get("build")
        if build is None:
            continue
        context = build if isinstance(build, str) else build.get("context", ".")
        dockerfile = "Dockerfile"
        if isinstance(build, dict):
            dockerfile = build.get("dockerfile", dockerfile)
        built[name] = ((ROOT / context).resolve(), (ROOT / context / dockerfile).resolve())
    return built


def test_build_contexts_dockerfiles_and_copy_sources_exist(services):
    built = _built_services(services)
    assert built, "no service builds the pack image"
    for name, (context, dockerfile) in built.items():
        assert context.is_dir(), f"{name}: build context {context} does not exist"
        assert dockerfile.is_file(), f"{name}: Dockerfile {dockerfile} does not exist"
        for instruction, args in _dockerfile_instructions(dockerfile):
            if instruction not in ("COPY", "ADD"):
                continue
            words = [w for w in shlex.split(args) if not w.startswith("--")]
            for source in words[:-1]:
                assert (context / source).exists(), (
                    f"{dockerfile.relative_to(ROOT)}: {instruction} source {source} does not "
                    f"exist in the build context {context}"
                )


def test_image_is_the_official_airflow_image_of_the_locked_version(services):
    locked = _locked_versions()
    (_, dockerfile), *_ = _built_services(services).values()
    instructions = _dockerfile_instructions(dockerfile)
    args = {}
    for instruction, rest in instructions:
        if instruction == "ARG" and "=" in rest:
            key, _, value = rest.partition("=")
            args[key] = value
        if instruction == "FROM":
            base = rest
            break
    assert args.get("AIRFLOW_VERSION") == locked["apache-airflow"], (
        f"{dockerfile.relative_to(ROOT)}: ARG AIRFLOW_VERSION={args.get('AIRFLOW_VERSION')} but "
        f"requirements/lock.txt pins apache-airflow=={locked['apache-airflow']}"
    )
    assert base.startswith("apache/airflow:"), base
    assert "${AIRFLOW_VERSION}" in base, base
    assert "python${PYTHON_VERSION}" in base, base
    assert args.get("PYTHON_VERSION") == "3.11", "pyproject.toml requires Python 3.11"
    runs = " ".join(rest for instruction, rest in instructions if instruction == "RUN")
    # the pack with its runtime extras, never `dev`, from the runtime lock (no dev tool:
    # tests/unit/dev/test_runtime_lock.py); Airflow held at the base image's version
    install = re.search(r"pip install ([^&]*)", runs)
    assert install, runs
    assert re.search(r"-r \S*requirements/runtime\.lock\.txt", install[1]), "the runtime lock"
    assert not re.search(r"requirements/lock\.txt", install[1]), "the dev lock stays out"
    extras = re.search(r"/opt/airmlops/src\[([a-z,]+)\]", install[1])
    assert extras, f"the pack must be installed with its extras: {install[1]}"
    assert set(extras[1].split(",")) == {"serve", "celery", "stack"}
    assert '"apache-airflow==${AIRFLOW_VERSION}"' in install[1]
    # Only the services that run the pack image's code build it; all of them share one tag.
    images = {services[n].get("image") for n in _built_services(services)}
    assert len(images) == 1, f"services building docker/Dockerfile use several tags: {images}"


def test_dockerignore_keeps_secrets_and_local_state_out_of_the_build_context():
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".env", ".venv", ".local", ".git"):
        assert entry in ignored, f".dockerignore must exclude {entry}"


# Mounts and volumes ---------------------------------------------------------------------------
def test_bind_mounted_host_paths_exist_and_code_is_read_only(services):
    binds = 0
    for name, service in services.items():
        for source, target, read_only in _volume_entries(service):
            if not _is_bind(source):
                continue
            binds += 1
            assert not _refs(source), f"{name}: bind source {source} depends on a variable"
            host = (ROOT / source).resolve()
            assert host.exists(), f"{name}: bind-mounted host path {source} does not exist"
            assert ROOT in host.parents or host == ROOT, f"{name}: {source} is outside the repo"
            assert read_only, f"{name}: bind mount {source}:{target} must be read-only (:ro)"
    assert binds >= 4


def test_named_volumes_are_declared_and_used(compose, services):
    declared = set((compose.get("volumes") or {}).keys())
    used = set()
    for name, service in services.items():
        for source, target, _ in _volume_entries(service):
            if source and not _is_bind(source):
                assert source in declared, f"{name}: named volume {source} is not declared"
                used.add(source)
            elif not source:
                pytest.fail(f"{name}: anonymous volume {target}: use a named volume for state")
    assert declared == used, f"declared but unused volumes: {sorted(declared - used)}"
    # State of every stateful service lives in a named volume.
    for service, target in (
        ("postgres", "/var/lib/postgresql/data"),
        ("redis", "/data"),
        ("objectstore", "/data"),
        ("mlflow", "/var/lib/mlflow-auth"),
        ("airflow-apiserver", "/opt/airflow/logs"),
        ("prometheus", "/prometheus"),
        ("grafana", "/var/lib/grafana"),
    ):
        targets = {t for s, t, _ in _volume_entries(services[service]) if not _is_bind(s)}
        assert target in targets, f"{service}: {target} is not on a named volume"


# Variables and secrets ------------------------------------------------------------------------
def _env_example() -> dict[str, str]:
    return compose_env.parse_env(ENV_EXAMPLE.read_text(encoding="utf-8"), str(ENV_EXAMPLE))


def test_every_variable_is_in_env_example_and_generated_by_compose_env(compose):
    example = _env_example()
    generated = compose_env.BY_NAME
    seen: dict[str, set[str]] = {}
    for where, text in _strings(compose):
        unescaped = _unescaped(text)
        bare = re.findall(r"\$(?!\{)([A-Za-z_]\w*)", unescaped)
        assert not bare, f"{where}: ${bare[0]} without braces (escape it as $$ for the shell)"
        for ref in VAR_REF.finditer(unescaped):
            name = ref["name"]
            assert name in example, f"{where}: ${{{name}}} is not defined in .env.example"
            assert name in generated, f"{where}: ${{{name}}} is not written by compose_env"
            seen.setdefault(name, set()).add(ref["op"] or "")
            var = generated[name]
            if var.generate is not None:
                assert ref["op"] == ":?", (
                    f"{where}: secret ${{{name}}} must be required (${{{name}:?...}}), "
                    "so the stack never starts with an empty secret"
                )
            elif ref["op"] == ":-":
                assert ref["arg"] == var.default, (
                    f"{where}: default of ${{{name}}} is {ref['arg']!r}, compose_env writes "
                    f"{var.default!r}"
                )
    unused = sorted(set(generated) - set(seen))
    assert not unused, f"compose_env writes variables docker-compose.yml never uses: {unused}"


def test_env_example_is_the_template_compose_env_renders_and_holds_no_secret():
    assert ENV_EXAMPLE.read_text(encoding="utf-8") == compose_env.render_template(), (
        ".env.example is out of date: python -m airmlops_dev.compose_env --template > .env.example"
    )
    for name, value in _env_example().items():
        if compose_env.BY_NAME[name].secret:
            assert value == "", f".env.example: {name} must be empty (a template, not a secret)"


def _secret_names() -> set[str]:
    return {v.name for v in compose_env.VARIABLES if v.secret}


def test_no_literal_secret_values(services):
    checked = 0
    for name, service in services.items():
        for key, value in _environment(service).items():
            where = f"{name}.environment.{key}"
            if SECRET_KEY_NAME.search(key) and not NOT_A_SECRET_NAME.search(key):
                checked += 1
                assert VAR_REF.fullmatch(value), (
                    f"{where}: a secret-like setting must be exactly one ${{VAR:?...}} reference"
                )
            for match in USERINFO.finditer(value):
                checked += 1
                assert VAR_REF.fullmatch(match["password"]), (
                    f"{where}: the password in a URL must be a ${{VAR}} reference"
                )
            if value.lstrip().startswith("{"):  # an Airflow connection as JSON
                conn = json.loads(value)
                if conn.get("password"):
                    checked += 1
                    assert VAR_REF.fullmatch(conn["password"]), f"{where}: literal JSON password"
    assert checked >= 20, f"only {checked} secret-like settings found: the check is too narrow"


def test_secret_detectors_can_fail():
    assert SECRET_KEY_NAME.search("AWS_SECRET_ACCESS_KEY")
    assert SECRET_KEY_NAME.search("AIRFLOW__CORE__FERNET_KEY")
    assert not SECRET_KEY_NAME.search("AIRFLOW__CORE__LOAD_EXAMPLES")
    assert NOT_A_SECRET_NAME.search("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    assert USERINFO.search("redis://:hunter2@redis:6379/0")["password"] == "hunter2"
    assert not VAR_REF.fullmatch("hunter2")


def test_secrets_never_reach_a_command_line(services):
    """argv is visible in process lists and `docker inspect`: secrets go in the environment."""
    secrets_ = _secret_names()
    for name, service in services.items():
        for field in ("command", "entrypoint"):
            for where, text in _strings(service.get(field), f"{name}.{field}"):
                leaked = {r["name"] for r in _refs(text)} & secrets_
                assert not leaked, f"{where}: secret {sorted(leaked)} on a command line"


# Who holds which secret ---------------------------------------------------------------------
# Airflow's own secrets (metadata DB, broker, Fernet key, JWT and session secrets) go to every
# Airflow component, which must agree on them; the pack's secrets only where its code runs.
AIRFLOW_CORE = {
    "AIRFLOW_DB_PASSWORD",
    "REDIS_PASSWORD",
    "AIRFLOW_FERNET_KEY",
    "AIRFLOW_JWT_SECRET",
    "AIRFLOW_API_SECRET_KEY",
}
CALLBACKS = {"SLACK_WEBHOOK_URL"}  # alert callbacks: dag-processor, triggerer, workers
# task code (the health probe task calls the model API with its token)
TASKS = {"MLFLOW_ADMIN_PASSWORD", "S3_DATA_ACCESS_KEY", "S3_DATA_SECRET_KEY", "MODEL_API_TOKEN"}
S3_KEYS = {
    f"S3_{who}_{part}_KEY" for who in ("ADMIN", "MLFLOW", "DATA") for part in ("ACCESS", "SECRET")
}
SECRETS_BY_SERVICE = {
    "postgres": {"POSTGRES_PASSWORD"},
    "postgres-init": {"POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD"},
    "redis": {"REDIS_PASSWORD"},
    "objectstore": S3_KEYS,  # the S3 server defines the three identities
    "create-buckets": {"S3_ADMIN_ACCESS_KEY", "S3_ADMIN_SECRET_KEY"},
    "mlflow": {
        "MLFLOW_DB_PASSWORD",
        "MLFLOW_ADMIN_PASSWORD",
        "MLFLOW_FLASK_SECRET_KEY",
        "S3_MLFLOW_ACCESS_KEY",
        "S3_MLFLOW_SECRET_KEY",
    },
    "mlflow-init": {"MLFLOW_ADMIN_PASSWORD", "MLFLOW_READER_PASSWORD"},
    "model-api": {"MLFLOW_READER_PASSWORD", "MODEL_API_TOKEN", "MODEL_API_METRICS_TOKEN"},
    "airflow-init": AIRFLOW_CORE | {"AIRFLOW_ADMIN_PASSWORD"},
    "airflow-apiserver": AIRFLOW_CORE,
    "airflow-scheduler": AIRFLOW_CORE,
    "airflow-dag-processor": AIRFLOW_CORE | CALLBACKS,
    "airflow-triggerer": AIRFLOW_CORE | CALLBACKS,
    "airflow-worker-1": AIRFLOW_CORE | CALLBACKS | TASKS,
    "airflow-worker-2": AIRFLOW_CORE | CALLBACKS | TASKS,
    "prometheus": {"MODEL_API_METRICS_TOKEN"},  # scrapes /metrics, cannot score
    "grafana": {"GRAFANA_ADMIN_PASSWORD"},
}


def _secrets_of(service: dict[str, Any]) -> set[str]:
    """The secrets of .env a service's definition (environment, command, anything) refers to."""
    secrets_ = _secret_names()
    return {r["name"] for _, text in _strings(service) for r in _refs(text)} & secrets_


def test_each_service_gets_only_the_secrets_it_needs(services):
    assert set(SECRETS_BY_SERVICE) == set(services), "every service needs an allow-list entry"
    for name, service in services.items():
        got = _secrets_of(service)
        allowed = SECRETS_BY_SERVICE[name]
        assert not got - allowed, f"{name} gets secrets it does not need: {sorted(got - allowed)}"
        assert got == allowed, f"{name} lacks {sorted(allowed - got)}: update the allow-list"
    every = set().union(*SECRETS_BY_SERVICE.values())
    assert every == _secret_names(), f"secrets no service uses: {_secret_names() - every}"


def test_secret_allow_list_check_can_fail():
    model_api = {"environment": {"MLFLOW_TRACKING_PASSWORD": "${MLFLOW_ADMIN_PASSWORD:?x}"}}
    assert _secrets_of(model_api) == {"MLFLOW_ADMIN_PASSWORD"}
    assert _secrets_of({"command": ["run", "--key=${AIRFLOW_FERNET_KEY:?x}"]}) == {
        "AIRFLOW_FERNET_KEY"
    }
    assert _secrets_of({"healthcheck": {"test": "redis-cli -a $$REDIS_PASSWORD"}}) == set()


def test_the_model_api_logs_in_to_mlflow_as_the_read_only_user(services):
    api = _environment(services["model-api"])
    assert api["MLFLOW_TRACKING_USERNAME"] == "${MLFLOW_READER_USER:-model-api}"
    assert VAR_REF.fullmatch(api["MLFLOW_TRACKING_PASSWORD"])["name"] == "MLFLOW_READER_PASSWORD"
    assert compose_env.BY_NAME["MLFLOW_READER_USER"].default != (
        compose_env.BY_NAME["MLFLOW_ADMIN_USER"].default
    )
    not_for_the_api = (
        "AIRFLOW_CONN_MLFLOW_DEFAULT",
        "AWS_SECRET_ACCESS_KEY",
        "AIRFLOW__CORE__FERNET_KEY",
    )
    for key in not_for_the_api:
        assert key not in api, f"model-api holds {key}"
    # mlflow-init creates the reader (as the admin) before the model API starts
    init = services["mlflow-init"]
    init_env = _environment(init)
    assert init_env["MLFLOW_READER_USER"] == api["MLFLOW_TRACKING_USERNAME"]
    assert init_env["MLFLOW_READER_PASSWORD"] == api["MLFLOW_TRACKING_PASSWORD"]
    assert init_env["MLFLOW_TRACKING_USERNAME"] == "${MLFLOW_ADMIN_USER:-admin}"
    assert _as_list(init["command"]) == ["python", "-m", "airmlops_dev.mlflow_users"]
    assert init["depends_on"]["mlflow"]["condition"] == "service_healthy"
    assert services["model-api"]["depends_on"]["mlflow-init"] == {
        "condition": "service_completed_successfully"
    }
    # a user holds only its grants: no default workspace access, so no creating either
    assert "--enable-workspaces" in _as_list(services["mlflow"]["command"])
    ini = (ROOT / "docker" / "mlflow" / "basic_auth.ini").read_text(encoding="utf-8")
    assert re.search(r"^grant_default_workspace_access = false$", ini, re.M)


# Health checks, dependencies, ports -----------------------------------------------------------
def test_every_service_has_a_healthcheck(services):
    for name, service in services.items():
        check = service.get("healthcheck") or {}
        if _one_shot(service):
            assert check.get("disable") is True, (
                f"{name}: a one-shot job declares `healthcheck: disable: true` explicitly"
            )
            continue
        assert check.get("test"), f"{name}: no healthcheck"
        assert not check.get("disable"), f"{name}: healthcheck disabled"
        assert str(service.get("restart")) in ("always", "unless-stopped"), (
            f"{name}: a long-running service should restart (restart: unless-stopped)"
        )


def test_every_dependency_waits_for_a_condition(services):
    edges = 0
    for name, service in services.items():
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on must map services to conditions"
        for target, spec in depends.items():
            edges += 1
            assert target in services, f"{name}: depends on unknown service {target}"
            condition = (spec or {}).get("condition")
            assert condition in CONDITIONS - {"service_started"}, (
                f"{name}: depends_on {target} needs condition service_healthy or "
                f"service_completed_successfully, got {condition!r}"
            )
            if _one_shot(services[target]):
                assert condition == "service_completed_successfully", (
                    f"{name}: {target} is a one-shot job; wait for service_completed_successfully"
                )
            else:
                assert condition == "service_healthy", f"{name}: wait for {target} to be healthy"
    assert edges >= 20
    # No cycles: a topological order exists.
    pending = {n: set(s.get("depends_on", {})) for n, s in services.items()}
    while pending:
        ready = [n for n, deps in pending.items() if not deps & set(pending)]
        assert ready, f"dependency cycle among {sorted(pending)}"
        for n in ready:
            del pending[n]


def test_published_ports_bind_localhost_only(services):
    published = 0
    for name, service in services.items():
        assert service.get("network_mode") != "host", f"{name}: network_mode host"
        for port in service.get("ports") or []:
            published += 1
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", f"{name}: port {port} not on 127.0.0.1"
            else:
                assert str(port).startswith("127.0.0.1:"), f"{name}: port {port} not on 127.0.0.1"
    assert published == 6  # Airflow, MLflow, model API, S3, Prometheus, Grafana; no DB or Redis
    for internal in ("postgres", "redis"):
        assert not services[internal].get("ports"), f"{internal} must not be published"


# The topology the issue and the docs describe -------------------------------------------------
EXPECTED_SERVICES = {
    "postgres",
    "postgres-init",
    "redis",
    "objectstore",
    "create-buckets",
    "mlflow",
    "mlflow-init",
    "model-api",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "airflow-worker-1",
    "airflow-worker-2",
    "prometheus",
    "grafana",
}


def test_topology(services):
    assert set(services) == EXPECTED_SERVICES
    commands = {n: " ".join(map(str, _as_list(s.get("command")))) for n, s in services.items()}
    assert commands["airflow-apiserver"] == "api-server"
    assert commands["airflow-scheduler"] == "scheduler"
    assert commands["airflow-dag-processor"] == "dag-processor"
    assert commands["airflow-triggerer"] == "triggerer"
    assert commands["airflow-worker-1"] == commands["airflow-worker-2"] == "celery worker"
    assert commands["model-api"] == "python -m airmlops_core.serve.model_api --host 0.0.0.0"
    assert _environment(services["model-api"])["AIRMLOPS_MODEL_API_PORT"] == "5001"
    for name, service in services.items():
        env = _environment(service)
        if name.startswith("airflow-"):
            assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
            assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql"), name
            assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://"), name
            assert "@postgres:5432/airflow" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"], name
            mounts = {t: s for s, t, _ in _volume_entries(service)}
            for folder in ("dags", "plugins", "include"):
                assert mounts.get(f"/opt/airflow/{folder}") == f"./{folder}", (name, folder)
    assert "@postgres:5432/mlflow" in _environment(services["mlflow"])["MLFLOW_BACKEND_STORE_URI"]
    assert _environment(services["model-api"])["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert "/health" in " ".join(services["model-api"]["healthcheck"]["test"])
    init = services["airflow-init"]
    script = (ROOT / "docker" / "airflow-init.sh").read_text(encoding="utf-8")
    assert "/opt/airmlops/bin/airflow-init.sh" in _as_list(init["command"])
    assert "airflow db migrate" in script
    assert "python -m airmlops_dev.settings_loader" in script
    assert "--airflow-passwords-file" in script
    assert any(s == "./airflow_settings.yaml" for s, _, _ in _volume_entries(init))
    assert not re.search(r"users create|_AIRFLOW_WWW_USER", script + COMPOSE_FILE.read_text())


def test_the_model_api_and_its_probe_share_one_token_by_environment(services):
    api = _environment(services["model-api"])
    ref = "${MODEL_API_TOKEN:?run python -m airmlops_dev.compose_env}"
    assert api["AIRMLOPS_MODEL_API_TOKEN"] == ref
    assert "MODEL_API_TOKEN" not in " ".join(map(str, _as_list(services["model-api"]["command"])))
    workers = [name for name in services if name.startswith("airflow-worker")]
    assert workers
    for name in workers:  # task code runs there; other Airflow services hold no token
        conn = _environment(services[name])["AIRFLOW_CONN_MODEL_API_DEFAULT"]
        assert f'"password": "{ref}"' in conn, name
        assert '"host": "http://model-api:5001"' in conn, name
    assert compose_env.BY_NAME["MODEL_API_TOKEN"].generate is not None


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else str(value).split()


def _documented_services(text: str) -> set[str]:
    """Services named in the docs' service table and in `docker compose ... <service>` lines."""
    names = set(re.findall(r"^\|\s*`([a-z0-9-]+)`\s*\|", text, re.M))
    for line in re.findall(r"docker compose ([^\n`|]+)", text):
        words = line.split()
        if not words or words[0] not in ("exec", "logs", "restart", "run", "stop", "start"):
            continue
        rest = [w for w in words[1:] if not w.startswith("-")]
        if rest:
            names.add(rest[0])
        names.update(m for m in re.findall(r"--scale ([a-z0-9-]+)=", line))
    return names


def test_services_the_docs_name_exist(services):
    docs = DEPLOYMENT_DOC.read_text(encoding="utf-8")
    table = set(re.findall(r"^\|\s*`([a-z0-9-]+)`\s*\|", docs, re.M))
    assert table == set(services), (
        f"docs/deployment.md's service table and docker-compose.yml differ: only in docs "
        f"{sorted(table - set(services))}, only in compose {sorted(set(services) - table)}"
    )
    for doc in (DEPLOYMENT_DOC, ROOT / "README.md"):
        named = _documented_services(doc.read_text(encoding="utf-8"))
        unknown = sorted(named - set(services))
        assert not unknown, f"{doc.relative_to(ROOT)} names services compose lacks: {unknown}"


def test_documented_service_detector_can_fail():
    text = "| `ghost` | x |\n\n    docker compose exec phantom airflow version\n"
    assert _documented_services(text) == {"ghost", "phantom"}


def test_mlflow_basic_auth_has_its_dependency_in_the_lock(services):
    """`--app-name basic-auth` imports flask_wtf (the mlflow[auth] extra)."""
    command = " ".join(map(str, services["mlflow"]["command"]))
    assert "--app-name=basic-auth" in command
    assert "flask-wtf" in _locked_versions(), (
        "docker-compose.yml runs MLflow with --app-name basic-auth, which needs Flask-WTF: "
        "depend on mlflow[auth] in pyproject.toml and refresh requirements/lock.txt (make lock)"
    )


def _locked_versions() -> dict[str, str]:
    versions = {}
    for line in LOCK.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and not name.startswith("#"):
            versions[name.split("[")[0].lower()] = version.strip()
    return versions


# compose_env ----------------------------------------------------------------------------------
def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _read(path: Path) -> dict[str, str]:
    return compose_env.parse_env(path.read_text(encoding="utf-8"))


def _generated(values: dict[str, str]) -> dict[str, str]:
    return {k: values[k] for k in compose_env.GENERATED}


def test_generates_every_variable_with_private_mode_and_a_valid_fernet_key(tmp_path):
    from cryptography.fernet import Fernet

    env_file = tmp_path / ".env"
    report = compose_env.ensure_env(env_file)
    assert _mode(env_file) == 0o600
    values = _read(env_file)
    assert list(values) == [v.name for v in compose_env.VARIABLES]
    assert sorted(report["generated"]) == sorted(compose_env.GENERATED)
    token = Fernet(values["AIRFLOW_FERNET_KEY"].encode()).encrypt(b"conn password")
    assert Fernet(values["AIRFLOW_FERNET_KEY"].encode()).decrypt(token) == b"conn password"
    generated = _generated(values)
    assert len(set(generated.values())) == len(generated), "two secrets share a value"
    for name, value in generated.items():
        # Secrets are embedded in URLs and JSON by docker-compose.yml: no character needs quoting.
        assert re.fullmatch(r"[A-Za-z0-9_=-]{20,}", value), f"{name} has unsafe characters"
    for var in compose_env.VARIABLES:
        if var.generate is None:
            assert values[var.name] == var.default


def test_generated_passwords_meet_mlflow_password_policy(tmp_path):
    from mlflow.utils.validation import _validate_password

    env_file = tmp_path / ".env"
    compose_env.ensure_env(env_file)
    values = _read(env_file)
    _validate_password(values["MLFLOW_ADMIN_PASSWORD"])  # raises on a weak password


def test_keeps_existing_values_and_unknown_keys(tmp_path):
    env_file = tmp_path / ".env"
    compose_env.ensure_env(env_file)
    first = _read(env_file)
    # A user edits a setting, sets the webhook and adds a key of their own; one secret is blank.
    text = env_file.read_text().replace("AIRFLOW_PORT=8080", "AIRFLOW_PORT=9090")
    text = text.replace("SLACK_WEBHOOK_URL=", "SLACK_WEBHOOK_URL=https://hooks.example/T/B/x")
    text = text.replace(f"REDIS_PASSWORD={first['REDIS_PASSWORD']}", "REDIS_PASSWORD=")
    env_file.write_text(text + "MY_OWN=1\n")
    report = compose_env.ensure_env(env_file)
    second = _read(env_file)
    assert report["generated"] == ["REDIS_PASSWORD"]
    assert second["REDIS_PASSWORD"]
    assert second["REDIS_PASSWORD"] != first["REDIS_PASSWORD"]
    for name in compose_env.GENERATED:
        if name != "REDIS_PASSWORD":
            assert second[name] == first[name], f"{name} changed without --rotate"
    assert second["AIRFLOW_PORT"] == "9090"
    assert second["SLACK_WEBHOOK_URL"] == "https://hooks.example/T/B/x"
    assert second["MY_OWN"] == "1"
    assert _mode(env_file) == 0o600


def test_rotate_changes_every_generated_secret_and_keeps_the_old_fernet_key(tmp_path, capsys):
    from cryptography.fernet import Fernet, MultiFernet

    env_file = tmp_path / ".env"
    assert compose_env.main(["--output", str(env_file)]) == 0
    before = _read(env_file)
    old_token = Fernet(before["AIRFLOW_FERNET_KEY"].encode()).encrypt(b"secret value")
    assert compose_env.main(["--output", str(env_file), "--rotate"]) == 0
    after = _read(env_file)
    for name in compose_env.GENERATED:
        assert after[name] != before[name], f"--rotate kept {name}"
    for var in compose_env.VARIABLES:
        if var.generate is None:
            assert after[var.name] == before[var.name]
    keys = after["AIRFLOW_FERNET_KEY"].split(",")
    assert keys[1] == before["AIRFLOW_FERNET_KEY"]
    assert len(keys) == 2
    multi = MultiFernet([Fernet(k.encode()) for k in keys])
    assert multi.decrypt(old_token) == b"secret value"  # what the old key encrypted stays readable
    assert compose_env.main(["--output", str(env_file), "--rotate", "AIRFLOW_FERNET_KEY"]) == 0
    third = _read(env_file)["AIRFLOW_FERNET_KEY"].split(",")
    assert len(third) == 2
    assert third[1] == keys[0]
    assert _mode(env_file) == 0o600
    out = capsys.readouterr().out
    assert "rotate-fernet-key" in out


def test_rotate_only_the_named_secret(tmp_path):
    env_file = tmp_path / ".env"
    compose_env.ensure_env(env_file)
    before = _read(env_file)
    report = compose_env.ensure_env(env_file, rotate=["REDIS_PASSWORD"])
    after = _read(env_file)
    assert report["rotated"] == ["REDIS_PASSWORD"]
    assert {k for k in before if before[k] != after[k]} == {"REDIS_PASSWORD"}


def test_rotating_an_unknown_or_user_provided_variable_is_an_error(tmp_path, capsys):
    env_file = tmp_path / ".env"
    compose_env.ensure_env(env_file)
    before = env_file.read_text()
    for name in ("NO_SUCH_SECRET", "SLACK_WEBHOOK_URL", "AIRFLOW_PORT"):
        assert compose_env.main(["--output", str(env_file), "--rotate", name]) == 2
        assert f"cannot rotate {name}" in capsys.readouterr().err
    assert env_file.read_text() == before


def test_a_malformed_env_file_is_named_and_left_alone(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("AIRFLOW_PORT=8080\nthis is not an assignment\n")
    with pytest.raises(compose_env.ComposeEnvError, match=r"\.env:2: expected NAME=value"):
        compose_env.ensure_env(env_file)
    assert env_file.read_text() == "AIRFLOW_PORT=8080\nthis is not an assignment\n"


def test_output_never_contains_secret_values(tmp_path, capsys, caplog):
    env_file = tmp_path / ".env"
    env_file.write_text("SLACK_WEBHOOK_URL=https://hooks.example/T000/B000/sekrit\n")
    with caplog.at_level("DEBUG"):
        assert compose_env.main(["--output", str(env_file)]) == 0
        assert compose_env.main(["--output", str(env_file)]) == 0
        assert compose_env.main(["--output", str(env_file), "--rotate"]) == 0
    first_and_last = _read(env_file)
    captured = capsys.readouterr()
    printed = captured.out + captured.err + caplog.text
    assert "generated:" in printed
    assert "rotated:" in printed
    secrets_ = [v for k, v in first_and_last.items() if compose_env.BY_NAME[k].secret and v]
    assert len(secrets_) == len(compose_env.GENERATED) + 1
    for value in secrets_:
        for part in value.split(","):
            assert part not in printed


def test_airflow_passwords_file(tmp_path):
    path = tmp_path / "auth" / "simple_auth_manager_passwords.json.generated"
    compose_env.write_airflow_passwords(
        path, {"AIRFLOW_ADMIN_USER": "ops", "AIRFLOW_ADMIN_PASSWORD": "pw-from-env-file"}
    )
    assert json.loads(path.read_text()) == {"ops": "pw-from-env-file"}
    assert _mode(path) == 0o600
    with pytest.raises(compose_env.ComposeEnvError, match="AIRFLOW_ADMIN_PASSWORD"):
        compose_env.write_airflow_passwords(path, {"AIRFLOW_ADMIN_USER": "ops"})
    assert json.loads(path.read_text()) == {"ops": "pw-from-env-file"}  # left as it was


def test_airflow_passwords_cli_reads_the_environment_and_prints_no_password(tmp_path):
    path = tmp_path / "passwords.json"
    env = {**os.environ, "AIRFLOW_ADMIN_USER": "admin", "AIRFLOW_ADMIN_PASSWORD": "Zq9-not-shown"}
    result = subprocess.run(
        [sys.executable, "-m", "airmlops_dev.compose_env", "--airflow-passwords-file", str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(path.read_text()) == {"admin": "Zq9-not-shown"}
    assert "Zq9-not-shown" not in result.stdout + result.stderr


# The helper scripts, run for real ----------------------------------------------------------------
@pytest.mark.integration
def test_create_buckets_script_on_a_real_s3_server(s3_server):
    script = ROOT / "docker" / "create_buckets.py"
    buckets = ["compose-artifacts-test", "compose-data-test"]
    env = {
        **os.environ,
        "S3_ENDPOINT_URL": s3_server.endpoint_url,
        "S3_ADMIN_ACCESS_KEY": s3_server.access_key,
        "S3_ADMIN_SECRET_KEY": s3_server.secret_key,
        "S3_BUCKETS": ",".join(buckets),
        "S3_WAIT_SECONDS": "10",
    }
    env.pop("AWS_PROFILE", None)

    def run() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    first = run()
    assert first.returncode == 0, first.stderr
    assert "created: compose-artifacts-test, compose-data-test" in first.stdout
    names = {b["Name"] for b in s3_server.client().list_buckets()["Buckets"]}
    assert set(buckets) <= names
    second = run()  # idempotent
    assert second.returncode == 0
    assert "created: none" in second.stdout
    assert s3_server.secret_key not in first.stdout + first.stderr + second.stdout
    env["S3_ADMIN_SECRET_KEY"] = "wrong-" + s3_server.secret_key
    env["S3_WAIT_SECONDS"] = "2"
    denied = run()
    assert denied.returncode == 1
    assert "not ready" in denied.stderr


def test_objectstore_start_script_writes_scoped_private_identities(tmp_path):
    """Runs docker/objectstore/start.sh with a stand-in `weed` that reports its config file."""
    fake_weed = tmp_path / "weed"
    fake_weed.write_text(
        "#!/bin/sh\n"
        'for a in "$@"; do case "$a" in -s3.config=*) f="${a#-s3.config=}";; esac; done\n'
        'stat -c %a "$f"; cat "$f"; echo "ARGS $*"\n'
    )
    fake_weed.chmod(0o755)
    keys = {
        "S3_ADMIN_ACCESS_KEY": "AKADMIN",
        "S3_ADMIN_SECRET_KEY": "admin-secret",
        "S3_MLFLOW_ACCESS_KEY": "AKMLFLOW",
        "S3_MLFLOW_SECRET_KEY": "mlflow-secret",
        "S3_DATA_ACCESS_KEY": "AKDATA",
        "S3_DATA_SECRET_KEY": "data-secret",
    }
    env = {
        "PATH": os.environ["PATH"],
        **keys,
        "MLFLOW_ARTIFACTS_BUCKET": "arts",
        "AIRMLOPS_DATA_BUCKET": "datab",
        "WEED_BIN": str(fake_weed),
        "S3_CONFIG_FILE": str(tmp_path / "s3.json"),
        "WEED_DIR": str(tmp_path / "data"),
    }
    result = subprocess.run(
        ["sh", str(ROOT / "docker" / "objectstore" / "start.sh")],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    mode, config_text, args = result.stdout.split("\n", 2)
    assert mode == "600"
    identities = {i["name"]: i for i in json.loads(config_text)["identities"]}
    assert identities["admin"]["credentials"] == [
        {"accessKey": "AKADMIN", "secretKey": "admin-secret"}
    ]
    assert sorted(identities["mlflow"]["actions"]) == [
        "List:arts",
        "Read:arts",
        "Tagging:arts",
        "Write:arts",
    ]
    assert sorted(identities["airflow"]["actions"]) == [
        "List:datab",
        "Read:datab",
        "Tagging:datab",
        "Write:datab",
    ]
    assert "-master.telemetry=false" in args
    assert "mini" in args
    assert not any(secret in args for secret in keys.values())
    missing = subprocess.run(
        ["sh", str(ROOT / "docker" / "objectstore" / "start.sh")],
        env={k: v for k, v in env.items() if k != "S3_DATA_SECRET_KEY"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert missing.returncode != 0
    assert "S3_DATA_SECRET_KEY" in missing.stderr


@pytest.fixture
def postgres_server() -> Iterator[dict[str, str]]:
    """A throwaway PostgreSQL (>= 15, for psql's \\getenv) on a temp socket and a free TCP port,
    with the official image's authentication: trust on the socket, scram over TCP."""
    from pgserver import PostgresServer, PostgresUnavailable

    try:
        server = PostgresServer()
    except PostgresUnavailable as exc:
        pytest.skip(str(exc))
    with server:
        yield server.env


@pytest.mark.integration
def test_postgres_init_script_creates_roles_and_applies_rotated_passwords(postgres_server):
    script = ROOT / "docker" / "postgres" / "init-databases.sh"
    env = {
        **postgres_server,
        "POSTGRES_PASSWORD": "super-1-" + os.urandom(6).hex(),
        "AIRFLOW_DB_PASSWORD": "af-1-" + os.urandom(6).hex(),
        "MLFLOW_DB_PASSWORD": "ml-1-" + os.urandom(6).hex(),
    }

    def init(**overrides: str) -> None:
        result = subprocess.run(
            ["bash", str(script)],
            env={**env, **overrides},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        for name in ("POSTGRES_PASSWORD", "AIRFLOW_DB_PASSWORD", "MLFLOW_DB_PASSWORD"):
            assert env[name] not in result.stdout + result.stderr

    def login(user: str, password: str, database: str) -> bool:
        """A password login over TCP, as the other containers connect."""
        result = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-U", user, "-d", database, "-tAc", "select current_user"],
            env={
                "PATH": postgres_server["PATH"],
                "PGPORT": postgres_server["PGPORT"],
                "PGPASSWORD": password,
                "PGCONNECT_TIMEOUT": "10",
            },
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        return result.returncode == 0 and result.stdout.strip() == user

    init()
    assert login("airflow", env["AIRFLOW_DB_PASSWORD"], "airflow")
    assert login("mlflow", env["MLFLOW_DB_PASSWORD"], "mlflow")
    assert login("postgres", env["POSTGRES_PASSWORD"], "postgres")
    assert not login("airflow", "wrong", "airflow")
    assert not login("airflow", env["AIRFLOW_DB_PASSWORD"], "mlflow")  # no access to the other DB
    assert not login("mlflow", env["MLFLOW_DB_PASSWORD"], "airflow")

    init()  # idempotent: a second `docker compose up` changes nothing
    assert login("airflow", env["AIRFLOW_DB_PASSWORD"], "airflow")

    old = dict(env)
    env.update(
        AIRFLOW_DB_PASSWORD="af-2-" + os.urandom(6).hex(),
        POSTGRES_PASSWORD="super-2-" + os.urandom(6).hex(),
    )
    init()  # rotation: new passwords apply, old ones stop working
    assert login("airflow", env["AIRFLOW_DB_PASSWORD"], "airflow")
    assert not login("airflow", old["AIRFLOW_DB_PASSWORD"], "airflow")
    assert login("postgres", env["POSTGRES_PASSWORD"], "postgres")
    assert not login("postgres", old["POSTGRES_PASSWORD"], "postgres")
    assert login("mlflow", env["MLFLOW_DB_PASSWORD"], "mlflow")
