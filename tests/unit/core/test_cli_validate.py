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


def test_profile_suite_drafts_from_the_specs_data_and_names_it_as_the_spec_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The draft's header names the spec's relative `source.uri`, not this machine's path."""
    import pandas as pd

    from airmlops_core.quality.suite import load_suite

    spec = yaml.safe_load((MODELS_DIR / "customer_churn.yaml").read_text())
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "customer_churn.yaml").write_text(yaml.safe_dump(spec))
    data_dir = tmp_path / "data"
    (data_dir / "demo").mkdir(parents=True)
    rows = 200
    frame = pd.DataFrame(
        {
            "customer_id": range(rows),
            "tenure": [i % 70 for i in range(rows)],
            "contract": ["month", "year"] * (rows // 2),
            "churn": [0, 1, 0, 0] * (rows // 4),
        }
    )
    frame.to_parquet(data_dir / "demo" / "churn.parquet")
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(data_dir))
    out = tmp_path / "customer_churn.yaml"

    assert (
        cli.main(
            [
                "profile-suite",
                "customer_churn",
                "--models-dir",
                str(tmp_path / "models"),
                "--out",
                str(out),
            ]
        )
        == 0
    )

    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text()
    assert f"rows of {spec['source']['uri']}." in text
    assert str(data_dir) not in text
    assert load_suite(out).columns["tenure"].max == 76  # 69 widened by 10% of the range
