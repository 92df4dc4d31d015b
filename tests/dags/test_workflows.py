"""The GitHub Actions workflows: actionlint passes them and refuses broken ones; actions are
pinned by commit; `make check` is what the pull-request workflow runs."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from paths import PROJECT_DIR as PROJECT

ACTIONLINT = Path(sys.executable).parent / "actionlint"
WORKFLOWS = PROJECT / ".github" / "workflows"
PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def actionlint(cwd: Path) -> subprocess.CompletedProcess[str]:
    # -shellcheck= and -pyflakes= off: the result must not depend on what else is on PATH
    return subprocess.run(
        [str(ACTIONLINT), "-no-color", "-shellcheck=", "-pyflakes="],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def workflows() -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(WORKFLOWS.glob("*.yml"))}


def test_actionlint_passes_the_workflows() -> None:
    assert set(workflows()) == {"pr.yml", "main.yml", "release.yml"}
    out = actionlint(PROJECT)
    assert out.returncode == 0, out.stdout + out.stderr


@pytest.mark.parametrize(
    ("workflow", "old", "new", "reported"),
    [
        # a job that waits for a job that does not exist
        ("main.yml", "needs: test", "needs: tests", 'job "image" needs job "tests"'),
        # a misspelt input of the release form
        ("release.yml", "${{ inputs.model }}\n", "${{ inputs.modle }}\n", "modle"),
        # a pull request's title pasted into a shell script: script injection
        (
            "pr.yml",
            'echo "no spec changed"',
            'echo "${{ github.event.pull_request.title }}"',
            "potentially untrusted",
        ),
        # a YAML key GitHub does not know
        ("pr.yml", "timeout-minutes: 30", "timeout-minute: 30", "timeout-minute"),
    ],
)
def test_actionlint_refuses_a_broken_workflow(
    tmp_path: Path, workflow: str, old: str, new: str, reported: str
) -> None:
    shutil.copytree(WORKFLOWS, tmp_path / ".github" / "workflows")
    (tmp_path / ".git").mkdir()  # actionlint looks for the repository root
    target = tmp_path / ".github" / "workflows" / workflow
    text = target.read_text()
    assert old in text
    target.write_text(text.replace(old, new, 1))
    out = actionlint(tmp_path)
    assert out.returncode != 0, out.stdout
    assert workflow in out.stdout
    assert reported in out.stdout, out.stdout


def test_every_action_is_pinned_by_commit() -> None:
    uses = [
        step["uses"]
        for wf in workflows().values()
        for job in wf["jobs"].values()
        for step in job.get("steps", [])
        if "uses" in step
    ]
    assert uses
    assert [u for u in uses if not PINNED.match(u)] == []


def test_the_pull_request_runs_make_check_and_make_check_runs_the_fast_tier() -> None:
    runs = [s.get("run", "") for s in workflows()["pr.yml"]["jobs"]["check"]["steps"]]
    assert "make check" in runs
    out = subprocess.run(
        ["make", "-n", "check", "VENV=.venv-none", "STAMP=/dev/null"],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for command in (
        "ruff check",
        "ruff format --check",
        "mypy",
        "lint-imports",
        "airmlops_core.cli validate --deep",
        "actionlint",
        '-m pytest -m "not integration"',
    ):
        assert command in out.stdout, out.stdout


def test_the_release_waits_for_the_target_environment_and_passes_inputs_by_env() -> None:
    job = workflows()["release.yml"]["jobs"]["deploy"]
    assert job["environment"] == "${{ inputs.target_environment }}"
    trigger = next(s for s in job["steps"] if "deploy_trigger" in s.get("run", ""))
    assert "${{" not in trigger["run"]  # inputs reach the script as environment variables
    assert trigger["env"]["AIRFLOW_PASSWORD"] == "${{ secrets.AIRFLOW_PASSWORD }}"
