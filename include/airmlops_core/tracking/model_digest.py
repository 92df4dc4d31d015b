"""The digest of a model's files: what the deploy path compares across registries.

One SHA-256 over every file of an MLflow model directory (relative path and the file's own
SHA-256, in sorted order; MLflow's download bookkeeping `registered_model_meta` left out), so
a changed, added, removed or renamed file changes it. Recorded on a version as `DIGEST_TAG`
when it is registered (train, deploy).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from airmlops_core.io import data
from airmlops_core.tracking.runs import TAG_PREFIX

DIGEST_TAG = f"{TAG_PREFIX}model_sha256"
# written by MLflow into a directory downloaded from a models:/ URI (name and version of that
# download), not part of the model: left out so that every way of downloading agrees
DOWNLOAD_META = "registered_model_meta"


def dir_sha256(path: str | Path) -> str:
    """The SHA-256 of every file under `path` (names and contents), hex."""
    root = Path(path)
    h = hashlib.sha256()
    files = (p for p in root.rglob("*") if p.is_file() and p != root / DOWNLOAD_META)
    for file in sorted(files):
        h.update(str(file.relative_to(root).as_posix()).encode() + b"\0")
        h.update(data.file_sha256(str(file)).encode() + b"\n")
    return h.hexdigest()
