"""Bulk scoring against a real MLflow server, real files and a real S3 server.

The model is fitted by the train path's own code (training.fit) and logged with the same
log_model call as train_flow.train_step; expected probabilities come from the registered model
loaded independently (mlflow.sklearn) and fed through training.feature_frame.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import secrets
import signal
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from mlflow import MlflowClient
from mlflow.models import infer_signature

from airmlops_core import errors
from airmlops_core.errors import ChampionNotFound, ScoringError
from airmlops_core.io import scored as layout
from airmlops_core.quality.suite import ColumnRules, parse_suite
from airmlops_core.score import scoring
from airmlops_core.spec import ModelSpec
from airmlops_core.tracking.runs import experiment_name
from airmlops_core.train import estimator as training
from airmlops_core.train import flow as train_flow
from churn_batches import CONTRACTS, frame

MODEL = f"score_test_{secrets.token_hex(3)}"
DATE = "2024-05-01T00:00:00Z"


def make_spec(name: str, c: float) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": name,
            "task": "binary",
            "source": {"kind": "file", "uri": "x.parquet"},
            "target": "churn",
            "row_key": "customer_id",
            "features": {"numeric": ["tenure", "monthly"], "categorical": ["contract"]},
            "estimator": {
                "class": "sklearn.linear_model.LogisticRegression",
                "params": {"max_iter": 500, "C": c},
            },
            "metrics": {"primary": "roc_auc"},
        }
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


def log_version(spec: ModelSpec, train: pd.DataFrame) -> str:
    """Fit and register one version exactly as train_flow.train_step logs it."""
    pipeline = training.fit(spec, train)
    sample = training.feature_frame(spec, train).head(5)
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name=train_flow.MODEL_ARTIFACT,
            signature=infer_signature(sample, pipeline.predict_proba(sample)),
            input_example=sample,
            pip_requirements=train_flow.pip_requirements(),
            serialization_format="skops",
            skops_trusted_types=training.trusted_types(pipeline),
            pyfunc_predict_fn="predict_proba",
        )
    return str(mlflow.register_model(info.model_uri, spec.name).version)


@pytest.fixture(scope="module")
def registry(mlflow_url: str) -> dict[str, Any]:
    """Two versions of MODEL (different C and training rows) on the session's server."""
    mlflow.set_tracking_uri(mlflow_url)
    mlflow.set_experiment(experiment_name(MODEL))
    v1 = log_version(make_spec(MODEL, 1.0), frame(3000, seed=1))
    v2 = log_version(make_spec(MODEL, 0.001), frame(500, seed=2))
    client = MlflowClient(mlflow_url)
    return {"client": client, "v1": v1, "v2": v2, "url": mlflow_url}


@pytest.fixture(scope="module")
def model_v1(registry: dict[str, Any]) -> scoring.LoadedModel:
    return scoring.load_model(registry["client"], MODEL, registry["v1"])


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> tuple[pd.DataFrame, Path]:
    """20,000 rows as Parquet in row groups of 3,000 (chunks of 4,096 straddle them)."""
    df = frame(20_000, seed=7, start=1_000_000)
    path = tmp_path_factory.mktemp("in") / "batch-0001.parquet"
    pq.write_table(data_table(df), path, row_group_size=3000)
    return df, path


def data_table(df: pd.DataFrame) -> Any:
    import pyarrow as pa

    return pa.Table.from_pandas(df, preserve_index=False)


def expected_proba(registry: dict[str, Any], version: str, df: pd.DataFrame) -> np.ndarray:
    """predict_proba of the registered version, loaded independently of scoring.py."""
    native = mlflow.sklearn.load_model(f"models:/{MODEL}/{version}")
    return native.predict_proba(training.feature_frame(make_spec(MODEL, 1.0), df))


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def score(model: scoring.LoadedModel, src: Path | str, out: Path | str, **kw: Any) -> dict:
    kw.setdefault("row_key", "customer_id")
    kw.setdefault("logical_date", DATE)
    kw.setdefault("chunk_rows", 4096)
    return scoring.score_partition(model, str(src), str(out), **kw)


# --------------------------------------------------------------------------------------------
# Partitions, layout, champion


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
    assert scoring.list_partitions(str(tmp_path)) == [str(tmp_path / n) for n in names]
    assert scoring.list_partitions(f"file://{tmp_path}/*.csv") == [str(tmp_path / "b.csv")]
    assert scoring.list_partitions(str(tmp_path / "a.parquet")) == [str(tmp_path / "a.parquet")]
    assert [layout.partition_name(u) for u in scoring.list_partitions(str(tmp_path))] == [
        "a",
        "b",
        "c",
    ]
    with pytest.raises(errors.DataError, match=r"no partitions found"):
        scoring.list_partitions(str(tmp_path / "*.json"))
    with pytest.raises(errors.DataError, match=r"no such file or directory"):
        scoring.list_partitions(str(tmp_path / "missing"))
    with pytest.raises(errors.DataError, match=r"not a partition file"):
        scoring.list_partitions(str(tmp_path / "notes.txt"))
    (tmp_path / "a.csv").write_bytes(b"x")
    with pytest.raises(errors.DataError, match=r"share an output name.*'a'"):
        scoring.list_partitions(str(tmp_path))


def test_output_layout_is_deterministic() -> None:
    uri = layout.output_uri("s3://b/scored", "m", "2024-05-01T02:00:00+02:00", "p-1")
    assert uri == "s3://b/scored/m/2024-05-01T00-00-00Z/p-1.parquet"
    assert (
        layout.manifest_uri("/o", "m", "2024-05-01") == "/o/m/2024-05-01T00-00-00Z/_manifest.json"
    )
    assert layout.logical_date_iso("2024-05-01T00:00:00.250+00:00") == "2024-05-01T00:00:00.250000Z"
    assert layout.partition_name("s3://b/in/.././we ird%name.CSV") == "we_ird_name"
    with pytest.raises(ValueError, match="not an ISO 8601 date"):
        layout.output_uri("/o", "m", "yesterday", "p")


def test_load_uses_the_clients_server_not_the_process_wide_one(registry, tmp_path: Path) -> None:
    """A task may hold a client for one server while mlflow's global URIs name another (an
    earlier set_tracking_uri): the version must still come from the client's server."""
    other = f"sqlite:///{tmp_path / 'other.db'}"  # an empty tracking + registry store
    mlflow.set_tracking_uri(other)
    mlflow.set_registry_uri(other)  # also exported as MLFLOW_REGISTRY_URI to child processes
    try:
        loaded = scoring.load_model(registry["client"], MODEL, registry["v1"])
    finally:
        mlflow.set_tracking_uri(registry["url"])
        mlflow.set_registry_uri("")  # back to "same as tracking"
        os.environ.pop("MLFLOW_REGISTRY_URI", None)
    assert loaded.version == registry["v1"]
    assert loaded.proba_columns


def test_no_champion_is_a_clear_error(registry: dict[str, Any]) -> None:
    client = registry["client"]
    if "champion" in client.get_registered_model(MODEL).aliases:
        client.delete_registered_model_alias(MODEL, "champion")
    with pytest.raises(ChampionNotFound, match=rf"'{MODEL}' has no 'champion' version yet"):
        scoring.resolve_champion(client, MODEL)
    with pytest.raises(ChampionNotFound, match="never_registered"):
        scoring.resolve_champion(client, "never_registered")
    with pytest.raises(errors.ModelLoadError, match="version 999 is not in the registry"):
        scoring.load_model(client, MODEL, "999")


def test_run_keeps_the_version_it_resolved(registry: dict[str, Any], batch, tmp_path: Path) -> None:
    client, v1, v2 = registry["client"], registry["v1"], registry["v2"]
    df, src = batch
    client.set_registered_model_alias(MODEL, "champion", v1)
    pinned = scoring.resolve_champion(client, MODEL)
    model = scoring.load_model(client, MODEL, pinned)
    client.set_registered_model_alias(MODEL, "champion", v2)  # promoted mid-run
    assert scoring.resolve_champion(client, MODEL) == v2
    # the rest of the run loads by the pinned version, never by the alias
    again = scoring.load_model(client, MODEL, pinned)
    out = tmp_path / "out.parquet"
    score(again, src, out)
    scored = pd.read_parquet(out)
    assert pinned == v1
    assert model.version == again.version == v1
    assert set(scored["model_version"]) == {v1}
    np.testing.assert_allclose(
        scored[["proba_0", "proba_1"]].to_numpy(),
        expected_proba(registry, v1, df),
        rtol=0,
        atol=1e-12,
    )
    assert not np.allclose(scored["proba_1"], expected_proba(registry, v2, df)[:, 1], atol=1e-3)


# --------------------------------------------------------------------------------------------
# Scores, determinism, lineage


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
    native = mlflow.sklearn.load_model(f"models:/{MODEL}/{registry['v1']}")
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


def test_regressor_and_multiclass_outputs(tmp_path: Path) -> None:
    """Model kinds other than the binary champion: columns and values from the estimator."""
    from sklearn.linear_model import LinearRegression, LogisticRegression

    df = frame(3000, seed=3)
    X = df[["tenure", "monthly"]].astype("float64")
    src = _parquet(df, tmp_path)
    reg = LinearRegression().fit(X, df["monthly"] * 2)
    model = scoring.LoadedModel.from_estimator("r", "4", reg, infer_signature(X, reg.predict(X)))
    score(model, src, tmp_path / "r.parquet", chunk_rows=1000)
    out = pd.read_parquet(tmp_path / "r.parquet")
    assert list(out.columns) == [
        "customer_id",
        "prediction",
        "model_name",
        "model_version",
        "input_sha256",
        "logical_date",
    ]
    np.testing.assert_allclose(out["prediction"], reg.predict(X), rtol=0, atol=1e-9)

    labels = df["contract"].map({"month": "m-1", "year1": "y 1", "year2": "y/2"})
    clf = LogisticRegression(max_iter=500).fit(X, labels)
    model = scoring.LoadedModel.from_estimator(
        "c", "1", clf, infer_signature(X, clf.predict_proba(X))
    )
    score(model, src, tmp_path / "c.parquet", chunk_rows=1000)
    out = pd.read_parquet(tmp_path / "c.parquet")
    assert model.proba_columns == ["proba_m_1", "proba_y_1", "proba_y_2"]
    np.testing.assert_allclose(
        out[model.proba_columns].to_numpy(), clf.predict_proba(X), rtol=0, atol=1e-12
    )
    assert (out["prediction"].to_numpy() == clf.predict(X)).all()
    assert layout.proba_names(["a-b", "a_b"]) == ["proba_0", "proba_1"]


# --------------------------------------------------------------------------------------------
# Bad input: a clear error naming the file (and column), nothing published


def _write_csv(df: pd.DataFrame, path: Path, **kw: Any) -> Path:
    df.to_csv(path, index=False, **kw)
    return path


BAD_INPUTS = {
    "truncated parquet": (lambda df, d: _truncated(df, d), r"not a readable Parquet file"),
    "garbage parquet": (
        lambda df, d: _bytes(d / "x.parquet", b"PAR1" + os.urandom(3000)),
        r"not a readable Parquet file",
    ),
    "wrong delimiter": (
        lambda df, d: _write_csv(df, d / "x.csv", sep=";"),
        r"missing column.*'tenure'.*is the delimiter wrong",
    ),
    "wrong encoding": (
        lambda df, d: _write_csv(
            df.assign(contract=np.where(np.arange(len(df)) == 15000, "année", df["contract"])),
            d / "x.csv",
            encoding="latin-1",
        ),
        r"column 'contract' is not UTF-8",
    ),
    "missing column": (
        lambda df, d: _parquet(df.drop(columns=["monthly"]), d),
        r"missing column\(s\) 'monthly' \(double\)",
    ),
    "wrong dtype": (
        lambda df, d: _parquet(df.assign(monthly=df["monthly"].astype("str")), d),
        r"column 'monthly' is (string|large_string), the model expects double",
    ),
    "wrong dtype in csv": (
        lambda df, d: _write_csv(
            df.assign(
                tenure=np.where(np.arange(len(df)) == 12345, "n/a?", df["tenure"].astype(str))
            ),
            d / "x.csv",
        ),
        r"column 'tenure': .*invalid value 'n/a\?'",
    ),
    "integer too large for double": (
        lambda df, d: _parquet(
            df.assign(tenure=np.where(np.arange(len(df)) == 9, 2**60, df["tenure"])), d
        ),
        r"column 'tenure' \(int64\) does not convert exactly to double",
    ),
    "empty parquet": (lambda df, d: _parquet(df.head(0), d), r"empty partition \(0 rows\)"),
    "empty csv": (lambda df, d: _write_csv(df.head(0), d / "x.csv"), r"empty partition"),
    "zero-byte csv": (lambda df, d: _bytes(d / "x.csv", b""), r"empty CSV file"),
}


def _bytes(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _parquet(df: pd.DataFrame, d: Path) -> Path:
    pq.write_table(data_table(df), d / "x.parquet", row_group_size=3000)
    return d / "x.parquet"


def _truncated(df: pd.DataFrame, d: Path) -> Path:
    full = _parquet(df, d).read_bytes()
    return _bytes(d / "x.parquet", full[: len(full) * 2 // 3])


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


def test_extra_columns_are_ignored_and_ints_feed_double_features(
    model_v1, registry, batch, tmp_path: Path
) -> None:
    df, _ = batch
    src = _parquet(df.assign(extra=1.5, tenure=df["tenure"].astype("int32")), tmp_path)
    out = tmp_path / "o.parquet"
    score(model_v1, src, out)
    np.testing.assert_allclose(
        pd.read_parquet(out)[["proba_0", "proba_1"]].to_numpy(),
        expected_proba(registry, registry["v1"], df),
        rtol=0,
        atol=1e-12,
    )


# --------------------------------------------------------------------------------------------
# Gate, quarantine, manifest


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
    broken = _bytes(tmp_path / "in" / "batch-0003.parquet", good.read_bytes()[:5000])
    base, qbase = str(tmp_path / "scored"), str(tmp_path / "quarantine")

    def run(src: Path) -> dict[str, Any]:
        name = layout.partition_name(str(src))
        return scoring.score_or_quarantine(
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

    manifest = scoring.write_manifest(base, results)
    path = Path(layout.manifest_uri(base, MODEL, DATE))
    assert manifest["uri"] == str(path)
    first = path.read_bytes()
    assert scoring.write_manifest(base, list(reversed(results)))["totals"] == manifest["totals"]
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
        scoring.write_manifest(base, [ok, ok])


def test_signature_mismatch_after_a_passing_gate_is_quarantined(
    model_v1, batch, tmp_path: Path
) -> None:
    df, _ = batch
    loose = SUITE.model_copy(update={"columns": {**SUITE.columns, "monthly": ColumnRules()}})
    src = _parquet(df.head(500).assign(monthly=df["monthly"].head(500).astype(str)), tmp_path)
    result = scoring.score_or_quarantine(
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


# --------------------------------------------------------------------------------------------
# A writer killed at random moments


def _write_forever(model: scoring.LoadedModel, src: Path, out: Path) -> None:
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


# --------------------------------------------------------------------------------------------
# S3


def test_s3_input_output_quarantine_and_manifest(
    s3, s3_prefix: str, model_v1, batch, tmp_path: Path
) -> None:
    df, local_src = batch
    client = s3.client
    bucket, key = s3_prefix[len("s3://") :].split("/", 1)
    client.upload_file(str(local_src), bucket, f"{key}in/batch-0001.parquet")
    bad = df.head(100).assign(contract="weekly")
    bad_csv = _write_csv(bad, tmp_path / "batch-0002.csv")
    client.upload_file(str(bad_csv), bucket, f"{key}in/batch-0002.csv")
    client.put_object(Bucket=bucket, Key=f"{key}in/_SUCCESS", Body=b"")

    parts = scoring.list_partitions(f"{s3_prefix}in/", s3_client=client)
    assert parts == [f"{s3_prefix}in/batch-0001.parquet", f"{s3_prefix}in/batch-0002.csv"]
    assert scoring.list_partitions(f"{s3_prefix}in/*.csv", s3_client=client) == parts[1:]
    assert scoring.list_partitions(f"{s3_prefix}in", s3_client=client) == parts
    with pytest.raises(errors.DataError, match="no partitions found"):
        scoring.list_partitions(f"{s3_prefix}nothing/", s3_client=client)

    base = f"{s3_prefix}scored"
    results = [
        scoring.score_or_quarantine(
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
    manifest = scoring.write_manifest(base, results, s3_client=client)
    body = client.get_object(Bucket=bucket, Key=manifest["uri"][len(f"s3://{bucket}/") :])[
        "Body"
    ].read()
    assert json.loads(body)["totals"]["quarantined_rows"] == 100
