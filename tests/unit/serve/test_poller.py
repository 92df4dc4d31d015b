"""The registry poller: following the alias, failed versions, no champion, no registry.

The tests marked integration run the API as a subprocess against a real MLflow server.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest

from airmlops_core.serve.auth import bearer
from airmlops_core.serve.metrics import PREFIX, Metrics
from airmlops_core.serve.poller import AliasPoller, golden_request
from airmlops_core.serve.state import ModelState, Served
from airmlops_dev.ports import free_ports
from model_api_process import (
    GHOST,
    MODEL,
    Api,
    Registry,
    assert_predictions,
    expected,
    good_request,
    records,
)


class Meta:
    """The parts of mlflow.models.Model that golden_request reads."""

    def __init__(self, example: str | None, schema: Any):
        self.example, self.schema = example, schema

    def get_serving_input(self, local_dir: str) -> str | None:
        return self.example

    def get_input_schema(self) -> Any:
        return self.schema


def test_golden_request_is_the_logged_example_else_a_row_from_the_signature(
    tmp_path: Path,
) -> None:
    from mlflow.types import ColSpec, Schema

    example = '{"dataframe_split": {"columns": ["a"], "data": [[1.5]]}}'
    assert golden_request(Meta(example, None), tmp_path) == example
    schema = Schema(
        [
            ColSpec("double", "a"),
            ColSpec("long", "n"),
            ColSpec("string", "c"),
            ColSpec("boolean", "f"),
            ColSpec("datetime", "t"),
            ColSpec("binary", "x"),
        ]
    )
    assert json.loads(golden_request(Meta(None, schema), tmp_path)) == {
        "dataframe_records": [
            {"a": 0.0, "n": 0, "c": "", "f": False, "t": "1970-01-01T00:00:00", "x": ""}
        ]
    }
    with pytest.raises(ValueError, match="neither a serving input example nor a column"):
        golden_request(Meta(None, None), tmp_path)


class FakePoller(AliasPoller):
    """The poller with the registry replaced: `targets` answers resolve, `loads` load_verified."""

    def __init__(self, tmp_path: Path, names: list[str]):
        super().__init__(
            "http://127.0.0.1:9",
            {name: ModelState(name) for name in names},
            Metrics(),
            poll_interval=2.0,
            cache_dir=tmp_path,
        )
        self.targets: dict[str, tuple[str, str] | None | Exception] = {}
        self.loads: list[tuple[str, str]] = []
        self.broken: set[str] = set()

    def resolve(self, name: str) -> tuple[str, str] | None:
        target = self.targets[name]
        if isinstance(target, Exception):
            raise target
        return target

    def load_verified(self, name: str, version: str, run_id: str) -> Served:
        self.loads.append((name, version))
        if version in self.broken:
            raise RuntimeError(f"golden request refused: v{version}")
        local = self.cache_dir / name / f"v{version}"
        local.mkdir(parents=True)
        return Served(name, version, run_id, object(), None, "{}", 1.7e9, local)

    def sample(self, metric: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(f"{PREFIX}{metric}", labels)


def test_refresh_swaps_in_the_alias_target_and_keeps_it_on_failure(tmp_path: Path) -> None:
    poller = FakePoller(tmp_path, ["m"])
    state = poller.states["m"]
    poller.targets["m"] = None
    poller.refresh("m")
    assert state.problem == (
        "no 'champion' alias on registered model 'm' (model not registered or never promoted)"
    )
    assert state.last_poll is not None
    poller.targets["m"] = ("1", "run-1")
    poller.refresh("m")
    first = state.served
    assert first is not None
    assert (first.version, state.champion, state.problem) == ("1", "1", None)
    assert poller.sample("served_version", model="m") == 1.0
    assert poller.sample("model_loaded", model="m") == 1.0
    assert poller.sample("model_info", model="m", version="1", run_id="run-1") == 1.0
    poller.refresh("m")  # same target: nothing loaded again
    assert poller.loads == [("m", "1")]
    poller.targets["m"] = ("2", "run-2")
    poller.refresh("m")
    assert state.served is not None
    assert state.served.version == "2"
    assert not first.local_dir.exists()  # the old version's download is removed
    assert poller.sample("reloads_total", model="m", outcome="success") == 2.0


def test_a_failed_version_is_reported_and_retried_with_backoff(tmp_path: Path) -> None:
    poller = FakePoller(tmp_path, ["m"])
    state = poller.states["m"]
    poller.targets["m"] = ("1", "r")
    poller.refresh("m")
    poller.broken.add("3")
    poller.targets["m"] = ("3", "r")
    poller.refresh("m")
    assert state.served is not None
    assert state.served.version == "1"
    assert (state.champion, state.failed_version, state.failures) == ("3", "3", 1)
    assert state.problem is not None
    assert state.problem.startswith("version 3 failed to load: RuntimeError: golden request")
    assert state.problem.endswith("; still serving version 1; retry in 4s")
    assert poller.sample("champion_version", model="m") == 3.0
    assert poller.sample("served_version", model="m") == 1.0
    poller.refresh("m")  # inside the backoff: not loaded again
    assert poller.loads.count(("m", "3")) == 1
    state.retry_at = 0.0
    poller.refresh("m")
    assert (state.failures, poller.loads.count(("m", "3"))) == (2, 2)
    assert state.problem.endswith("; retry in 8s")
    assert poller.sample("reloads_total", model="m", outcome="failed") == 2.0
    poller.targets["m"] = ("1", "r")  # back to the served version: the problem clears
    poller.refresh("m")
    assert (state.problem, state.failed_version, state.failures) == (None, None, 0)


def test_a_registry_error_is_reported_and_one_model_never_stops_the_others(
    tmp_path: Path,
) -> None:
    class Crashing(FakePoller):
        def refresh(self, name: str) -> None:
            if name == "crash":
                raise AssertionError("a bug in refresh")
            super().refresh(name)

    poller = Crashing(tmp_path, ["down", "crash", "up"])
    poller.targets["down"] = ConnectionError("refused by 127.0.0.1:9")
    poller.targets["up"] = ("1", "r")
    poller.poll_once()  # the crash is logged, "up" is still refreshed
    assert poller.states["down"].problem == "registry poll failed: refused by 127.0.0.1:9"
    assert poller.sample("registry_poll_errors_total", model="down") == 1.0
    assert poller.states["up"].served is not None
    poller.start()
    poller.stop()  # the thread ends; a given cache stays
    assert tmp_path.is_dir()


@pytest.mark.integration
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
        with httpx.Client(base_url=api.base, timeout=30, headers=bearer(api.token)) as http:
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
        registry.set_champion("3")  # an artifact that cannot load: not even a skops file
        api.wait(
            lambda: (
                "version 3 refused by the model-safety check"
                in (api.status()[1]["models"][MODEL]["problem"] or "")
            ),
            "v3 reported",
        )
        registry.set_champion("4")  # loads, but fails its golden request
        api.wait(
            lambda: (
                "version 4 failed to load" in (api.status()[1]["models"][MODEL]["problem"] or "")
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
    status, body = api.status()
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
    status, body = api.status()
    assert (status, body["status"], body["models"][MODEL]["problem"]) == (200, "ok", None)


# -- a model with no champion yet ------------------------------------------------------------


@pytest.mark.integration
def test_model_without_champion_answers_503_until_promoted(
    registry: Registry, rows: pd.DataFrame, tmp_path: Path
) -> None:
    import mlflow

    server = Api(registry.url, f"{MODEL},{GHOST}", tmp_path / "api.log")
    try:
        server.wait(
            lambda: (
                server.status()[1]["models"][MODEL]["served_version"] is not None
                and server.status()[1]["models"][GHOST]["last_poll"] is not None
            ),
            "the first poll",
        )
        status, body = server.status()
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
        assert server.status()[0] == 200
    finally:
        server.stop()
    server.assert_clean_exit()


@pytest.mark.integration
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
            lambda: server.status()[1]["models"][MODEL]["last_poll"] is not None, "the first poll"
        )
        status, body = server.status()
        assert (status, body["status"]) == (503, "unavailable")
        assert "registry poll failed" in body["models"][MODEL]["problem"]
        assert str(dead) in body["models"][MODEL]["problem"]
        r = server.http.post("/invocations", json={"dataframe_records": records(rows)})
        assert (r.status_code, r.json()["error_code"]) == (503, "NO_MODEL_LOADED")
        assert "registry poll failed" in r.json()["message"]
        metrics = server.http.get("/metrics").text
        assert f'airmlops_model_api_registry_poll_errors_total{{model="{MODEL}"}}' in metrics
        assert server.status()[0] == 503  # still answering
    finally:
        server.stop()
    server.assert_clean_exit()


@pytest.mark.parametrize("case", ["runstring_in_pipeline", "no_sklearn_flavor", "python_model"])
def test_a_crafted_champion_is_refused_and_the_served_version_kept(
    mlflow_url: str, tmp_path: Path, case: str
) -> None:
    """The model API's own load path, in process, against a real registry: a version made
    champion with MlflowClient directly (forged "passed" tags) is refused by the model-safety
    check before anything is deserialized; the API keeps serving what it had and does not
    retry the refused version until the alias moves."""
    import secrets

    import crafted_models as cm

    marker = tmp_path / "payload-ran"
    name = f"api_{secrets.token_hex(3)}"
    good = cm.register_dir(mlflow_url, name, cm.mlflow_dir(tmp_path / "good"))
    poller = AliasPoller(
        mlflow_url, {name: ModelState(name)}, Metrics(), cache_dir=tmp_path / "cache"
    )
    state = poller.states[name]
    poller.refresh(name)
    assert state.served is not None
    assert state.served.version == good
    bad = cm.register_dir(mlflow_url, name, cm.malicious_dir(tmp_path / "bad", marker, case))
    poller.refresh(name)
    assert state.served.version == good  # still serving the checked version
    assert state.champion == bad
    assert state.problem is not None
    assert f"version {bad} refused by the model-safety check" in state.problem
    assert cm.DIR_REASONS[case] in state.problem
    assert f"still serving version {good}" in state.problem
    attempts = state.failures
    poller.refresh(name)  # not retried: the same files fail the same check
    assert state.failures == attempts
    assert not marker.exists()
    # the served model still answers through the API's scoring path
    X = cm.training_frame(3, seed=9)[["tenure", "monthly", "contract"]]
    assert np.asarray(state.served.model.predict(X)).shape == (3, 2)
