"""House rules enforced in the suite: ruff lint and format, mypy, the import contracts, sizes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from paths import PROJECT_DIR as PROJECT

BIN = Path(sys.executable).parent
SOURCE_ROOTS = {"include": "airmlops_core", "plugins": "airmlops", "dev": "airmlops_dev"}
MAX_MODULE_LINES = 600


def run(*argv: str, cwd: Path = PROJECT, env: dict[str, str] | None = None):
    return subprocess.run(
        [str(BIN / argv[0]), *argv[1:]],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )


def test_ruff_passes() -> None:
    out = run("ruff", "check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_ruff_format_leaves_the_tree_unchanged() -> None:
    out = run("ruff", "format", "--check", ".")
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_passes_on_core_plugin_and_dev_packages() -> None:
    out = run("mypy")
    assert out.returncode == 0, out.stdout + out.stderr


def test_import_contracts_hold() -> None:
    out = run("lint-imports")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 broken" in out.stdout


def _tree_copy(tmp_path: Path) -> Path:
    """The three source roots and pyproject.toml, copied: a place to break the rules."""
    for root, package in SOURCE_ROOTS.items():
        shutil.copytree(
            PROJECT / root / package,
            tmp_path / root / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    shutil.copy(PROJECT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


@pytest.mark.parametrize(
    ("module", "forbidden", "contract"),
    [
        ("include/airmlops_core/io/sql.py", "from airmlops_core.score import flow", "Layers"),
        ("include/airmlops_core/stats/fairness.py", "from airmlops_core import drift", "Layers"),
        ("include/airmlops_core/train/estimator.py", "import airflow.sdk", "no Airflow"),
        ("include/airmlops_core/spec.py", "import airmlops_dev.ports", "dev stack"),
        ("plugins/airmlops/notify.py", "from airmlops_dev import localstack", "dev stack"),
    ],
)
def test_a_forbidden_import_breaks_the_contracts(
    tmp_path: Path, module: str, forbidden: str, contract: str
) -> None:
    tree = _tree_copy(tmp_path)
    target = tree / module
    target.write_text(target.read_text() + f"\n{forbidden}  # noqa\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(str(tree / r) for r in SOURCE_ROOTS)}
    out = run("lint-imports", "--no-cache", cwd=tree, env=env)
    assert out.returncode != 0, out.stdout
    broken = out.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken, out.stdout


def test_every_package_is_in_the_distribution() -> None:
    setuptools = tomllib.loads((PROJECT / "pyproject.toml").read_text())["tool"]["setuptools"]
    # package data mapped from dags/ and include/ (no __init__.py): not source packages
    data_packages = {p for p in setuptools["package-dir"] if p.startswith("airmlops_core.bundled.")}
    declared = set(setuptools["packages"]) - data_packages
    found = {
        ".".join(init.parent.relative_to(PROJECT / root).parts)
        for root in ("include", "plugins")
        for init in (PROJECT / root / SOURCE_ROOTS[root]).rglob("__init__.py")
    }
    assert found == declared


def test_no_source_module_is_over_the_size_limit() -> None:
    sizes = {
        str(path.relative_to(PROJECT)): len(path.read_text().splitlines())
        for root, package in SOURCE_ROOTS.items()
        for path in (PROJECT / root / package).rglob("*.py")
    }
    over = {path: n for path, n in sizes.items() if n > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"
