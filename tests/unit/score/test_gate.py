"""The partition gate: quarantine, the run's manifest, and a whole run on S3."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from airmlops_core import errors
from airmlops_core.io import scored as layout
from airmlops_core.quality.suite import ColumnRules, parse_suite
from airmlops_core.score import gate, partitions
from churn_batches import CONTRACTS
from score_helpers import (
    DATE,
    MODEL,
    data_table,
    score,
    sha,
    write_bytes,
    write_csv,
    write_parquet,
)

SUITE = parse_suite(
    {
        "model": "score_test",
        "target": "churn",
        "extra_columns": "block",
        "row_count": {"min": 10},
        "columns": {
            "customer_id": {"dtype": "int64"},
            "tenure": {"dtype": "int64", "nullable": False, "min": 0, "max": 100},
            "monthly": {"dtype": "float64", "max_null_fraction": 0.05, "min": 0},
            "contract": {"dtype": "str", "nullable": False, "allowed": CONTRACTS},
            "churn": {"dtype": "int64", "allowed": [0, 1]},
        },
    }
)


def test_failing_partition_is_quarantined_and_others_are_scored(
    model_v1, batch, tmp_path: Path
) -> None:
    df, good = batch
    bad = df.head(9000).copy()
    bad.loc[[10, 8500], "tenure"] = 150  # in two different chunks of 4096
    bad.loc[8000, "customer_id"] = bad.loc[3, "customer_id"]  # a duplicate key across chunks
    bad_src = tmp_path / "in" / "batch-0002.parquet"
    bad_src.parent.mkdir()
    pq.write_table(data_table(bad), bad_src)
    broken = write_bytes(tmp_path / "in" / "batch-0003.parquet", good.read_bytes()[:5000])
    base, qbase = str(tmp_path / "scored"), str(tmp_path / "quarantine")

    def run(src: Path) -> dict[str, Any]:
        name = layout.partition_name(str(src))
        return gate.score_or_quarantine(
            model_v1,
            str(src),
            suite=SUITE,
            row_key="customer_id",
            logical_date=DATE,
            output_uri=layout.output_uri(base, MODEL, DATE, name),
            quarantine_uri=f"{qbase}/{name}",
            chunk_rows=4096,
            check_chunk_rows=4096,
        )

    # an earlier attempt had published the bad partition: a quarantine removes it
    stale = Path(layout.output_uri(base, MODEL, DATE, "batch-0002"))
    score(model_v1, good, stale)
    results = [run(p) for p in (good, bad_src, broken)]
    ok, rejected, unreadable = results
    assert ok["status"] == "scored"
    assert ok["rows_out"] == len(df)
    assert ok["check"]["success"]
    assert rejected["status"] == "quarantined"
    assert rejected["output_uri"] is None
    assert rejected["failed_rules"] == ["customer_id.unique", "tenure.range"]
    assert rejected["quarantined_rows"] == 9000
    assert "tenure.range" in rejected["message"]
    assert "customer_id.unique" in rejected["message"]
    assert str(bad_src) in rejected["message"]
    assert not stale.exists()
    evidence = json.loads((Path(rejected["quarantine_uri"]) / "result.json").read_text())
    failures = {f["rule"]: f for f in evidence["result"]["failures"]}
    assert failures["tenure.range"]["unexpected_count"] == 2
    assert failures["customer_id.unique"]["unexpected_count"] == 2
    assert evidence["source_uri"] == str(bad_src)
    assert sha(rejected["quarantined_input"]) == sha(bad_src) == rejected["input_sha256"]
    assert (Path(rejected["quarantine_uri"]) / "report.html").is_file()
    assert unreadable["status"] == "quarantined"
    assert unreadable["failed_rules"] == ["file.readable"]
    assert "not a readable Parquet file" in unreadable["message"]

    manifest = gate.write_manifest(base, results)
    path = Path(layout.manifest_uri(base, MODEL, DATE))
    assert manifest["uri"] == str(path)
    first = path.read_bytes()
    assert gate.write_manifest(base, list(reversed(results)))["totals"] == manifest["totals"]
    assert path.read_bytes() == first  # deterministic: no timings, sorted
    assert manifest["totals"] == {
        "partitions": 3,
        "scored": 1,
        "quarantined": 2,
        "rows_in": len(df) + 9000,
        "rows_out": len(df),
        "quarantined_rows": 9000,
    }
    listed = json.loads(first)
    assert [p["partition"] for p in listed["partitions"]] == [
        "batch-0001",
        "batch-0002",
        "batch-0003",
    ]
    assert listed["partitions"][0]["output_sha256"] == sha(ok["output_uri"])
    assert listed["model_version"] == model_v1.version
    assert listed["logical_date"] == DATE
    # readers of the run's directory see exactly the scored partition
    assert sorted(p.name for p in path.parent.iterdir()) == ["_manifest.json", "batch-0001.parquet"]
    with pytest.raises(ValueError, match="listed twice"):
        gate.write_manifest(base, [ok, ok])


def test_signature_mismatch_after_a_passing_gate_is_quarantined(
    model_v1, batch, tmp_path: Path
) -> None:
    df, _ = batch
    loose = SUITE.model_copy(update={"columns": {**SUITE.columns, "monthly": ColumnRules()}})
    src = write_parquet(df.head(500).assign(monthly=df["monthly"].head(500).astype(str)), tmp_path)
    result = gate.score_or_quarantine(
        model_v1,
        str(src),
        suite=loose,
        row_key="customer_id",
        logical_date=DATE,
        output_uri=str(tmp_path / "o.parquet"),
        quarantine_uri=str(tmp_path / "q"),
    )
    assert result["status"] == "quarantined"
    assert result["failed_rules"] == ["model.signature"]
    assert result["quarantined_rows"] == 500
    assert "column 'monthly'" in result["message"]
    assert not (tmp_path / "o.parquet").exists()


def test_s3_input_output_quarantine_and_manifest(
    s3, s3_prefix: str, model_v1, batch, tmp_path: Path
) -> None:
    df, local_src = batch
    client = s3.client
    bucket, key = s3_prefix[len("s3://") :].split("/", 1)
    client.upload_file(str(local_src), bucket, f"{key}in/batch-0001.parquet")
    bad = df.head(100).assign(contract="weekly")
    bad_csv = write_csv(bad, tmp_path / "batch-0002.csv")
    client.upload_file(str(bad_csv), bucket, f"{key}in/batch-0002.csv")
    client.put_object(Bucket=bucket, Key=f"{key}in/_SUCCESS", Body=b"")

    parts = partitions.list_partitions(f"{s3_prefix}in/", s3_client=client)
    assert parts == [f"{s3_prefix}in/batch-0001.parquet", f"{s3_prefix}in/batch-0002.csv"]
    assert partitions.list_partitions(f"{s3_prefix}in/*.csv", s3_client=client) == parts[1:]
    assert partitions.list_partitions(f"{s3_prefix}in", s3_client=client) == parts
    with pytest.raises(errors.DataError, match="no partitions found"):
        partitions.list_partitions(f"{s3_prefix}nothing/", s3_client=client)

    base = f"{s3_prefix}scored"
    results = [
        gate.score_or_quarantine(
            model_v1,
            uri,
            suite=SUITE,
            row_key="customer_id",
            logical_date=DATE,
            output_uri=layout.output_uri(base, MODEL, DATE, layout.partition_name(uri)),
            quarantine_uri=f"{s3_prefix}quarantine/{layout.partition_name(uri)}",
            s3_client=client,
            chunk_rows=4096,
        )
        for uri in parts
    ]
    scored, rejected = results
    assert scored["status"] == "scored"
    assert rejected["status"] == "quarantined"
    out_key = scored["output_uri"][len(f"s3://{bucket}/") :]
    body = client.get_object(Bucket=bucket, Key=out_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == scored["output_sha256"]
    # the same bytes as scoring the same file locally: S3 changes nothing in the output
    local = score(model_v1, local_src, tmp_path / "local.parquet")
    assert local["output_sha256"] == scored["output_sha256"]
    assert scored["input_sha256"] == sha(local_src)
    assert rejected["failed_rules"] == ["contract.allowed"]
    qkey = f"{key}quarantine/batch-0002/"
    stored = {
        o["Key"][len(qkey) :]
        for o in client.list_objects_v2(Bucket=bucket, Prefix=qkey)["Contents"]
    }
    assert stored == {"input.csv", "report.html", "result.json"}
    manifest = gate.write_manifest(base, results, s3_client=client)
    body = client.get_object(Bucket=bucket, Key=manifest["uri"][len(f"s3://{bucket}/") :])[
        "Body"
    ].read()
    assert json.loads(body)["totals"]["quarantined_rows"] == 100
