"""The served model state: a served version is immutable, each model has its own lock."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from airmlops_core.serve.state import ModelState, Served


def test_served_is_never_mutated_and_states_start_empty() -> None:
    served = Served("m", "1", "r", object(), None, "{}", 0.0, Path("."))
    with pytest.raises(dataclasses.FrozenInstanceError):
        served.version = "2"  # type: ignore[misc]
    a, b = ModelState("a"), ModelState("b")
    assert (a.served, a.champion, a.problem, a.failed_version) == (None, None, None, None)
    assert (a.failures, a.retry_at, a.last_poll) == (0, 0.0, None)
    assert a.lock is not b.lock
