"""airmlops.preload: the modules a forking Airflow component imports before it forks tasks."""

from __future__ import annotations

import subprocess
import sys

from airmlops import preload


def test_a_module_that_does_not_import_is_named_with_why_and_the_rest_still_load() -> None:
    code = (
        "import sys; from airmlops import preload; "
        "failed = preload.preload(('airmlops_no_such_module', 'sklearn.ensemble')); "
        "print(sorted(failed.items())); print('sklearn.ensemble' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [
        "[('airmlops_no_such_module', \"ModuleNotFoundError: No module named "
        "'airmlops_no_such_module'\")]",
        "True",
    ]


def test_every_listed_module_imports_here() -> None:
    out = subprocess.run(
        [sys.executable, "-c", "from airmlops import preload; print(preload.preload())"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.strip() == "{}"
    assert len(set(preload.MODULES)) == len(preload.MODULES)
