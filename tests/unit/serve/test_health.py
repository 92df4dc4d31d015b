"""Outage alerting logic: one message per state change, never one per probe."""

from __future__ import annotations

import datetime as dt

from airmlops_core.serve import health
from airmlops_core.serve.health import Check
from airmlops_dev.ports import free_ports

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def at(minutes: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


def test_down_once_then_quiet_then_recovered_once() -> None:
    state, msgs = health.transitions({}, [Check("model-api/m", True, "v1")], at(0))
    assert msgs == []  # first sight, healthy: nothing to say
    state, msgs = health.transitions(state, [Check("model-api/m", False, "refused")], at(5))
    assert msgs == [":red_circle: *model-api/m* is down: refused"]
    for minute in (10, 15, 20):
        state, msgs = health.transitions(
            state, [Check("model-api/m", False, "refused")], at(minute)
        )
        assert msgs == []
    assert state["model-api/m"]["since"] == at(5).isoformat(timespec="seconds")
    state, msgs = health.transitions(state, [Check("model-api/m", True, "v2 answered")], at(25))
    assert msgs == [
        ":large_green_circle: *model-api/m* recovered (down since "
        f"{at(5).isoformat(timespec='seconds')}): v2 answered"
    ]
    _, msgs = health.transitions(state, [Check("model-api/m", True, "v2")], at(30))
    assert msgs == []


def test_first_probe_of_a_down_target_alerts_and_targets_are_independent() -> None:
    checks = [Check("mlflow", False, "unreachable"), Check("model-api/a", True, "ok")]
    state, msgs = health.transitions({}, checks, at(0))
    assert msgs == [":red_circle: *mlflow* is down: unreachable"]
    state, msgs = health.transitions(
        state, [Check("mlflow", False, "x"), Check("model-api/a", False, "503")], at(5)
    )
    assert msgs == [":red_circle: *model-api/a* is down: 503"]


def test_probes_of_nothing_listening_are_down_not_errors() -> None:
    (port,) = free_ports(1)
    url = f"http://127.0.0.1:{port}"
    checks = health.probe(url, url, ["m"])
    assert [(c.target, c.ok) for c in checks] == [("mlflow", False), ("model-api/m", False)]
    assert all("unreachable" in c.detail for c in checks)
