"""The pack's DAG entry files, and putting them into an Airflow DAG folder.

The files are two thin modules (`model_pipelines.py`, `model_spec_errors.py`) that ask the DAG
factory for one set of DAGs per model spec. A checkout keeps them in dags/; an installed
package ships them as package data. `airmlops install-dags DIR` copies them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from airmlops_core import settings

DAG_FILES = ("model_pipelines.py", "model_spec_errors.py")


class DagFileConflict(FileExistsError):
    """A DAG folder already holds a different file of the same name."""


def source_dir() -> Path:
    """The DAG entry files: <checkout>/dags, else the copy shipped in the package."""
    project = settings.checkout_dir()
    return project / "dags" if project else settings.BUNDLED_DIR / "dags"


def install(target: Path, *, overwrite: bool = False) -> list[Path]:
    """Copy the DAG entry files into `target` (created if missing); return the paths written.

    A file already there with the same content is left alone (not returned).

    Raises:
        DagFileConflict: a file of the same name differs and `overwrite` is false (names it).
    """
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in DAG_FILES:
        src, dst = source_dir() / name, target / name
        if dst.exists() and dst.read_bytes() == src.read_bytes():
            continue
        if dst.exists() and not overwrite:
            raise DagFileConflict(
                f"{dst}: a different file of this name is already there; "
                "pass --overwrite to replace it with the pack's"
            )
        shutil.copyfile(src, dst)
        written.append(dst)
    return written
