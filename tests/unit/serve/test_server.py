"""The model server without HTTP: which version answers, /health, gauges, the cache."""

from __future__ import annotations

import time
from datetime import datetime
from pathlib import Path

import pytest

from airmlops_core.serve.metrics import PREFIX
from airmlops_core.serve.scoring import RequestError
from airmlops_core.serve.server import ModelServer
from airmlops_core.serve.state import Served

URI = "http://127.0.0.1:9"  # never contacted: the poller is not started


def served(name: str, version: str = "1") -> Served:
    return Served(name, version, f"run-{version}", object(), None, "{}", 1.7e9, Path("."))


def refusal(server: ModelServer, name: str | None) -> tuple[int, str, str]:
    with pytest.raises(RequestError) as info:
        server.served_for(name)
    return info.value.status, info.value.code, info.value.message


def test_no_models_is_refused_and_names_are_deduplicated(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no models to serve"):
        ModelServer(URI, [], cache_dir=tmp_path)
    server = ModelServer(URI, ["b", "a", "b"], cache_dir=tmp_path)
    assert list(server.states) == ["b", "a"]
    for name in ("a", "b"):
        for gauge in ("model_loaded", "served_version", "champion_version"):
            value = server.metrics.registry.get_sample_value(f"{PREFIX}{gauge}", {"model": name})
            assert value == 0.0, (gauge, name)


def test_served_for_names_the_model_or_says_why_not(tmp_path: Path) -> None:
    server = ModelServer(URI, ["a", "b"], cache_dir=tmp_path)
    status, code, message = refusal(server, None)
    assert (status, code) == (400, "MODEL_NOT_SPECIFIED")
    assert "['a', 'b']" in message
    status, code, message = refusal(server, "zz")
    assert (status, code) == (404, "UNKNOWN_MODEL")
    assert "'zz'" in message
    assert refusal(server, "a")[:2] == (503, "NO_MODEL_LOADED")
    assert "loading" in refusal(server, "a")[2]
    server.states["a"].problem = "registry poll failed: refused"
    assert "registry poll failed: refused" in refusal(server, "a")[2]
    server.states["a"].served = served("a")
    assert server.served_for("a") is server.states["a"].served
    single = ModelServer(URI, ["only"], cache_dir=tmp_path)
    single.states["only"].served = served("only", "3")
    assert single.served_for(None).version == "3"


def test_health_is_ok_degraded_or_unavailable(tmp_path: Path) -> None:
    server = ModelServer(URI, ["a", "b"], alias="prod", cache_dir=tmp_path)
    status, body = server.health()
    assert (status, body["status"], body["alias"]) == (503, "unavailable", "prod")
    assert body["models"]["a"] == {
        "status": "unavailable",
        "served_version": None,
        "champion_version": None,
        "run_id": None,
        "loaded_at": None,
        "last_poll": None,
        "problem": "loading: first registry poll not finished",
        "batched": False,
    }
    for name in ("a", "b"):
        server.states[name].served = served(name, "2")
        server.states[name].champion = "2"
        server.states[name].last_poll = 1.7e9 + 60
    status, body = server.health()
    assert (status, body["status"]) == (200, "ok")
    assert body["models"]["b"] == {
        "status": "serving",
        "served_version": "2",
        "champion_version": "2",
        "run_id": "run-2",
        "loaded_at": "2023-11-14T22:13:20+00:00",
        "last_poll": "2023-11-14T22:14:20+00:00",
        "problem": None,
        "batched": False,
    }
    server.states["b"].problem = "version 3 failed to load"
    status, body = server.health()
    assert (status, body["status"]) == (200, "degraded")


def test_health_says_since_when_the_api_runs(tmp_path: Path) -> None:
    """The health probe gives a freshly (re)started API time to load its champions."""
    before = time.time()
    server = ModelServer(URI, ["a"], cache_dir=tmp_path)
    time.sleep(0.3)
    _, body = server.health()
    assert 0.2 <= body["uptime_s"] < 5
    started = datetime.fromisoformat(str(body["started_at"])).timestamp()
    assert before - 1 <= started <= time.time()
    server.poller.start = lambda: None  # type: ignore[method-assign]  # no registry here
    server.start()  # the clock restarts with the poller
    assert server.health()[1]["uptime_s"] < 0.2


def test_stop_removes_only_a_cache_it_made(tmp_path: Path) -> None:
    given = ModelServer(URI, ["a"], cache_dir=tmp_path)
    given.stop()
    assert tmp_path.is_dir()
    own = ModelServer(URI, ["a"])
    assert own.poller.cache_dir.is_dir()
    own.stop()
    assert not own.poller.cache_dir.exists()
