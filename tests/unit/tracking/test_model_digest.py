"""The digest of a model directory: any change to the files changes it, MLflow's download
bookkeeping does not."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from airmlops_core.tracking.model_digest import DOWNLOAD_META, dir_sha256


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    root = tmp_path / "model"
    (root / "sub").mkdir(parents=True)
    (root / "MLmodel").write_text("flavors: {}\n")
    (root / "model.skops").write_bytes(b"\x00\x01weights")
    (root / "sub" / "extra.json").write_text("{}")
    return root


def expected(root: Path) -> str:
    """The documented construction, computed here with hashlib alone."""
    h = hashlib.sha256()
    for rel in ("MLmodel", "model.skops", "sub/extra.json"):
        h.update(rel.encode() + b"\0")
        h.update(hashlib.sha256((root / rel).read_bytes()).hexdigest().encode() + b"\n")
    return h.hexdigest()


def test_digest_is_the_documented_construction(model_dir: Path) -> None:
    assert dir_sha256(model_dir) == expected(model_dir)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: (r / "model.skops").write_bytes(b"\x00\x01weightz"),  # one byte
        lambda r: (r / "sub" / "new.txt").write_text("x"),  # a file added
        lambda r: (r / "sub" / "extra.json").unlink(),  # a file removed
        lambda r: (r / "sub" / "extra.json").rename(r / "sub" / "other.json"),  # renamed
    ],
)
def test_any_change_to_the_files_changes_the_digest(model_dir: Path, change) -> None:
    before = dir_sha256(model_dir)
    change(model_dir)
    assert dir_sha256(model_dir) != before


def test_mlflows_download_bookkeeping_is_left_out(model_dir: Path) -> None:
    before = dir_sha256(model_dir)
    (model_dir / DOWNLOAD_META).write_text("model_name: m\nmodel_version: 3\n")
    assert dir_sha256(model_dir) == before
    (model_dir / "sub" / DOWNLOAD_META).write_text("x")  # only at the top: elsewhere it counts
    assert dir_sha256(model_dir) != before
