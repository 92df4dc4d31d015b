"""Where the pack keeps things, from environment variables with local defaults."""

from __future__ import annotations

import os
from pathlib import Path


def project_dir() -> Path:
    """The repository root (AIRMLOPS_PROJECT_DIR, else two levels above this package)."""
    env = os.environ.get("AIRMLOPS_PROJECT_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2]


def models_dir() -> Path:
    """Where model specs live (AIRMLOPS_MODELS_DIR, else include/models)."""
    env = os.environ.get("AIRMLOPS_MODELS_DIR")
    return Path(env) if env else project_dir() / "include" / "models"


def local_dir() -> Path:
    """Local state of the embedded stack: .local/ under the project, git-ignored."""
    env = os.environ.get("AIRMLOPS_LOCAL_DIR")
    return Path(env) if env else project_dir() / ".local"


def data_dir() -> Path:
    """Root for relative data URIs in specs (AIRMLOPS_DATA_DIR, else .local/data)."""
    env = os.environ.get("AIRMLOPS_DATA_DIR")
    return Path(env) if env else local_dir() / "data"


def work_uri() -> str:
    """Where tasks hand files to each other: a directory or an s3:// prefix."""
    return os.environ.get("AIRMLOPS_WORK_URI") or str(local_dir() / "work")
