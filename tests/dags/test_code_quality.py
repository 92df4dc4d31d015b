"""House rules enforced in the suite: ruff (incl. banned heavy imports) and mypy on the core."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from paths import PROJECT_DIR as PROJECT

BIN = Path(sys.executable).parent


def test_ruff_passes() -> None:
    out = subprocess.run(
        [str(BIN / "ruff"), "check", "."], cwd=PROJECT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_mypy_passes_on_core_package() -> None:
    out = subprocess.run(
        [str(BIN / "mypy")], cwd=PROJECT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stdout + out.stderr
