"""Render local HTML in a real headless Chromium, offline, and return the screenshot's pixels.

Reports the pack writes (data checks, drift) must look right without internet: the browser runs
with every host name unresolvable and a dead proxy, so anything the page tried to fetch from the
network would be missing from the screenshot. `make test` installs Chromium (make system-deps);
without it the calling test fails rather than silently skipping the check.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import numpy as np
import pytest

OFFLINE_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
]


def chromium() -> str:
    """The Chromium binary, or fail the test with how to install it."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        pytest.fail(
            "chromium is not installed: run `make system-deps` "
            "(apt-get install -y chromium) to render reports in a real browser"
        )
    return found


def screenshot(page: Path, workdir: Path, size: tuple[int, int] = (1200, 900)) -> np.ndarray:
    """Pixels (height x width x RGB, float) of `page` rendered offline by headless Chromium."""
    from PIL import Image

    png = workdir / f"{page.stem}.png"
    cmd = [
        chromium(),
        *OFFLINE_FLAGS,
        f"--user-data-dir={workdir / 'chromium-profile'}",
        f"--screenshot={png}",
        f"--window-size={size[0]},{size[1]}",
        page.as_uri(),
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(workdir)}
    )
    assert png.is_file(), f"chromium wrote no screenshot: {out.stderr[-2000:]}"
    keep = os.environ.get("AIRMLOPS_KEEP_SCREENSHOTS")
    if keep:
        shutil.copy(png, Path(keep) / png.name)
    with Image.open(png) as img:
        return np.asarray(img.convert("RGB"), dtype=np.float64)


def colour_pixels(pixels: np.ndarray, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    """How many pixels are within `tolerance` (sum of channel differences) of `rgb`."""
    return int((np.abs(pixels - np.array(rgb)).sum(axis=2) < tolerance).sum())


def measure(page: Path, workdir: Path, expression: str, size: tuple[int, int] = (1200, 900)) -> Any:
    """The value of a JavaScript `expression` (JSON-able) evaluated on `page` once it has
    loaded in offline headless Chromium at window `size`: e.g. element positions.

    The page is copied with a script appended (the reports themselves carry none) that writes
    the value into an attribute; ``--dump-dom`` prints the DOM after the load event.
    """
    probe = (
        '<script>window.addEventListener("load", () => document.body.setAttribute('
        f'"data-measured", JSON.stringify({expression})));</script>'
    )
    copy = workdir / f"{page.stem}-measured.html"
    copy.write_text(page.read_text("utf-8").replace("</body>", probe + "</body>"), "utf-8")
    cmd = [
        chromium(),
        *OFFLINE_FLAGS,
        f"--user-data-dir={workdir / 'chromium-profile'}",
        f"--window-size={size[0]},{size[1]}",
        "--dump-dom",
        copy.as_uri(),
    ]
    out = subprocess.run(
        cmd, capture_output=True, text=True, timeout=120, env={**os.environ, "HOME": str(workdir)}
    )
    found = re.search(r'data-measured="([^"]*)"', out.stdout)
    assert found, f"chromium measured nothing: {out.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))
