"""Tests of airmlops_core.quality.evidence: quarantined batches and their evidence, local and S3."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from airmlops_core.io import data
from airmlops_core.quality.check import validate, validate_uri
from airmlops_core.quality.evidence import quarantine, quarantine_uri
from airmlops_core.quality.suite import Suite
from airmlops_core.spec import DataChecks, load_spec
from airmlops_core.tracking.runs import RunContext
from paths import MODELS_DIR
from samples import sample_rows


def test_quarantine_writes_evidence_and_is_idempotent(
    churn: pd.DataFrame, churn_suite: Suite, tmp_path: Path
) -> None:
    bad = sample_rows(churn, 30).assign(tenure=-1)
    result = validate(bad, churn_suite)
    qdir = tmp_path / "quarantine" / "customer_churn" / "2013-10"
    first = quarantine(bad, "/data/in.parquet", result, str(qdir))
    assert first["uri"] == str(qdir)
    assert sorted(p.name for p in qdir.iterdir()) == ["data.parquet", "report.html", "result.json"]
    stored = data.read_ref(data.DataRef.from_dict(first["data"]))
    pd.testing.assert_frame_equal(stored, bad)
    payload = json.loads(Path(first["result"]).read_text())
    assert payload["source_uri"] == "/data/in.parquet"
    assert payload["result"]["success"] is False
    assert payload["result"]["failures"][0]["rule"] == "tenure.range"
    assert "tenure.range" in Path(first["report"]).read_text()

    again = quarantine(bad, "/data/in.parquet", result, str(qdir))
    assert again == first  # same names, same bytes
    # a retry that could not read the data replaces the evidence and drops the stale data
    unreadable, frame = validate_uri(str(tmp_path / "missing.parquet"), churn_suite)
    assert frame is None
    assert unreadable.failed_rules == ["file.readable"]
    third = quarantine(frame, str(tmp_path / "missing.parquet"), unreadable, str(qdir))
    assert third["data"] is None
    assert sorted(p.name for p in qdir.iterdir()) == ["report.html", "result.json"]
    assert (
        "file not found"
        in json.loads(Path(third["result"]).read_text())["result"]["failures"][0]["observed"]
    )


def test_validate_and_quarantine_on_s3(
    churn: pd.DataFrame, churn_suite: Suite, s3: Any, s3_prefix: str
) -> None:
    good_uri = s3_prefix + "incoming/good.parquet"
    data.write_frame(sample_rows(churn, 40), good_uri, s3_client=s3.client)
    result, frame = validate_uri(good_uri, churn_suite, batch=True, s3_client=s3.client)
    assert result.success, result.summary()
    assert frame is not None
    assert result.source == good_uri

    bad_uri = s3_prefix + "incoming/bad.parquet"
    s3.client.put_object(Bucket=s3.bucket, Key=bad_uri.split("/", 3)[3], Body=b"PAR1 not really")
    bad, frame = validate_uri(bad_uri, churn_suite, s3_client=s3.client)
    assert frame is None
    assert bad.failed_rules == ["file.readable"]
    out = quarantine(frame, bad_uri, bad, s3_prefix + "quarantine/run-1", s3_client=s3.client)
    assert out["data"] is None
    assert out["result"] == s3_prefix + "quarantine/run-1/result.json"
    key = out["report"].split("/", 3)[3]
    obj = s3.client.get_object(Bucket=s3.bucket, Key=key)
    assert obj["ContentType"].startswith("text/html")
    assert "file.readable" in obj["Body"].read().decode()
    again = quarantine(frame, bad_uri, bad, s3_prefix + "quarantine/run-1", s3_client=s3.client)
    assert again == out


def test_quarantine_uri_per_dag_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = load_spec(MODELS_DIR / "customer_churn.yaml")
    ctx = RunContext(
        model="customer_churn",
        dag_id="customer_churn__train",
        run_id="manual__2024-01-01T00:00:00+00:00",
        task_id="check_data",
    )
    monkeypatch.setenv("AIRMLOPS_LOCAL_DIR", str(tmp_path))
    monkeypatch.delenv("AIRMLOPS_WORK_URI", raising=False)
    uri = quarantine_uri(spec, ctx)
    assert uri == data.join_uri(
        str(tmp_path / "work" / "quarantine" / "customer_churn"),
        "customer_churn__train",
        data.safe_segment(ctx.run_id),
    )
    assert ctx.run_id not in uri  # the run id is made path-safe
    # with the work files on S3, the quarantine is there too (no worker's local disk)
    monkeypatch.setenv("AIRMLOPS_WORK_URI", "s3://state/work")
    assert quarantine_uri(spec, ctx).startswith("s3://state/work/quarantine/customer_churn/")
    custom = spec.model_copy(update={"data_checks": DataChecks(quarantine_uri="s3://b/q")})
    assert quarantine_uri(custom, ctx) == (
        f"s3://b/q/customer_churn__train/{data.safe_segment(ctx.run_id)}"
    )
