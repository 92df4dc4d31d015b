"""Live-traffic recording (serve.recording): sampling, the files it publishes, drops, crashes,
and that an answer never waits for a file."""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import httpx
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression

from airmlops_core.io import live
from airmlops_core.io.store import Store
from airmlops_core.serve import recorder_process
from airmlops_core.serve.app import build_app
from airmlops_core.serve.auth import Tokens, bearer, generate_token
from airmlops_core.serve.batching import to_json
from airmlops_core.serve.metrics import Metrics
from airmlops_core.serve.record_writer import Recorded, RecordWriter
from airmlops_core.serve.recording import Recorder, RecordingSettings
from airmlops_core.serve.scoring import read_payload
from airmlops_core.serve.server import ModelServer
from airmlops_core.serve.state import Served

MODEL = "live_m"
JSON = "application/json"


class Model:
    """A pyfunc-like model over a fitted classifier: predict answers probabilities, as the
    pack's models do (pyfunc_predict_fn=predict_proba); get_raw_model as MLflow's."""

    def __init__(self) -> None:
        rng = np.random.default_rng(0)
        X = pd.DataFrame({"a": rng.normal(size=200), "b": rng.normal(size=200)})
        self.raw = LogisticRegression().fit(X, np.where(X.a + X.b > 0, "yes", "no"))

    def predict(self, data: Any) -> Any:
        return self.raw.predict_proba(data[["a", "b"]])

    def get_raw_model(self) -> Any:
        return self.raw


def settings(base: Path, **kw: Any) -> dict[str, RecordingSettings]:
    cfg: RecordingSettings = {
        "model": MODEL,
        "base": str(base),
        "sample_rate": 1.0,
        "retention_days": 30,
        "flush_rows": 1000,
        "flush_seconds": 3600.0,
        "queue_rows": 100_000,
        "columns": ["id", "a", "b"],
    }
    return {MODEL: {**cfg, **kw}}  # type: ignore[typeddict-item]


def served(tmp_path: Path, model: Model) -> Served:
    return Served(MODEL, "3", "r", model, None, "{}", 1.7e9, tmp_path)


def request(rows: pd.DataFrame) -> bytes:
    """A checked dataframe_split body of `rows`, as the request path passes it on."""
    body = json.dumps({"dataframe_split": rows.to_dict(orient="split", index=False)}).encode()
    assert read_payload(body, "application/json", None).rows == len(rows)
    return body


def frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {"id": [f"k{seed}_{i}" for i in range(n)], "a": rng.normal(size=n), "b": rng.normal(size=n)}
    )


def counter(metrics: Metrics, name: str, **labels: str) -> float:
    return metrics.registry.get_sample_value(f"airmlops_model_api_{name}_total", labels) or 0.0


def test_sampling_rate_is_honoured_within_a_binomial_bound(tmp_path: Path) -> None:
    p, n = 0.2, 3000
    metrics = Metrics()
    rec = Recorder(settings(tmp_path, sample_rate=p), Store(), metrics, rng=random.Random(7))
    model = Model()
    s = served(tmp_path, model)
    body = request(frame(0, 1))
    answer = to_json(model.predict(frame(0, 1)))
    taken = sum(rec.offer(s, body, JSON, answer, 1) for _ in range(n))
    # 4 standard deviations of Binomial(n, p): a wrong rate (0.15 or 0.25) fails it
    assert abs(taken - n * p) <= 4 * math.sqrt(n * p * (1 - p)), taken
    [uri] = rec.flush(force=True)
    assert pq.read_metadata(uri).num_rows == taken
    assert counter(metrics, "recorded_rows", model=MODEL) == taken


def test_files_are_parquet_with_inputs_key_outputs_version_and_time(tmp_path: Path) -> None:
    rec = Recorder(settings(tmp_path / "live"), Store(), Metrics())
    model = Model()
    s = served(tmp_path, model)
    rows = [frame(1, 5), frame(2, 3).drop(columns=["id"])]  # the second request has no key
    for part in rows:
        body = request(part)
        rec.offer(s, body, JSON, to_json(model.predict(part)), len(part))
    [uri] = rec.flush(force=True)
    assert live.file_day(uri) is not None
    assert uri.endswith("-00000001.parquet")
    assert f"-{os.getpid()}-" in Path(uri).name  # written by this process
    table = pq.read_table(uri)
    assert table.schema.names == [
        "recorded_at", "model_version", "id", "a", "b", "prediction", "proba_no", "proba_yes"
    ]  # fmt: skip
    got = table.to_pandas()
    both = pd.concat(rows, ignore_index=True)
    np.testing.assert_array_equal(got[["a", "b"]].to_numpy(), both[["a", "b"]].to_numpy())
    assert table["id"].to_pylist() == rows[0]["id"].tolist() + [None] * 3
    want = model.raw.predict_proba(both[["a", "b"]])
    np.testing.assert_allclose(got[["proba_no", "proba_yes"]].to_numpy(), want, rtol=1e-12)
    assert got["prediction"].tolist() == model.raw.predict(both[["a", "b"]]).tolist()
    assert set(got["model_version"]) == {"3"}
    assert str(got["recorded_at"].dt.tz) == "UTC"
    # read back as the online window, the version filter applies
    window, files = live.read_window(
        Store(),
        str(tmp_path / "live"),
        version="3",
        since=got["recorded_at"].min().to_pydatetime(),
        until=got["recorded_at"].max().to_pydatetime(),
    )
    assert files == [uri]
    assert len(window) == 8
    none, _ = live.read_window(
        Store(), str(tmp_path / "live"), version="4", since=got["recorded_at"].min(),
        until=got["recorded_at"].max(),
    )  # fmt: skip
    assert none.empty


def test_a_full_queue_drops_and_counts_rows(tmp_path: Path) -> None:
    metrics = Metrics()
    rec = Recorder(settings(tmp_path, queue_rows=10), Store(), metrics)
    model = Model()
    s = served(tmp_path, model)
    part = frame(3, 3)
    body = request(part)
    answer = to_json(model.predict(part))
    assert [rec.offer(s, body, JSON, answer, 3) for _ in range(4)] == [True, True, True, False]
    assert counter(metrics, "recording_dropped_rows", model=MODEL, reason="queue_full") == 3
    rec.flush(force=True)
    assert rec.offer(s, body, JSON, answer, 3)  # room again once written
    assert counter(metrics, "recorded_rows", model=MODEL) == 9


def test_a_crash_mid_write_leaves_no_visible_file(tmp_path: Path) -> None:
    """The writing process is killed (SIGKILL) after the file's bytes are written, before it
    is published: no listing or window read sees a file, whole or partial."""
    base = tmp_path / "live"
    script = textwrap.dedent(
        f"""
        import os, sys, json
        sys.path[:0] = {sys.path!r}
        from test_recording import Model, frame, request, served, settings
        from airmlops_core.io.store import Store
        from airmlops_core.serve.batching import to_json
        from airmlops_core.serve.recording import Recorder
        from pathlib import Path

        def stuck(fd):
            print("writing", flush=True)
            sys.stdin.readline()  # never answered: the parent kills us here

        os.fsync = stuck
        rec = Recorder(settings(Path({str(base)!r})), Store())
        model = Model()
        part = frame(4, 20)
        body = request(part)
        s = served(Path({str(tmp_path)!r}), model)
        rec.offer(s, body, None, to_json(model.predict(part)), 20)
        rec.flush(force=True)
        print("published", flush=True)
        """
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == b"writing"
    proc.kill()
    proc.wait(timeout=30)
    on_disk = [p for p in base.rglob("*") if p.is_file()]
    assert on_disk
    assert all(p.name.startswith(".") for p in on_disk)
    assert live.record_files(Store(), str(base)) == []


def test_the_answer_is_returned_while_the_recorder_is_held(tmp_path: Path) -> None:
    """With the recorder process stopped (SIGSTOP), the request is answered and no file
    exists; once it runs again, stopping the recorder writes the request's rows."""
    server = ModelServer("http://127.0.0.1:9", [MODEL], cache_dir=tmp_path)
    server.recorder = Recorder(settings(tmp_path / "live", flush_rows=1), Store(), server.metrics)
    model = Model()
    server.states[MODEL].served = served(tmp_path, model)
    token = generate_token()
    app = build_app(server, tokens=Tokens(token), start_poller=False)
    part = frame(5, 4)
    server.recorder.start()
    pid = server.recorder.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)
    try:

        async def call() -> httpx.Response:
            async with httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://api", headers=bearer(token)
            ) as client:
                return await client.post(
                    f"/invocations/{MODEL}",
                    json={"dataframe_split": part.to_dict(orient="split", index=False)},
                )

        r = anyio.run(call)
        assert r.status_code == 200, r.text
        np.testing.assert_allclose(
            r.json()["predictions"], model.raw.predict_proba(part[["a", "b"]]), rtol=1e-12
        )
        assert live.record_files(Store(), str(tmp_path / "live")) == []
    finally:
        os.kill(pid, signal.SIGCONT)
        server.recorder.stop()
    [uri] = live.record_files(Store(), str(tmp_path / "live"))
    assert pq.read_table(uri)["id"].to_pylist() == part["id"].tolist()
    assert f"-{pid}-" in Path(uri).name  # written by the recorder process
    assert counter(server.metrics, "recorded_rows", model=MODEL) == 4


def test_a_clean_stop_writes_every_queued_row_through_the_recorder_process(
    tmp_path: Path,
) -> None:
    metrics = Metrics()
    rec = Recorder(settings(tmp_path, flush_rows=10), Store(), metrics)
    model = Model()
    s = served(tmp_path, model)
    parts = [frame(100 + i, 3) for i in range(25)]
    rec.start()
    for part in parts:
        assert rec.offer(s, request(part), JSON, to_json(model.predict(part)), 3)
    rec.stop()
    files = live.record_files(Store(), str(tmp_path))
    assert len(files) >= 7  # flushed every 10 rows (4 requests), the rest at the stop
    got = pq.read_table(files).to_pandas()
    want = pd.concat(parts, ignore_index=True)
    assert sorted(got["id"]) == sorted(want["id"])
    got = got.set_index("id").loc[want["id"]]
    np.testing.assert_allclose(got[["a", "b"]].to_numpy(), want[["a", "b"]].to_numpy())
    np.testing.assert_allclose(
        got[["proba_no", "proba_yes"]].to_numpy(),
        model.raw.predict_proba(want[["a", "b"]]),
        rtol=1e-12,
    )
    assert counter(metrics, "recorded_rows", model=MODEL) == 75
    assert sorted(rec.written) == sorted(files)
    assert not rec.offer(s, request(parts[0]), JSON, "{}", 3)  # stopped: nothing more taken


def test_rows_a_dead_recorder_held_are_counted_and_a_new_one_takes_over(tmp_path: Path) -> None:
    metrics = Metrics()
    rec = Recorder(settings(tmp_path), Store(), metrics)
    model = Model()
    s = served(tmp_path, model)
    rec.start()
    first = rec.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_for(lambda: _state(first) in ("Z", None), "the recorder to die")
    lost, kept = frame(6, 5), frame(7, 2)
    assert rec.offer(s, request(lost), JSON, to_json(model.predict(lost)), 5)
    wait_for(lambda: rec.pid not in (first, None), "a new recorder process")
    assert counter(metrics, "recording_dropped_rows", model=MODEL, reason="recorder_failed") == 5
    assert rec.offer(s, request(kept), JSON, to_json(model.predict(kept)), 2)
    rec.stop()
    [uri] = live.record_files(Store(), str(tmp_path))
    assert pq.read_table(uri)["id"].to_pylist() == kept["id"].tolist()
    assert counter(metrics, "recorded_rows", model=MODEL) == 2


def test_csv_bodies_and_frames_round_trip(tmp_path: Path) -> None:
    """A CSV request is recorded as a JSON one; a frame reads back as it was sent."""
    part = frame(8, 3)
    item = Recorded(
        1.7e9, MODEL, "3", ("no", "yes"), part.to_csv(index=False).encode(), "text/csv",
        to_json(Model().predict(part)), 3,
    )  # fmt: skip
    stream = io.BytesIO(b"".join(recorder_process.frame(item) * 2))
    assert (
        list(recorder_process.read_frames(stream))
        == [
            dataclasses.replace(item, answer=item.answer.encode())  # type: ignore[union-attr]
        ]
        * 2
    )
    writer = RecordWriter(settings(tmp_path), Store(), "w")
    writer.add(item)
    outcome = writer.flush(force=True)
    assert outcome.recorded == {MODEL: 3}
    got = pq.read_table(outcome.files).to_pandas()
    assert got["id"].tolist() == part["id"].tolist()
    np.testing.assert_allclose(got[["a", "b"]].to_numpy(), part[["a", "b"]].to_numpy())
    assert got["prediction"].tolist() == Model().raw.predict(part[["a", "b"]]).tolist()


def _state(pid: int) -> str | None:
    """A process's state letter (R, S, T, Z...), None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return None


def wait_for(check: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}"
        time.sleep(0.01)


def test_prune_removes_files_past_retention(tmp_path: Path) -> None:
    import datetime as dt

    store = Store()
    now = dt.datetime(2026, 3, 31, 12, tzinfo=dt.UTC)
    old = live.file_uri(str(tmp_path), dt.date(2026, 2, 28), "w", 1)
    kept = live.file_uri(str(tmp_path), dt.date(2026, 3, 1), "w", 2)
    for uri in (old, kept):
        store.write_bytes(uri, b"x")
    assert live.prune(store, str(tmp_path), 30, now) == [old]
    assert live.record_files(store, str(tmp_path)) == [kept]
