"""Outage alerting: one message per real outage, none for a restart or a model without champion.

The pure part (`judge`, `transitions`, `decide`) is driven with what a probe would see; the
integration-marked test probes a real model API subprocess over a real MLflow registry.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from airmlops_core.serve import health
from airmlops_core.serve.health import ApiHealth, Check, Observation
from airmlops_dev.ports import free_ports
from model_api_process import MODEL, Api, Registry

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
MLFLOW_UP = Check("mlflow", "up", "200")
DEAD = ApiHealth(False, "http://127.0.0.1:5001 unreachable: ConnectionError")


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def api(
    uptime_s: float, served: str | None, champion: str | None = None, model: str = "m"
) -> ApiHealth:
    """The API's /health: `model` serves `served`, its last poll saw `champion`."""
    return ApiHealth(True, "ok", uptime_s, {model: served}, {model: champion})


def seen(
    api_health: ApiHealth,
    champion: str | None = "1",
    golden: Check | None = None,
    model: str = "m",
    mlflow: Check = MLFLOW_UP,
) -> Observation:
    """One probe's observation of `model` (registry champion; golden when the API serves)."""
    if golden is None and api_health.served.get(model):
        golden = Check(f"model-api/{model}", "up", f"version {api_health.served[model]} answered")
    champions = {} if mlflow.status == "down" else {model: champion}
    return Observation(mlflow, api_health, champions, {model: golden} if golden else {})


class Probes:
    """Successive probes of model "m", keeping the state between them as the operator does."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.state: dict[str, Any] = state or {}

    def run(self, minute: float, obs: Observation) -> tuple[list[str], Check]:
        self.state, messages, checks = health.decide(self.state, obs, ["m"], at(minute))
        return messages, checks[1]


def serving_for_an_hour() -> Probes:
    """A model served for an hour: champion v1 known since minute 0."""
    probes = Probes()
    for minute in range(0, 65, 5):
        assert probes.run(minute, seen(api(600 + 60 * minute, "1", "1")))[0] == []
    return probes


def test_a_restart_within_the_grace_period_sends_nothing() -> None:
    probes = serving_for_an_hour()
    # make down / make up: the API is loading; its first registry poll failed (MLflow starting)
    messages, check = probes.run(70, seen(api(25, None, None)))
    assert messages == []
    assert check.status == "starting"
    assert "the API started 25s ago" in check.detail
    messages, check = probes.run(75, seen(api(290, None, "1")))
    assert (messages, check.status) == ([], "starting")
    messages, check = probes.run(80, seen(api(590, "1", "1")))
    assert (messages, check.status) == ([], "up")  # was never down: no "recovered" either
    assert probes.state["model-api/m"]["ok"] is True


def test_a_model_without_a_champion_is_never_reported_down() -> None:
    probes = Probes()
    dead = seen(DEAD, champion=None)
    for minute, obs in enumerate([seen(api(10, None), None), seen(api(9999, None), None), dead]):
        messages, check = probes.run(5 * minute, obs)
        assert (messages, check.status) == ([], "idle"), check
        assert "no champion yet" in check.detail
    # its first promotion: the API loads it within the grace period, still nothing to say
    messages, check = probes.run(20, seen(api(9999, None, None), champion="1"))
    assert (messages, check.status) == ([], "starting")
    assert "new champion" in check.detail
    assert probes.run(25, seen(api(9999, "1", "1")))[0] == []


def test_a_killed_api_alerts_once_then_recovers_once() -> None:
    probes = serving_for_an_hour()
    messages, check = probes.run(70, seen(DEAD))
    assert messages == [f":red_circle: *model-api/m* is down: {DEAD.detail}"]
    for minute in (75, 80):
        assert probes.run(minute, seen(DEAD))[0] == []
    # restarted: loading within its grace period says nothing, answering says recovered, once
    messages, check = probes.run(85, seen(api(20, None, "1")))
    assert (messages, check.status) == ([], "starting")
    messages, _ = probes.run(90, seen(api(320, "1", "1")))
    assert messages == [
        ":large_green_circle: *model-api/m* recovered "
        f"(down since {at(70).isoformat(timespec='seconds')}): version 1 answered"
    ]
    assert probes.run(95, seen(api(620, "1", "1")))[0] == []


def test_a_champion_the_api_has_not_loaded_after_the_grace_period_alerts() -> None:
    probes = serving_for_an_hour()
    # restarted: v1 fails to load; within the grace period that is not yet an outage
    failing = api(120, None, "1")
    assert probes.run(70, seen(failing))[0] == []
    messages, check = probes.run(75, seen(api(420, None, "1")))
    assert check.status == "down"
    assert messages == [
        ":red_circle: *model-api/m* is down: champion v1 not loaded by the model API "
        "(API up 420s, grace 300s)"
    ]
    assert probes.run(80, seen(api(720, None, "1")))[0] == []


def test_a_new_first_champion_gets_the_grace_period_then_alerts() -> None:
    probes = Probes()
    assert probes.run(0, seen(api(9999, None), champion=None))[1].status == "idle"
    messages, check = probes.run(5, seen(api(9999, None, "1"), champion="1"))
    assert (messages, check.status) == ([], "starting")
    messages, check = probes.run(10, seen(api(9999, None, "1"), champion="1"))
    assert check.status == "down"
    assert messages == [
        ":red_circle: *model-api/m* is down: champion v1 not loaded by the model API "
        "(API up 9999s, grace 300s)"
    ]


def test_a_spec_the_running_api_does_not_know_alerts_once_it_has_a_champion() -> None:
    probes = Probes()
    unknown = ApiHealth(True, "ok", 9999, {"other": "3"}, {"other": "3"})
    assert probes.run(0, seen(unknown, champion=None))[1].status == "idle"
    assert probes.run(5, seen(unknown, champion="1"))[0] == []
    messages, _ = probes.run(10, seen(unknown, champion="1"))
    assert len(messages) == 1
    assert "does not serve this model" in messages[0]
    assert "restart it" in messages[0]


def test_without_the_registry_the_api_view_then_the_last_probe_decides() -> None:
    mlflow_down = Check("mlflow", "down", "unreachable")
    probes = serving_for_an_hour()
    messages, check = probes.run(70, seen(DEAD, mlflow=mlflow_down))
    assert check.status == "down"  # the last probe knew a champion
    assert messages == [
        ":red_circle: *mlflow* is down: unreachable",
        f":red_circle: *model-api/m* is down: {DEAD.detail}",
    ]
    never = Probes()
    messages, check = never.run(0, seen(api(9999, None, None), mlflow=mlflow_down))
    assert check.status == "idle"  # neither the API nor any probe ever saw a champion
    assert messages == [":red_circle: *mlflow* is down: unreachable"]


def test_a_failing_golden_request_is_down_at_once() -> None:
    probes = serving_for_an_hour()
    broken = Check("model-api/m", "down", "golden request -> 500: boom")
    messages, _ = probes.run(70, seen(api(9999, "1", "1"), golden=broken))
    assert messages == [":red_circle: *model-api/m* is down: golden request -> 500: boom"]


def test_down_once_then_quiet_then_recovered_once() -> None:
    state, msgs = health.transitions({}, [Check("model-api/m", "up", "v1")], at(0))
    assert msgs == []  # first sight, healthy: nothing to say
    state, msgs = health.transitions(state, [Check("model-api/m", "down", "refused")], at(5))
    assert msgs == [":red_circle: *model-api/m* is down: refused"]
    for minute in (10, 15, 20):
        state, msgs = health.transitions(
            state, [Check("model-api/m", "down", "refused")], at(minute)
        )
        assert msgs == []
    assert state["model-api/m"]["since"] == at(5).isoformat(timespec="seconds")
    state, msgs = health.transitions(state, [Check("model-api/m", "up", "v2 answered")], at(25))
    assert msgs == [
        ":large_green_circle: *model-api/m* recovered (down since "
        f"{at(5).isoformat(timespec='seconds')}): v2 answered"
    ]


def test_first_probe_of_a_down_target_alerts_and_targets_are_independent() -> None:
    checks = [Check("mlflow", "down", "unreachable"), Check("model-api/a", "up", "ok")]
    state, msgs = health.transitions({}, checks, at(0))
    assert msgs == [":red_circle: *mlflow* is down: unreachable"]
    state, msgs = health.transitions(
        state, [Check("mlflow", "down", "x"), Check("model-api/a", "down", "503")], at(5)
    )
    assert msgs == [":red_circle: *model-api/a* is down: 503"]


def test_probes_of_nothing_listening_are_down_not_errors() -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    obs = health.probe(url, url, ["m"], retry_s=())
    assert obs.mlflow.status == "down"
    assert not obs.api.reachable
    assert "unreachable" in obs.mlflow.detail
    assert "unreachable" in obs.api.detail
    assert obs.champions == {}  # the registry is not asked when MLflow is down


@pytest.mark.integration
def test_probing_a_real_api_restart_no_champion_and_kill(
    registry: Registry, tmp_path: Path
) -> None:
    """A real API over a real registry: MODEL has a champion, NEWCOMER was never registered."""
    newcomer = "api_newcomer"
    models = [MODEL, newcomer]
    registry.set_champion("1")
    state: dict[str, Any] = {}
    sent: list[str] = []

    def probe_once(api: Api, retry_s: tuple[float, ...] = (1.0, 2.0, 4.0)) -> list[Check]:
        nonlocal state
        obs = health.probe(api.base, registry.url, models, token=api.token, retry_s=retry_s)
        state, messages, checks = health.decide(state, obs, models, dt.datetime.now(dt.UTC))
        sent.extend(messages)
        return checks

    server = Api(registry.url, ",".join(models), tmp_path / "api.log")
    try:
        server.wait(lambda: server.status()[0] in (200, 503), "the API listening")
        # probed at once after its start: loading (or already serving) and no champion
        checks = probe_once(server)
        assert [c.status for c in checks[1:]] in (["starting", "idle"], ["up", "idle"]), checks
        _, body = server.status()
        assert body["uptime_s"] < health.GRACE_S
        assert body["started_at"]
        server.wait_served("1")
        checks = probe_once(server)
        assert [c.status for c in checks] == ["up", "up", "idle"], checks
        assert sent == []
        os.killpg(server.proc.pid, signal.SIGKILL)
        server.proc.wait(timeout=30)
        for _ in range(2):
            checks = probe_once(server, retry_s=())
        assert [c.status for c in checks] == ["up", "down", "idle"], checks
        assert sent == [f":red_circle: *model-api/{MODEL}* is down: {checks[1].detail}"]
        assert "unreachable" in sent[0]
    finally:
        server.stop()
    again = Api(registry.url, ",".join(models), tmp_path / "api2.log")
    try:
        again.wait_served("1")
        probe_once(again)
        probe_once(again)
    finally:
        again.stop()
    assert len(sent) == 2, sent
    assert sent[1].startswith(f":large_green_circle: *model-api/{MODEL}* recovered")
