"""`airmlops validate <files>`: what the pull-request workflow runs on the specs a PR changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from airmlops_core import cli
from paths import MODELS_DIR


def test_named_spec_files_are_checked_and_a_bad_one_fails_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = shutil.copy(MODELS_DIR / "customer_churn.yaml", tmp_path / "customer_churn.yaml")
    raw = yaml.safe_load((MODELS_DIR / "diamond_price.yaml").read_text())
    raw["metrics"]["floors"] = {raw["metrics"]["primary"]: "high"}
    bad = tmp_path / "diamond_price.yaml"
    bad.write_text(yaml.safe_dump(raw))

    assert cli.main(["validate", "--deep", str(good)]) == 0
    assert "1 valid, 0 invalid spec(s) in 1 file(s)" in capsys.readouterr().out

    assert cli.main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr()
    assert "1 valid, 1 invalid spec(s) in 2 file(s)" in out.out
    assert str(bad) in out.err
    assert "metrics.floors" in out.err


def test_without_files_every_spec_in_the_folder_is_checked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["validate", "--models-dir", str(MODELS_DIR)]) == 0
    n = len(list(MODELS_DIR.glob("*.yaml")))
    assert f"{n} valid, 0 invalid spec(s) in {MODELS_DIR}" in capsys.readouterr().out
