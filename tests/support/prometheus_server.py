"""A real Prometheus for tests (Debian's `prometheus` package), on 127.0.0.1, and its promtool.

The server gets a free port, a temporary data directory and the files the test writes next to
its config (rule files, token files: relative paths in the config resolve against the config's
directory, as in the compose stack). `make system-deps` installs the package. Without it the
tests skip on a developer's machine and fail on CI (`CI=true`), where it must be installed.

Usage::

    with PrometheusServer(config, {"alerts.yml": rules}) as prom:
        prom.query('up{job="model-api"}')
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from airmlops_dev.ports import free_ports, port_free
from serverprocess import ServerProcess

HOST = "127.0.0.1"


def find_tool(name: str) -> str | None:
    """Path of `prometheus` or `promtool` ($AIRMLOPS_PROMETHEUS_DIR, else PATH, else /usr/bin)."""
    folder = os.environ.get("AIRMLOPS_PROMETHEUS_DIR")
    found = shutil.which(name, path=folder) if folder else None
    return found or shutil.which(name) or shutil.which(name, path="/usr/bin")


def on_ci() -> bool:
    """Whether this runs on CI (`CI=true`, as GitHub Actions sets it)."""
    return os.environ.get("CI", "").lower() == "true"


def missing_tools() -> str | None:
    """Why the Prometheus tests cannot run here, or None."""
    absent = [name for name in ("prometheus", "promtool") if find_tool(name) is None]
    if not absent:
        return None
    return f"{' and '.join(absent)} not installed (apt-get install prometheus; `make system-deps`)"


def tool(name: str) -> str:
    """Path of `prometheus` or `promtool`; when missing, skip the test, or fail it on CI."""
    found = find_tool(name)
    if found:
        return found
    reason = missing_tools() or name
    if on_ci():
        pytest.fail(f"{reason}: CI must run the Prometheus tests")
    pytest.skip(reason)


def promtool(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run promtool; its output (stdout and stderr) in `.stdout`."""
    return subprocess.run(
        [tool("promtool"), *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=120,
        check=False,
    )


class PrometheusServer(ServerProcess):
    """A Prometheus serving `config` with `files` beside it (a ServerProcess).

    Args:
        config: The prometheus.yml content.
        files: Relative path -> text, written next to the config (mode 0600).
    """

    name = "prometheus"
    READY_POLL = 0.1
    startup_timeout = 60.0

    def __init__(self, config: Mapping[str, Any], files: Mapping[str, str] | None = None):
        self.binary = tool("prometheus")
        self.base_dir = Path(tempfile.mkdtemp(prefix="airmlops-prometheus-"))
        (self.port,) = free_ports(1)
        self.url = f"http://{HOST}:{self.port}"
        self.config_path = self.base_dir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        for relative, text in (files or {}).items():
            path = self.base_dir / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(text)
        self.http = httpx.Client(base_url=self.url, timeout=10)

    def prepare(self) -> None:
        if not port_free(self.port):
            raise RuntimeError(f"cannot start prometheus: {HOST}:{self.port} is in use")

    def argv(self) -> list[str]:
        return [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.base_dir / 'data'}",
            f"--web.listen-address={HOST}:{self.port}",
        ]

    def ready(self) -> bool:
        try:
            return self.http.get("/-/ready").status_code == 200
        except httpx.TransportError as exc:
            self.last_error = type(exc).__name__
            return False

    def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful /api/v1 answer; AssertionError with Prometheus's error."""
        body = self.http.get(f"/api/v1/{path}", params=params).json()
        assert body["status"] == "success", f"{path} {params}: {body}"
        return body["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector `expr` evaluates to now."""
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        return list(data["result"])

    def values(self, expr: str, label: str) -> dict[str, float]:
        """`label` value -> sample value of each series `expr` returns."""
        return {r["metric"].get(label, ""): float(r["value"][1]) for r in self.query(expr)}

    def targets(self, job: str) -> list[dict[str, Any]]:
        """The active targets of scrape job `job`."""
        return [t for t in self.api("targets")["activeTargets"] if t["labels"]["job"] == job]

    def wait_for(self, check: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        """Poll `check` until it returns something truthy; return that."""
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            assert self.running(), f"prometheus exited:\n{self.log_tail()}"
            last = check()
            if last:
                return last
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what} (last: {last}):\n{self.log_tail()}")

    def close(self) -> None:
        self.http.close()
        super().close()
