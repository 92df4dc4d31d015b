"""Run an Airflow command with the libraries the pack's tasks use already imported.

The LocalExecutor forks its workers from the scheduler, Celery's prefork pool forks from the
worker's main process, and Airflow forks every task from those: a module imported here is
imported once, and every task starts with it (copy-on-write) instead of paying for it again.
Without it each task imports MLflow, scikit-learn, SciPy and Great Expectations itself: 3 to
6 s of CPU per task here (`benchmarks/task_start.py` measures both ways).

    python -m airmlops.preload scheduler          # instead of `airflow scheduler`
    python -m airmlops.preload celery worker ...  # instead of `airflow celery worker ...`

Only for commands that fork tasks: the api-server, dag-processor and triggerer gain nothing.
A task's peak resident memory (`<stage>.peak_rss_mib`) counts these pages as before, when the
task imported them itself; now the tasks of one worker share them.
"""

from __future__ import annotations

import importlib
import sys
import time

# What the pack's task code imports (lazily, inside execute()), heaviest first.
MODULES = (
    "great_expectations",
    "scipy.stats",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.model_selection",
    "sklearn.inspection",
    "mlflow",
    "mlflow.sklearn",
    "mlflow.pyfunc",
    "skops.io",
    "pandas",
    "pyarrow.parquet",
    "boto3",
    "airmlops_core.train.flow",
    "airmlops_core.validate.flow",
    "airmlops_core.score.flow",
    "airmlops_core.drift.flow",
)


def preload(modules: tuple[str, ...] = MODULES) -> dict[str, str]:
    """Import `modules`; a module that does not import is skipped (a task reports it later).

    Returns:
        The modules that did not import, with why.
    """
    failed: dict[str, str] = {}
    for name in modules:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an optional extra not installed: the task says so itself
            failed[name] = f"{type(exc).__name__}: {exc}"
    return failed


def main(argv: list[str] | None = None) -> None:
    """Preload MODULES, then run `airflow <argv>` in this process."""
    args = sys.argv[1:] if argv is None else argv
    started = time.monotonic()
    failed = preload()
    print(
        f"airmlops.preload: {len(MODULES) - len(failed)} of {len(MODULES)} modules imported in "
        f"{time.monotonic() - started:.1f} s"
        + "".join(f"; not {name} ({why})" for name, why in failed.items()),
        file=sys.stderr,
        flush=True,
    )
    from airflow.__main__ import main as airflow_main

    sys.argv = ["airflow", *args]
    airflow_main()


if __name__ == "__main__":
    main()
