"""Every Asset the pack's DAGs produce or consume: the one place cross-DAG edges are defined."""

from __future__ import annotations

from airflow.sdk import Asset


def _asset(model: str, kind: str) -> Asset:
    return Asset(name=f"model/{model}/{kind}", uri=f"airmlops://{model}/{kind}", group="model")


def candidate(model: str) -> Asset:
    """A new challenger version was registered (emitted by train)."""
    return _asset(model, "candidate")


def champion(model: str) -> Asset:
    """The champion alias moved (emitted by validate and rollback)."""
    return _asset(model, "champion")


def landing(model: str) -> Asset:
    """A new batch landed for scoring (a watcher, or POST /api/v2/assets/events)."""
    return _asset(model, "landing")


def scored(model: str) -> Asset:
    """A scoring run published its outputs (emitted by score)."""
    return _asset(model, "scored")


def drifted(model: str) -> Asset:
    """Drift or decay crossed the spec's retrain rule (emitted by drift)."""
    return _asset(model, "drift")
