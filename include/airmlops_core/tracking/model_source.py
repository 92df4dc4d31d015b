"""Where a model to onboard may come from: inside the data directory, or the registry.

A model file must resolve inside the data directory (`settings.data_dir()`, passed in as
`base`), with no `..`, no symlink anywhere on its path below that directory and no URI scheme.
A model URI is `runs:/...`, `models:/...` (the pack's own tracking server) or a local MLflow
model directory under the data directory (the same rules; symlinks inside it are refused by
`model_safety.plain_files`). Anything else (`file:`, `s3:`, `http:`, ...) is refused by name.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from airmlops_core.errors import UnsafeModel

REGISTRY_SCHEMES = ("runs:/", "models:/")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+):")


def _refuse(what: str, given: str, why: str) -> UnsafeModel:
    return UnsafeModel(f"{what} {given!r}: refused, {why}")


def confined_path(given: str | Path, base: Path, what: str = "model_file") -> Path:
    """`given` as an absolute path inside `base` (relative paths are relative to `base`).

    Raises:
        UnsafeModel: a URI, a `..`, a path outside `base` or a symlink on the way (named).
    """
    text = str(given).strip()
    if scheme := _SCHEME.match(text):
        raise _refuse(
            what,
            text,
            f"the scheme '{scheme.group(1)}:' is not accepted: give a path under "
            f"the data directory {base}",
        )
    raw = Path(text).expanduser()
    if ".." in raw.parts:
        raise _refuse(what, text, "it contains '..'")
    root = Path(os.path.normpath(Path(base).expanduser().absolute()))
    path = Path(os.path.normpath(raw if raw.is_absolute() else root / raw))
    if path == root or not path.is_relative_to(root):
        raise _refuse(what, text, f"it is outside the data directory {root}")
    step = root
    for part in path.relative_to(root).parts:
        step = step / part
        if step.is_symlink():
            raise _refuse(
                what,
                text,
                f"{step} is a symlink (to {os.readlink(step)}); model files are "
                "read from plain files under the data directory only",
            )
    if not Path(os.path.realpath(path)).is_relative_to(os.path.realpath(root)):
        raise _refuse(what, text, f"it resolves outside the data directory {root}")
    return path


def registry_uri(uri: str) -> bool:
    """True for a runs:/ or models:/ URI; False for a local path.

    Raises:
        UnsafeModel: any other scheme (named).
    """
    text = uri.strip()
    if text.startswith(REGISTRY_SCHEMES):
        return True
    if scheme := _SCHEME.match(text):
        raise _refuse(
            "model_uri",
            text,
            f"the scheme '{scheme.group(1)}:' is not accepted: use runs:/, "
            "models:/ or an MLflow model directory under the data directory",
        )
    return False
