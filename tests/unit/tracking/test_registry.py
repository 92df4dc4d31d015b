"""Alias moves against a real MLflow server: compare-and-set, retries converge, no lost alias."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest
from mlflow import MlflowClient
from sklearn.linear_model import LogisticRegression

from airmlops_core.errors import PromotionConflict
from airmlops_core.tracking import registry
from airmlops_core.tracking.registry import alias_version, move_champion


@pytest.fixture(scope="module")
def versions(mlflow_url: str) -> tuple[MlflowClient, str, list[str]]:
    """A registered model with three versions of a tiny classifier."""
    mlflow.set_tracking_uri(mlflow_url)
    X = np.arange(20, dtype=float).reshape(-1, 1)
    model = LogisticRegression().fit(X, (X[:, 0] > 9).astype(int))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            model, name="m", pip_requirements=["scikit-learn"], serialization_format="skops"
        )
    name = "alias_test"
    made = [mlflow.register_model(info.model_uri, name).version for _ in range(3)]
    return MlflowClient(mlflow_url), name, [str(v) for v in made]


def test_first_promotion_and_then_a_second(versions) -> None:
    client, name, (v1, v2, _) = versions
    first = move_champion(client, name, v1, expected_champion=None, tags={"gate.decision": "x"})
    assert first.to_dict() == {
        "name": name,
        "champion": v1,
        "previous_champion": None,
        "changed": True,
    }
    assert client.get_model_version(name, v1).tags["gate.decision"] == "x"
    second = move_champion(client, name, v2, expected_champion=v1)
    assert (second.champion, second.previous_champion) == (v2, v1)
    assert alias_version(client, name, registry.CHAMPION) == v2
    assert alias_version(client, name, registry.PREVIOUS_CHAMPION) == v1
    # a retry of the same promotion converges without moving anything
    again = move_champion(client, name, v2, expected_champion=v1)
    assert again.changed is False
    assert again.previous_champion == v1


def test_stale_expectation_is_refused_and_changes_nothing(versions) -> None:
    client, name, (v1, v2, v3) = versions
    before = (
        alias_version(client, name, registry.CHAMPION),
        alias_version(client, name, registry.PREVIOUS_CHAMPION),
    )
    with pytest.raises(PromotionConflict, match="re-evaluate"):
        move_champion(client, name, v3, expected_champion=v1, tags={"gate.decision": "y"})
    after = (
        alias_version(client, name, registry.CHAMPION),
        alias_version(client, name, registry.PREVIOUS_CHAMPION),
    )
    assert after == before
    assert "gate.decision" not in client.get_model_version(name, v3).tags


def test_missing_alias_and_model(versions) -> None:
    client, name, _ = versions
    assert alias_version(client, name, "no_such_alias") is None
    assert alias_version(client, "no_such_model", registry.CHAMPION) is None
