"""Streaming a partition through the model: scores, determinism, lineage, atomic writes."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from airmlops_core.io import scored as layout
from airmlops_core.score.model import LoadedModel
from airmlops_core.train import estimator as training
from churn_batches import frame
from score_helpers import (
    DATE,
    MODEL,
    data_table,
    expected_proba,
    make_spec,
    mlflow_sklearn_load,
    score,
    sha,
)


def test_scores_are_correct_complete_and_byte_identical(
    registry, model_v1, batch, tmp_path: Path
) -> None:
    df, src = batch
    out = layout.output_uri(str(tmp_path / "scored"), MODEL, DATE, layout.partition_name(str(src)))
    results = [score(model_v1, src, out, workers=w) for w in (2, 1, 3)]
    assert len({r["output_sha256"] for r in results}) == 1  # whatever the thread count
    assert results[0]["output_sha256"] == sha(out)
    assert results[0]["input_sha256"] == sha(src)
    assert (
        results[0]["rows_in"]
        == results[0]["rows_out"]
        == len(df)
        == pq.ParquetFile(out).metadata.num_rows
    )
    json.dumps(results[0])  # XCom-safe

    scored = pd.read_parquet(out)
    assert list(scored.columns) == [
        "customer_id",
        "prediction",
        "proba_0",
        "proba_1",
        "model_name",
        "model_version",
        "input_sha256",
        "logical_date",
    ]
    assert scored["customer_id"].tolist() == df["customer_id"].tolist()
    proba = expected_proba(registry, registry["v1"], df)
    np.testing.assert_allclose(scored[["proba_0", "proba_1"]].to_numpy(), proba, rtol=0, atol=1e-12)
    native = mlflow_sklearn_load(f"models:/{MODEL}/{registry['v1']}")
    assert (
        scored["prediction"].to_numpy()
        == native.predict(training.feature_frame(make_spec(MODEL, 1.0), df))
    ).all()
    assert set(scored["model_name"]) == {MODEL}
    assert set(scored["input_sha256"]) == {sha(src)}
    assert set(scored["logical_date"]) == {pd.Timestamp(DATE)}
    assert pq.ParquetFile(out).metadata.num_row_groups == -(-len(df) // 4096)

    # the same rows as CSV with extra columns score to the same probabilities
    csv = tmp_path / "batch-0001.csv"
    df.assign(note="x", region=7).to_csv(csv, index=False)
    csv_out = tmp_path / "csv.parquet"
    csv_result = score(model_v1, csv, csv_out)
    from_csv = pd.read_parquet(csv_out)
    assert csv_result["rows_out"] == len(df)
    np.testing.assert_allclose(
        from_csv[["proba_0", "proba_1"]].to_numpy(), proba, rtol=0, atol=1e-12
    )
    assert "note" not in from_csv.columns

    # another logical date: another path, the date in every row
    other = score(
        model_v1,
        src,
        layout.output_uri(str(tmp_path / "scored"), MODEL, "2024-05-02", "batch-0001"),
        logical_date="2024-05-02",
    )
    assert other["output_uri"] != out
    assert other["output_sha256"] != results[0]["output_sha256"]
    assert set(pd.read_parquet(other["output_uri"])["logical_date"]) == {
        pd.Timestamp("2024-05-02T00:00:00Z")
    }


def test_without_row_key_rows_are_numbered(model_v1, batch, tmp_path: Path) -> None:
    df, src = batch
    out = tmp_path / "o.parquet"
    score(model_v1, src, out, row_key=None, chunk_rows=3333)
    assert pd.read_parquet(out)["row_index"].tolist() == list(range(len(df)))


def _write_forever(model: LoadedModel, src: Path, out: Path) -> None:
    """A forked child: score the partition again and again until it is killed."""
    try:
        while True:
            score(model, src, out, chunk_rows=2048)
    finally:
        os._exit(1)  # never return into the test runner in the child


def test_killed_writers_leave_no_partial_file_and_a_rerun_completes(
    model_v1, tmp_path: Path
) -> None:
    """10 writers (forked: no interpreter start-up) SIGKILLed at random moments."""
    src = tmp_path / "kill.parquet"
    df = frame(60_000, seed=11)
    pq.write_table(data_table(df), src)
    out = tmp_path / "out" / "kill.parquet"
    t0 = time.perf_counter()
    ref = score(model_v1, src, tmp_path / "ref" / "kill.parquet", chunk_rows=2048)
    one_run = time.perf_counter() - t0
    rng = random.Random(20240501)
    killed_mid_write = 0
    for _ in range(10):
        pid = os.fork()
        if pid == 0:
            _write_forever(model_v1, src, out)
        try:
            time.sleep(rng.uniform(0.02, 2.5 * one_run))
        finally:
            os.kill(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status)
        assert os.WTERMSIG(status) == signal.SIGKILL
        killed_mid_write += any(p.name.endswith(".tmp") for p in out.parent.glob(".*"))
        visible = (
            [p.name for p in out.parent.iterdir() if not p.name.startswith(".")]
            if out.parent.exists()
            else []
        )
        # nothing partial is ever visible: the published file is absent or complete
        assert visible in ([], ["kill.parquet"])
        if visible:
            assert sha(out) == ref["output_sha256"]
    assert killed_mid_write >= 1  # the kills did land while a file was being written
    rerun = score(model_v1, src, out, chunk_rows=2048)
    assert rerun["output_sha256"] == ref["output_sha256"] == sha(out)
    assert sorted(p.name for p in out.parent.iterdir()) == ["kill.parquet"]  # temps cleaned
    keys = pd.read_parquet(out, columns=["customer_id"])["customer_id"]
    assert len(keys) == len(df)
    assert keys.is_unique
