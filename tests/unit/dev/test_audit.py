"""`make audit` (requirements/audit.py): a finding fails, an unreachable advisory source is said
so and passes, and an API that answers nothing useful never reads as "no vulnerabilities".

The script runs as `make audit` runs it, against real local HTTP servers standing in for the
advisory API: one that is down, one that serves no per-version pages (like a mirror or a proxy
of project pages only), one that answers without advisory data.
"""

from __future__ import annotations

import importlib.util
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from paths import PROJECT_DIR as ROOT

SCRIPT = ROOT / "requirements" / "audit.py"
SKIPPED = "audit skipped: advisory source unreachable"


def load_script():
    spec = importlib.util.spec_from_file_location("lock_audit", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=600
    )


@pytest.fixture
def lock(tmp_path: Path) -> Path:
    path = tmp_path / "lock.txt"
    path.write_text("# via uv\nrequests==2.5.0\n    # via x\npip-audit==2.10.1\n")
    return path


def serve(status: int, body: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/pypi"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def project_pages_only() -> Iterator[str]:
    """Answers 404 for /pypi/<name>/<version>/json, as a proxy of project pages does."""
    yield from serve(404, b'{"message": "Not Found"}')


@pytest.fixture
def no_advisory_data() -> Iterator[str]:
    yield from serve(200, json.dumps({"info": {"name": "requests"}}).encode())


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_advisory_source_that_is_down_is_said_and_passes(lock: Path) -> None:
    out = run("--lock", str(lock), "--advisory-api", f"http://127.0.0.1:{closed_port()}/pypi")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1].startswith(SKIPPED)
    assert "requests/2.5.0/json" in out.stdout  # names what it tried


def test_a_source_without_version_pages_is_unreachable_not_clean(
    lock: Path, project_pages_only: str
) -> None:
    out = run("--lock", str(lock), "--advisory-api", project_pages_only)
    assert out.returncode == 0
    assert SKIPPED in out.stdout
    assert "HTTP 404" in out.stdout
    assert "no known vulnerabilities" not in out.stdout


def test_a_source_without_advisory_data_is_unreachable(lock: Path, no_advisory_data: str) -> None:
    out = run("--lock", str(lock), "--advisory-api", no_advisory_data)
    assert out.returncode == 0
    assert "without a 'vulnerabilities' field" in out.stdout


def test_a_finding_fails_and_names_package_version_and_fix() -> None:
    audit = load_script()
    report = {
        "dependencies": [
            {
                "name": "starlette",
                "version": "1.3.0",
                "vulns": [{"id": "GHSA-x", "fix_versions": ["1.3.1"], "aliases": ["CVE-2099-1"]}],
            },
            {"name": "pip", "version": "26.3", "vulns": []},
        ],
        "fixes": [],
    }
    code, lines = audit.verdict(report)
    assert code == 1
    assert "starlette 1.3.0: GHSA-x (CVE-2099-1), fixed in 1.3.1" in lines


def test_every_package_skipped_is_unreachable_and_some_skipped_is_incomplete() -> None:
    audit = load_script()
    skipped = {"name": "a", "skip_reason": "Dependency not found on PyPI and could not be audited"}
    code, lines = audit.verdict({"dependencies": [skipped, {**skipped, "name": "b"}]})
    assert (code, lines[0].startswith(SKIPPED)) == (0, True)
    code, lines = audit.verdict(
        {"dependencies": [skipped, {"name": "c", "version": "1", "vulns": []}]}
    )
    assert code == 3
    assert lines[0] == "audit incomplete: 1 of 2 packages could not be audited:"
    code, lines = audit.verdict({"dependencies": [{"name": "c", "version": "1", "vulns": []}]})
    assert (code, lines) == (0, ["no known vulnerabilities in 1 locked packages"])


def test_the_lock_parser_reads_uv_pins() -> None:
    pins = load_script().locked(ROOT / "requirements" / "lock.txt")
    names = dict(pins)
    assert names["pip-audit"] == "2.10.1"
    assert "apache-airflow" in names
    assert all(not n.startswith("#") for n, _ in pins)


@pytest.fixture
def probe_passes() -> Iterator[str]:
    """Answers the probe with advisory data, so the script goes on to run pip-audit."""
    yield from serve(200, json.dumps({"info": {}, "vulnerabilities": []}).encode())


@pytest.mark.parametrize("probe", ["pypi", "passes"])
def test_pip_audit_on_a_vulnerable_pin_never_reads_clean(
    lock: Path, probe: str, request: pytest.FixtureRequest
) -> None:
    """The real pip-audit on the real advisory API: requests 2.5.0 has published advisories,
    so the result is a finding (exit 1) or, where the API cannot be read, the skip message; with
    the probe passed, pip-audit itself runs, and skipping every package is no clean result."""
    pytest.importorskip("pip_audit")
    try:
        socket.create_connection(("pypi.org", 443), timeout=10).close()
    except OSError as exc:
        pytest.skip(f"pypi.org cannot be reached: {exc}")
    api = [] if probe == "pypi" else ["--advisory-api", request.getfixturevalue("probe_passes")]
    out = run("--lock", str(lock), *api)
    assert "no known vulnerabilities" not in out.stdout
    if out.returncode == 1:
        assert "requests 2.5.0:" in out.stdout, out.stdout
    else:
        assert out.returncode == 0, out.stdout + out.stderr
        assert SKIPPED in out.stdout
