"""`make audit`: known vulnerabilities of the locked versions (pip-audit on requirements/lock.txt).

pip-audit's "pypi" service reads PyPI's per-version JSON API (`/pypi/<name>/<version>/json`,
its `vulnerabilities` field). Where that API does not answer (no network, or a mirror or proxy
that serves only the project pages) pip-audit would skip every package and still report "no
known vulnerabilities", so this script probes the API first and reads pip-audit's JSON report:

- exit 0: nothing found; or "audit skipped: advisory source unreachable" (the probe failed, or
  pip-audit could audit none of the packages), said on the last line;
- exit 1: a locked version has a published advisory (each is listed), or pip-audit failed;
- exit 3: the audit is incomplete (some packages could not be audited; each is named).

Usage: python requirements/audit.py [--lock requirements/lock.txt] [--advisory-api URL]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LOCK = ROOT / "requirements" / "lock.txt"
PYPI_JSON = "https://pypi.org/pypi"  # what pip-audit's "pypi" service reads (not configurable)
SKIPPED = "audit skipped: advisory source unreachable"


def locked(lock: Path) -> list[tuple[str, str]]:
    """The (name, version) pins of a lock file, in order."""
    pins = []
    for line in lock.read_text(encoding="utf-8").splitlines():
        name, sep, version = line.strip().partition("==")
        if sep and name and not name.startswith(("#", "-")):
            pins.append((name.split("[")[0], version.split(";")[0].strip()))
    return pins


def probe(base: str, name: str, version: str, timeout: float = 15.0) -> str | None:
    """Why the advisory API cannot be read (None when it answers with advisory data)."""
    url = f"{base}/{name}/{version}/json"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as exc:
        return f"{url} answered HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        return f"{url}: {exc}"
    if not isinstance(body, dict) or "vulnerabilities" not in body:
        return f"{url} answered without a 'vulnerabilities' field"
    return None


def verdict(report: dict[str, Any]) -> tuple[int, list[str]]:
    """The exit code and the lines to print for a pip-audit JSON report."""
    deps = report.get("dependencies") or []
    skipped = [d for d in deps if d.get("skip_reason")]
    found = [(d, v) for d in deps for v in d.get("vulns") or []]
    lines = [
        f"{d['name']} {d['version']}: {v['id']}"
        + (f" ({', '.join(v['aliases'])})" if v.get("aliases") else "")
        + (f", fixed in {', '.join(v['fix_versions'])}" if v.get("fix_versions") else "")
        for d, v in found
    ]
    if found:
        return 1, [f"{len(found)} known vulnerabilit(y/ies) in the locked versions:", *lines]
    if deps and len(skipped) == len(deps):
        reason = skipped[0]["skip_reason"]
        return 0, [f"{SKIPPED} (none of {len(deps)} packages could be audited: {reason})"]
    if skipped:
        return 3, [
            f"audit incomplete: {len(skipped)} of {len(deps)} packages could not be audited:",
            *(f"{d['name']} {d.get('version', '')}: {d['skip_reason']}" for d in skipped),
        ]
    return 0, [f"no known vulnerabilities in {len(deps)} locked packages"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--lock", type=Path, default=DEFAULT_LOCK)
    parser.add_argument(
        "--advisory-api", default=PYPI_JSON, help="the JSON API to probe (tests point it elsewhere)"
    )
    args = parser.parse_args(argv)
    pins = locked(args.lock)
    if not pins:
        print(f"{args.lock}: no pinned versions to audit", file=sys.stderr)
        return 2
    why = probe(args.advisory_api.rstrip("/"), *pins[0])
    if why:
        print(f"{SKIPPED} ({why})")
        return 0
    try:
        import pip_audit  # noqa: F401 - only whether it is installed
    except ImportError:
        print("pip-audit is not installed: run `make install` (the dev extra)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "report.json"
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip_audit",
                "--requirement",
                str(args.lock),
                "--no-deps",  # the lock pins every package
                "--disable-pip",
                "--vulnerability-service",
                "pypi",
                "--progress-spinner",
                "off",
                "--format",
                "json",
                "--output",
                str(out),
            ],
            capture_output=True,  # its own summary says "No known vulnerabilities found"
            text=True,  # even when it skipped every package: the verdict below is ours
            check=False,
        )
        if not out.exists():
            print(f"pip-audit failed (exit {run.returncode}) before writing its report:")
            print(run.stderr.strip()[-2000:])
            return run.returncode or 1
        code, lines = verdict(json.loads(out.read_text(encoding="utf-8")))
    print("\n".join(lines))
    return code


if __name__ == "__main__":
    sys.exit(main())
