"""The model API as a real subprocess against a real MLflow server, over real HTTP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from airmlops_core.serve import model_api
from airmlops_dev.ports import free_ports

MODEL = "api_clf"
GHOST = "api_ghost"  # no champion until a test gives it one
POLL = 0.3
MAX_BYTES = 64 * 1024
FEATURES = ["a", "b", "n", "c"]


def _spec(c: float) -> Any:
    from airmlops_core.spec import ModelSpec

    return ModelSpec.model_validate(
        {
            "name": MODEL,
            "task": "binary",
            "source": {"kind": "file", "uri": "x.parquet"},
            "target": "y",
            "features": {"numeric": ["a", "b", "n"], "categorical": ["c"]},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression", "params": {"C": c}},
            "metrics": {"primary": "roc_auc"},
        }
    )


def _frame(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "a": rng.normal(size=n),
            "b": rng.normal(size=n),
            "n": rng.integers(0, 5, n).astype(float),
            "c": rng.choice(["x", "y", "z"], n),
        }
    )
    df["y"] = ((df.a + (df.c == "x") - 0.3 * df.n + rng.normal(0, 0.5, n)) > 0).astype(int)
    return df


def _log(pipeline: Any, spec: Any, example: pd.DataFrame) -> str:
    """Log exactly as train_flow.train_step does; returns the model URI."""
    import mlflow
    from mlflow.models import infer_signature

    from airmlops_core.train import estimator as training
    from airmlops_core.train import flow as train_flow

    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            pipeline,
            name=train_flow.MODEL_ARTIFACT,
            signature=infer_signature(
                example,
                pipeline.predict_proba(example) if set(example.columns) == set(FEATURES) else None,
            ),
            input_example=example,
            pip_requirements=train_flow.pip_requirements(spec),
            serialization_format="skops",
            skops_trusted_types=training.trusted_types(pipeline),
            pyfunc_predict_fn="predict_proba",
        )
    return str(info.model_uri)


@dataclass
class Registry:
    """Versions of MODEL: 1 and 2 good, 3 unloadable artifact, 4 fails its golden request."""

    url: str
    pipelines: dict[str, Any]  # version -> the fitted pipeline, for independent predictions
    v1_uri: str

    def set_champion(self, version: str, name: str = MODEL) -> None:
        from mlflow import MlflowClient

        MlflowClient(self.url).set_registered_model_alias(name, "champion", version)


@pytest.fixture(scope="module")
def registry(mlflow_url: str) -> Registry:
    import mlflow
    from mlflow import MlflowClient

    from airmlops_core.train import estimator as training

    mlflow.set_tracking_uri(mlflow_url)
    mlflow.set_experiment("model_api_test")
    client = MlflowClient(mlflow_url)
    train = _frame(0, 300)
    pipelines: dict[str, Any] = {}
    uris = []
    for c in (1.0, 0.01):
        spec = _spec(c)
        pipe = training.fit(spec, train)
        uris.append(_log(pipe, spec, training.feature_frame(spec, train).head(5)))
        pipelines[str(len(uris))] = pipe
    versions = [mlflow.register_model(uri, MODEL).version for uri in uris]
    assert versions == ["1", "2"]
    # v3: a sklearn MLmodel whose model.skops is garbage: download works, load fails
    with tempfile.TemporaryDirectory() as tmp:
        good = Path(mlflow.artifacts.download_artifacts(uris[0], dst_path=tmp))
        (good / "model.skops").write_bytes(b"not a skops archive")
        with mlflow.start_run() as run:
            mlflow.log_artifacts(str(good), artifact_path="broken")
        mv3 = client.create_model_version(
            MODEL, f"{run.info.artifact_uri}/broken", run_id=run.info.run_id
        )
    # v4: loads, but its logged example lacks column "a": the golden request fails in predict
    spec = _spec(1.0)
    example = training.feature_frame(spec, train).head(5).rename(columns={"a": "zz"})
    mv4 = mlflow.register_model(_log(pipelines["1"], spec, example), MODEL)
    assert (mv3.version, mv4.version) == ("3", "4")
    client.set_registered_model_alias(MODEL, "champion", "1")
    return Registry(url=mlflow_url, pipelines=pipelines, v1_uri=uris[0])


class Api:
    """One model API subprocess on a free loopback port."""

    def __init__(
        self,
        tracking_uri: str,
        models: str,
        log_path: Path,
        *extra: str,
        env: dict[str, str] | None = None,
    ):
        (self.port,) = free_ports(1)
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("ab")
        argv = [
            sys.executable,
            "-m",
            "airmlops_core.serve.model_api",
            "--port",
            str(self.port),
            "--tracking-uri",
            tracking_uri,
            "--models",
            models,
            "--poll-interval",
            str(POLL),
            "--max-bytes",
            str(MAX_BYTES),
            *extra,
        ]
        self.proc = subprocess.Popen(
            argv,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
        )
        self.http = httpx.Client(base_url=self.base, timeout=30)

    def wait(self, check: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"API exited:\n{self.log_tail()}"
            try:
                if check():
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log_tail()}")

    def health(self) -> tuple[int, dict[str, Any]]:
        r = self.http.get("/health")
        return r.status_code, r.json()

    def wait_served(self, version: str, model: str = MODEL) -> None:
        self.wait(
            lambda: self.health()[1]["models"][model]["served_version"] == version,
            f"{model} v{version} served",
        )

    def assert_clean_exit(self) -> None:
        """SIGTERM ran uvicorn's graceful shutdown (it re-raises the signal once done)."""
        assert self.proc.returncode in (0, -signal.SIGTERM), self.log_tail()
        assert "Application shutdown complete" in self.log_tail(), self.log_tail()

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self._log.close()


@pytest.fixture(scope="module")
def api(registry: Registry, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    """The API serving MODEL only (so plain /invocations works)."""
    server = Api(registry.url, MODEL, tmp_path_factory.mktemp("api") / "api.log")
    try:
        server.wait(lambda: server.health()[0] == 200, "the first champion loaded")
        yield server
    finally:
        server.stop()
    server.assert_clean_exit()


@pytest.fixture
def rows() -> pd.DataFrame:
    return _frame(42, 7)[FEATURES]


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    return [dict(zip(frame.columns, row, strict=True)) for row in frame.itertuples(index=False)]


def expected(registry: Registry, version: str, frame: pd.DataFrame) -> np.ndarray:
    return registry.pipelines[version].predict_proba(frame)


def assert_predictions(response: httpx.Response, want: np.ndarray) -> None:
    assert response.status_code == 200, response.text
    got = np.asarray(response.json()["predictions"])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=0)


def good_request(api: Api, registry: Registry, rows: pd.DataFrame) -> None:
    r = api.http.post(f"/invocations/{MODEL}", json={"dataframe_records": records(rows)})
    assert_predictions(r, expected(registry, r.headers["X-Model-Version"], rows))


# -- the CLI ---------------------------------------------------------------------------------


def test_cli_defaults_and_env_fallbacks() -> None:
    args = model_api.parse_args(
        ["--models", "a,b"], env={"MLFLOW_TRACKING_URI": "http://m:1", model_api.PORT_ENV: "6123"}
    )
    assert (args.host, args.port, args.tracking_uri) == ("127.0.0.1", 6123, "http://m:1")
    assert model_api.model_names(args) == ["a", "b"]
    args = model_api.parse_args(
        ["--tracking-uri", "http://x", "--port", "7000"], env={model_api.PORT_ENV: "6123"}
    )
    assert (args.port, args.tracking_uri, args.poll_interval) == (7000, "http://x", 5.0)
    with pytest.raises(SystemExit):
        model_api.parse_args(["--models", "a"], env={})  # no tracking URI anywhere


def test_models_dir_serves_every_valid_spec(models_dir: Path, tmp_path: Path) -> None:
    want = sorted(p.stem for p in models_dir.glob("*.yaml"))
    assert model_api.models_from_dir(models_dir) == want
    for path in models_dir.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "broken.yaml").write_text("name: [not, valid]\n")
    assert model_api.models_from_dir(tmp_path) == want
    args = model_api.parse_args(["--models-dir", str(tmp_path)], env={"MLFLOW_TRACKING_URI": "x"})
    assert model_api.model_names(args) == want


# -- serving the champion --------------------------------------------------------------------


def test_serves_the_champion_as_mlflow_scores_it(
    api: Api, registry: Registry, rows: pd.DataFrame
) -> None:
    registry.set_champion("1")
    api.wait_served("1")
    want = expected(registry, "1", rows)
    split = {"columns": list(rows.columns), "data": [list(r) for r in rows.itertuples(index=False)]}
    columns = {c: rows[c].tolist() for c in rows.columns}
    bodies = {
        "dataframe_split": split,
        "dataframe_records": records(rows),
        "inputs": columns,
        "instances": records(rows),
    }
    for path in (f"/invocations/{MODEL}", f"/models/{MODEL}/invocations", "/invocations"):
        for key, payload in bodies.items():
            r = api.http.post(path, json={key: payload})
            assert_predictions(r, want)
            assert (r.headers["X-Model-Name"], r.headers["X-Model-Version"]) == (MODEL, "1"), key
    csv = api.http.post(
        f"/invocations/{MODEL}",
        content=rows.to_csv(index=False),
        headers={"Content-Type": "text/csv"},
    )
    np.testing.assert_allclose(csv.json()["predictions"], want, rtol=1e-9)
    status, body = api.health()
    assert status == 200
    assert body["status"] == "ok"
    m = body["models"][MODEL]
    assert (m["served_version"], m["champion_version"], m["problem"]) == ("1", "1", None)
    golden = api.http.get(f"/models/{MODEL}/golden")
    assert golden.status_code == 200
    assert set(json.loads(golden.text)["dataframe_split"]["columns"]) == set(FEATURES)


def test_follows_the_alias_without_a_failed_request(
    api: Api, registry: Registry, rows: pd.DataFrame
) -> None:
    registry.set_champion("1")
    api.wait_served("1")
    want = {v: expected(registry, v, rows) for v in ("1", "2")}
    assert not np.allclose(want["1"], want["2"])  # the versions are distinguishable
    seen: list[tuple[int, str, Any]] = []
    stop = threading.Event()

    def hammer() -> None:
        with httpx.Client(base_url=api.base, timeout=30) as http:
            while not stop.is_set():
                r = http.post(f"/invocations/{MODEL}", json={"dataframe_records": records(rows)})
                seen.append(
                    (
                        r.status_code,
                        r.headers.get("X-Model-Version", ""),
                        r.json().get("predictions"),
                    )
                )

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        time.sleep(0.5)
        started = time.monotonic()
        registry.set_champion("2")  # a promotion
        api.wait_served("2", model=MODEL)
        swap_seconds = time.monotonic() - started
        time.sleep(0.5)
        registry.set_champion("3")  # an artifact that cannot load
        api.wait(
            lambda: (
                "version 3 failed to load" in (api.health()[1]["models"][MODEL]["problem"] or "")
            ),
            "v3 reported",
        )
        registry.set_champion("4")  # loads, but fails its golden request
        api.wait(
            lambda: (
                "version 4 failed to load" in (api.health()[1]["models"][MODEL]["problem"] or "")
            ),
            "v4 reported",
        )
        time.sleep(0.5)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert swap_seconds < 20
    assert {s for s, _, _ in seen} == {200}, [s for s in seen if s[0] != 200][:3]
    versions = [v for _, v, _ in seen]
    assert versions[0] == "1"
    assert versions[-1] == "2"
    assert set(versions) == {"1", "2"}  # never 3 or 4, never unlabelled
    first_v2 = versions.index("2")
    assert set(versions[first_v2:]) == {"2"}  # one swap, no flapping back
    for _, version, predictions in seen:  # each answer wholly from the version it names
        np.testing.assert_allclose(predictions, want[version], rtol=1e-12, atol=0)
    status, body = api.health()
    m = body["models"][MODEL]
    assert status == 200
    assert body["status"] == "degraded"
    assert (m["served_version"], m["champion_version"]) == ("2", "4")
    assert "PREDICT_FAILED" in m["problem"] or "golden request" in m["problem"]
    assert "still serving version 2" in m["problem"]
    assert "'a'" in m["problem"]  # the missing column the golden request tripped on
    from prometheus_client.parser import text_string_to_metric_families

    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(api.http.get("/metrics").text)
        for s in fam.samples
    }
    p = "airmlops_model_api_"
    assert samples[(f"{p}reloads_total", (("model", MODEL), ("outcome", "failed")))] >= 2
    assert samples[(f"{p}served_version", (("model", MODEL),))] == 2.0
    assert samples[(f"{p}champion_version", (("model", MODEL),))] == 4.0
    # a rollback to v1 is served without a restart
    registry.set_champion("1")
    api.wait_served("1")
    assert_predictions(
        api.http.post("/invocations", json={"dataframe_records": records(rows)}), want["1"]
    )
    status, body = api.health()
    assert (status, body["status"], body["models"][MODEL]["problem"]) == (200, "ok", None)


# -- bad requests ----------------------------------------------------------------------------


def _bad_cases(rows: pd.DataFrame) -> list[tuple[str, dict[str, Any], int, str, str]]:
    good = records(rows)
    big = json.dumps({"dataframe_records": good * (MAX_BYTES // len(json.dumps(good)) + 2)})
    assert len(big) > MAX_BYTES

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096].encode()

    json_ct = {"Content-Type": "application/json"}
    return [
        (
            "malformed JSON",
            {"content": b'{"dataframe_records": [', "headers": json_ct},
            400,
            "MALFORMED_JSON",
            "line 1 column",
        ),
        ("not an object", {"json": [1, 2]}, 400, "BAD_REQUEST", "JSON list"),
        ("no format key", {"json": {"rows": good}}, 400, "BAD_REQUEST", "found none"),
        (
            "two format keys",
            {"json": {"dataframe_records": good, "inputs": good}},
            400,
            "BAD_REQUEST",
            "found several",
        ),
        (
            "empty body",
            {"content": b"", "headers": json_ct},
            400,
            "EMPTY_PAYLOAD",
            "empty request body",
        ),
        ("no records", {"json": {"dataframe_records": []}}, 400, "EMPTY_PAYLOAD", "no rows"),
        (
            "no split rows",
            {"json": {"dataframe_split": {"columns": FEATURES, "data": []}}},
            400,
            "EMPTY_PAYLOAD",
            "no rows",
        ),
        (
            "missing column",
            {
                "json": {
                    "dataframe_records": [{k: v for k, v in r.items() if k != "c"} for r in good]
                }
            },
            400,
            "SCHEMA_MISMATCH",
            "missing inputs ['c']",
        ),
        (
            "wrong type",
            {"json": {"dataframe_records": [{**good[0], "a": "tall"}]}},
            400,
            "SCHEMA_MISMATCH",
            "column a",
        ),
        (
            "unsupported media type",
            {"content": b"a,b", "headers": {"Content-Type": "application/vnd.apache.parquet"}},
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "parquet",
        ),
        (
            "oversized",
            {"content": big.encode(), "headers": json_ct},
            413,
            "PAYLOAD_TOO_LARGE",
            f"limit of {MAX_BYTES} bytes",
        ),
        (
            "oversized, chunked",
            {"content": chunks(), "headers": json_ct},
            413,
            "PAYLOAD_TOO_LARGE",
            f"limit of {MAX_BYTES} bytes",
        ),
    ]


def test_bad_requests_get_4xx_naming_the_problem(
    api: Api, registry: Registry, rows: pd.DataFrame
) -> None:
    for what, kwargs, status, code, fragment in _bad_cases(rows):
        r = api.http.post(f"/invocations/{MODEL}", **kwargs)
        assert r.status_code == status, (what, r.text)
        body = r.json()
        assert body["error_code"] == code, (what, body)
        assert fragment in body["message"], (what, body)
        assert "Traceback" not in r.text
        good_request(api, registry, rows)  # the server keeps serving
    r = api.http.post("/invocations/no_such_model", json={"dataframe_records": records(rows)})
    assert (r.status_code, r.json()["error_code"]) == (404, "UNKNOWN_MODEL")
    assert "'no_such_model'" in r.json()["message"]
    assert MODEL in r.json()["message"]
    assert api.http.get(f"/invocations/{MODEL}").status_code == 405
    good_request(api, registry, rows)
    assert api.proc.poll() is None


def test_metrics_count_the_requests(api: Api, registry: Registry, rows: pd.DataFrame) -> None:
    from prometheus_client.parser import text_string_to_metric_families

    def snapshot() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        text = api.http.get("/metrics").text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text)
            for s in fam.samples
        }

    def delta(after: dict, before: dict, name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    before = snapshot()
    for _ in range(3):
        good_request(api, registry, rows)
    api.http.post(
        f"/invocations/{MODEL}", content=b"{", headers={"Content-Type": "application/json"}
    )
    api.http.post(f"/invocations/{MODEL}", json={"dataframe_records": []})
    api.http.post("/invocations/nope", json={"dataframe_records": records(rows)})
    after = snapshot()
    p = "airmlops_model_api_"
    assert delta(after, before, f"{p}requests_total", model=MODEL, status="200") == 3
    assert delta(after, before, f"{p}requests_total", model=MODEL, status="400") == 2
    assert delta(after, before, f"{p}requests_total", model="_unknown", status="404") == 1
    assert (
        delta(after, before, f"{p}request_errors_total", model=MODEL, reason="malformed_json") == 1
    )
    assert (
        delta(after, before, f"{p}request_errors_total", model=MODEL, reason="empty_payload") == 1
    )
    assert delta(after, before, f"{p}request_duration_seconds_count", model=MODEL) == 5
    assert delta(after, before, f"{p}request_duration_seconds_bucket", model=MODEL, le="+Inf") == 5
    assert delta(after, before, f"{p}predicted_rows_total", model=MODEL) == 3 * len(rows)
    served = api.health()[1]["models"][MODEL]["served_version"]
    assert after[(f"{p}served_version", (("model", MODEL),))] == float(served)
    assert after[(f"{p}model_loaded", (("model", MODEL),))] == 1.0
    info = [k for k in after if k[0] == f"{p}model_info"]
    assert len(info) == 1
    assert ("version", served) in info[0][1]
    assert after[(f"{p}last_reload_timestamp_seconds", (("model", MODEL),))] > 1.7e9


# -- a model with no champion yet ------------------------------------------------------------


def test_model_without_champion_answers_503_until_promoted(
    registry: Registry, rows: pd.DataFrame, tmp_path: Path
) -> None:
    import mlflow

    server = Api(registry.url, f"{MODEL},{GHOST}", tmp_path / "api.log")
    try:
        server.wait(
            lambda: (
                server.health()[1]["models"][MODEL]["served_version"] is not None
                and server.health()[1]["models"][GHOST]["last_poll"] is not None
            ),
            "the first poll",
        )
        status, body = server.health()
        assert (status, body["status"]) == (503, "unavailable")
        ghost = body["models"][GHOST]
        assert (ghost["status"], ghost["served_version"]) == ("unavailable", None)
        assert "no 'champion' alias" in ghost["problem"]
        r = server.http.post(f"/invocations/{GHOST}", json={"dataframe_records": records(rows)})
        assert (r.status_code, r.json()["error_code"]) == (503, "NO_MODEL_LOADED")
        assert "no 'champion' alias" in r.json()["message"]
        r = server.http.post("/invocations", json={"dataframe_records": records(rows)})
        assert (r.status_code, r.json()["error_code"]) == (400, "MODEL_NOT_SPECIFIED")
        good_request(server, registry, rows)
        # promoted later: served without a restart
        mlflow.set_tracking_uri(registry.url)
        mv = mlflow.register_model(registry.v1_uri, GHOST)
        registry.set_champion(mv.version, name=GHOST)
        server.wait_served(mv.version, model=GHOST)
        r = server.http.post(f"/invocations/{GHOST}", json={"dataframe_records": records(rows)})
        assert_predictions(r, expected(registry, "1", rows))
        assert server.health()[0] == 200
    finally:
        server.stop()
    server.assert_clean_exit()


def test_unreachable_registry_is_reported_and_the_server_keeps_running(
    rows: pd.DataFrame, tmp_path: Path
) -> None:
    (dead,) = free_ports(1)  # nothing listens here
    server = Api(
        f"http://127.0.0.1:{dead}",
        MODEL,
        tmp_path / "api.log",
        env={"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"},
    )
    try:
        server.wait(
            lambda: server.health()[1]["models"][MODEL]["last_poll"] is not None, "the first poll"
        )
        status, body = server.health()
        assert (status, body["status"]) == (503, "unavailable")
        assert "registry poll failed" in body["models"][MODEL]["problem"]
        assert str(dead) in body["models"][MODEL]["problem"]
        r = server.http.post("/invocations", json={"dataframe_records": records(rows)})
        assert (r.status_code, r.json()["error_code"]) == (503, "NO_MODEL_LOADED")
        assert "registry poll failed" in r.json()["message"]
        metrics = server.http.get("/metrics").text
        assert f'airmlops_model_api_registry_poll_errors_total{{model="{MODEL}"}}' in metrics
        assert server.health()[0] == 503  # still answering
    finally:
        server.stop()
    server.assert_clean_exit()
