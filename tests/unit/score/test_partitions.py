"""Listing a run's partitions: files, directories and globs, local (S3: see test_gate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from airmlops_core import errors
from airmlops_core.io import scored as layout
from airmlops_core.score import partitions


def test_list_partitions_local(tmp_path: Path) -> None:
    for name in [
        "b.csv",
        "a.parquet",
        "c.PQ",
        ".a.parquet.x1.tmp",
        "_SUCCESS",
        "notes.txt",
        "_manifest.json",
        ".hidden.parquet",
    ]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.parquet").write_bytes(b"x")
    names = ["a.parquet", "b.csv", "c.PQ"]
    assert partitions.list_partitions(str(tmp_path)) == [str(tmp_path / n) for n in names]
    assert partitions.list_partitions(f"file://{tmp_path}/*.csv") == [str(tmp_path / "b.csv")]
    assert partitions.list_partitions(str(tmp_path / "a.parquet")) == [str(tmp_path / "a.parquet")]
    assert [layout.partition_name(u) for u in partitions.list_partitions(str(tmp_path))] == [
        "a",
        "b",
        "c",
    ]
    with pytest.raises(errors.DataError, match=r"no partitions found"):
        partitions.list_partitions(str(tmp_path / "*.json"))
    with pytest.raises(errors.DataError, match=r"no such file or directory"):
        partitions.list_partitions(str(tmp_path / "missing"))
    with pytest.raises(errors.DataError, match=r"not a partition file"):
        partitions.list_partitions(str(tmp_path / "notes.txt"))
    (tmp_path / "a.csv").write_bytes(b"x")
    with pytest.raises(errors.DataError, match=r"share an output name.*'a'"):
        partitions.list_partitions(str(tmp_path))
