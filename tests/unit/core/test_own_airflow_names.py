"""README's "Using your own Airflow" lists every pool, connection, Variable and AIRMLOPS_*
variable the pack reads, and nothing it does not: each list is read from the source code.

The code side is found by reading the production source (dags/, plugins/airmlops,
include/airmlops_core) with `ast`: pool= arguments, connection-id defaults, Variable.get/set
call sites, AIRMLOPS_* names and the typed settings' fields. docs/settings.md's table of
variables (tests/unit/core/test_settings.py: exactly the settings' fields) and its text must name
every AIRMLOPS_* name too.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator

import pytest

from airmlops.operators import deploy, health, train
from airmlops_core import settings
from airmlops_core.deploy import environments
from airmlops_core.drift import flow as drift_flow
from paths import PROJECT_DIR

SOURCES = (
    PROJECT_DIR / "dags",
    PROJECT_DIR / "plugins" / "airmlops",
    PROJECT_DIR / "include" / "airmlops_core",
)
SECTION = "## Using your own Airflow"
ENV_NAME = re.compile(r"\bAIRMLOPS_[A-Z0-9]+(?:_[A-Z0-9]+)*\b")
# What each Variable.get/set call site's key expression names, per module: a new call site
# fails test_every_variable_call_site_is_known until it is added here and to README.
VARIABLE_KEYS: dict[tuple[str, str], list[str]] = {
    ("plugins/airmlops/operators/health.py", "STATE_VARIABLE"): [health.STATE_VARIABLE],
    ("plugins/airmlops/operators/deploy.py", "ENVIRONMENT_VARIABLE"): [deploy.ENVIRONMENT_VARIABLE],
    ("plugins/airmlops/operators/train.py", "retrain_variable(self.model_name)"): [
        train.retrain_variable("<model>")
    ],
    # key = drift_flow.state_key(self.model_name, source): the batch source and the others
    ("plugins/airmlops/operators/monitor.py", "key"): [
        drift_flow.state_key("<model>", "batch"),
        drift_flow.state_key("<model>", "<source>"),
    ],
}


def python_files() -> Iterator[tuple[str, ast.Module]]:
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            yield path.relative_to(PROJECT_DIR).as_posix(), ast.parse(text, str(path))


def _str(node: ast.AST | None) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def _is_conn_name(name: str) -> bool:
    return name.endswith("conn_id") or name == "default_conn_name"


def code_pools() -> set[str]:
    """Every constant `pool=` argument."""
    return {
        value
        for _, tree in python_files()
        for node in ast.walk(tree)
        if isinstance(node, ast.keyword) and node.arg == "pool"
        if (value := _str(node.value))
    }


def code_connections() -> set[str]:
    """Constant connection ids: defaults of *conn_id parameters and fields, values given to
    *conn_id names (assignments, keyword arguments, `x.conn_id or "..."`)."""
    found: set[str] = set()
    for _, tree in python_files():
        for node in ast.walk(tree):
            if isinstance(node, ast.arguments):
                args = [*node.posonlyargs, *node.args, *node.kwonlyargs]
                defaults = [None] * (len(node.posonlyargs + node.args) - len(node.defaults))
                for arg, default in zip(
                    args, [*defaults, *node.defaults, *node.kw_defaults], strict=True
                ):
                    if _is_conn_name(arg.arg) and (value := _str(default)):
                        found.add(value)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names = [
                    t.id if isinstance(t, ast.Name) else getattr(t, "attr", "") for t in targets
                ]
                if any(_is_conn_name(n.lower()) for n in names) and (value := _str(node.value)):
                    found.add(value)
            elif isinstance(node, ast.keyword) and node.arg and _is_conn_name(node.arg):
                if value := _str(node.value):
                    found.add(value)
            elif isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or):
                first = node.values[0]
                if isinstance(first, ast.Attribute) and _is_conn_name(first.attr):
                    found.update(v for n in node.values[1:] if (v := _str(n)))
    # another environment's registry: a name pattern, not a constant
    other = environments.default_conn_id("x")
    assert other == "mlflow_x", other
    found.add(other.removesuffix("x") + "<environment>")
    return found


def variable_call_sites() -> set[tuple[str, str]]:
    """(module, key expression) of every Variable.get / Variable.set call."""
    return {
        (module, ast.unparse(node.args[0]))
        for module, tree in python_files()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ("get", "set")
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == "Variable"
    }


def code_env_names() -> set[str]:
    """AIRMLOPS_* names in the production source, and the typed settings' variables."""
    names = {
        m
        for root in SOURCES
        for path in root.rglob("*.py")
        for m in ENV_NAME.findall(path.read_text(encoding="utf-8"))
    }
    return names | {
        settings.ENV_PREFIX + field.upper() for field in settings.AirmlopsSettings.model_fields
    }


def readme_section() -> str:
    readme = (PROJECT_DIR / "README.md").read_text(encoding="utf-8")
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    return readme[start : end if end > 0 else None]


def readme_table(kind: str, text: str | None = None) -> set[str]:
    """The backquoted names in the Name column of the section's (or `text`'s) table rows of
    one kind (pool, connection, variable)."""
    names: set[str] = set()
    for line in (readme_section() if text is None else text).splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 2 and cells[0] == kind:
            names.update(re.findall(r"`([^`]+)`", cells[1]))
    return names


@pytest.fixture(scope="module")
def section() -> str:
    return readme_section()


def test_the_readme_lists_exactly_the_pools_the_dags_use() -> None:
    assert code_pools() == {"ml_training", "ml_scoring"}  # the finder finds
    assert readme_table("pool") == code_pools()


def test_the_readme_lists_exactly_the_connections_the_code_defaults_to() -> None:
    found = code_connections()
    assert {"mlflow_default", "slack_alerts", "aws_default"} <= found  # the finder finds
    assert readme_table("connection") == found


def test_every_variable_call_site_is_known() -> None:
    assert variable_call_sites() == set(VARIABLE_KEYS)


def test_the_readme_lists_exactly_the_variables_the_code_reads_or_writes() -> None:
    documented = readme_table("variable")
    assert documented == {key for keys in VARIABLE_KEYS.values() for key in keys}


def test_the_readme_and_the_settings_table_name_every_airmlops_variable(section: str) -> None:
    names = code_env_names()
    assert {"AIRMLOPS_WORK_URI", "AIRMLOPS_ENVIRONMENT"} <= names  # both kinds are found
    assert sorted(names - set(ENV_NAME.findall(section))) == []
    assert sorted(set(ENV_NAME.findall(section)) - names) == [], "documented, never read"
    settings_doc = (PROJECT_DIR / "docs" / "settings.md").read_text(encoding="utf-8")
    table = set(ENV_NAME.findall(settings_doc))
    assert sorted(names - table) == [], "missing from docs/settings.md"


def test_the_readme_table_reader_can_fail() -> None:
    """Rows of another kind, and names outside the Name column, are not read."""
    text = "| pool | `a`, `b` | yes | `c` |\n| connection | `d` | x |\n| `pool` | `e` |\n"
    assert readme_table("pool", text) == {"a", "b"}
