"""Reading a partition: bad input gives a clear error naming the file (and column), nothing
published."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from airmlops_core.errors import ScoringError
from score_helpers import score, sha, write_bytes, write_csv, write_parquet

BAD_INPUTS = {
    "truncated parquet": (lambda df, d: _truncated(df, d), r"not a readable Parquet file"),
    "garbage parquet": (
        lambda df, d: write_bytes(d / "x.parquet", b"PAR1" + os.urandom(3000)),
        r"not a readable Parquet file",
    ),
    "wrong delimiter": (
        lambda df, d: write_csv(df, d / "x.csv", sep=";"),
        r"missing column.*'tenure'.*is the delimiter wrong",
    ),
    "wrong encoding": (
        lambda df, d: write_csv(
            df.assign(contract=np.where(np.arange(len(df)) == 15000, "année", df["contract"])),
            d / "x.csv",
            encoding="latin-1",
        ),
        r"column 'contract' is not UTF-8",
    ),
    "missing column": (
        lambda df, d: write_parquet(df.drop(columns=["monthly"]), d),
        r"missing column\(s\) 'monthly' \(double\)",
    ),
    "wrong dtype": (
        lambda df, d: write_parquet(df.assign(monthly=df["monthly"].astype("str")), d),
        r"column 'monthly' is (string|large_string), the model expects double",
    ),
    "wrong dtype in csv": (
        lambda df, d: write_csv(
            df.assign(
                tenure=np.where(np.arange(len(df)) == 12345, "n/a?", df["tenure"].astype(str))
            ),
            d / "x.csv",
        ),
        r"column 'tenure': .*invalid value 'n/a\?'",
    ),
    "integer too large for double": (
        lambda df, d: write_parquet(
            df.assign(tenure=np.where(np.arange(len(df)) == 9, 2**60, df["tenure"])), d
        ),
        r"column 'tenure' \(int64\) does not convert exactly to double",
    ),
    "empty parquet": (lambda df, d: write_parquet(df.head(0), d), r"empty partition \(0 rows\)"),
    "empty csv": (lambda df, d: write_csv(df.head(0), d / "x.csv"), r"empty partition"),
    "zero-byte csv": (lambda df, d: write_bytes(d / "x.csv", b""), r"empty CSV file"),
}


def _truncated(df: pd.DataFrame, d: Path) -> Path:
    full = write_parquet(df, d).read_bytes()
    return write_bytes(d / "x.parquet", full[: len(full) * 2 // 3])


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_input_names_the_file_and_publishes_nothing(
    case: str, model_v1, batch, tmp_path: Path
) -> None:
    df, good = batch
    make, pattern = BAD_INPUTS[case]
    src = make(df.head(16_000), tmp_path)
    out = tmp_path / "out" / "x.parquet"
    score(model_v1, good, out)  # an earlier good output at the same place
    before = sha(out)
    with pytest.raises(ScoringError, match=pattern) as info:
        score(model_v1, src, out)
    assert str(src) in str(info.value)
    assert sha(out) == before  # untouched, and no temporary left behind
    assert sorted(p.name for p in out.parent.iterdir()) == ["x.parquet"]


def test_the_staging_copy_of_a_killed_task_is_swept_and_nothing_else(tmp_path: Path) -> None:
    import socket
    import subprocess
    import sys

    from airmlops_core.score import reading

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(dead.stdout)
    host = socket.gethostname()
    dirs = {
        "killed": tmp_path / f"airmlops-stage-{dead_pid}@{host}-abc123",
        "live": tmp_path / f"airmlops-stage-{os.getpid()}@{host}-def456",
        "other host": tmp_path / f"airmlops-stage-{dead_pid}@not-{host}-ghi789",
        "odd name": tmp_path / "airmlops-stage-x1y2z3",
        "not ours": tmp_path / f"other-{dead_pid}@{host}-abc",
    }
    for d in dirs.values():
        d.mkdir()
        (d / "part-0.parquet").write_bytes(b"PAR1")
    assert reading.sweep_orphaned_stages(str(tmp_path)) == [dirs["killed"]]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        d.name for k, d in dirs.items() if k != "killed"
    )
    assert reading.stage_owner(reading._stage_prefix() + "x_1") == (os.getpid(), host)
