"""The REST bodies of the settings loader, checked against Airflow's own request models."""

from __future__ import annotations

import pytest

from airmlops_dev.settings_loader import (
    ConnectionSetting,
    PoolSetting,
    Settings,
    VariableSetting,
)
from airmlops_dev.settings_rest import bulk_bodies

SETTINGS = Settings(
    connections=(
        ConnectionSetting(
            "mlflow_staging",
            "http",
            host="https://mlflow.staging",
            password="pw",
            port=443,
            extra={"timeout": 5},
        ),
    ),
    pools=(PoolSetting("ml_scoring", 2, "Scoring tasks"),),
    variables=(VariableSetting("airmlops_environment", "prod"),),
)


def test_each_body_is_accepted_by_airflows_own_bulk_models() -> None:
    common = pytest.importorskip("airflow.api_fastapi.core_api.datamodels.common")
    from airflow.api_fastapi.core_api.datamodels.connections import ConnectionBody
    from airflow.api_fastapi.core_api.datamodels.pools import PoolBody
    from airflow.api_fastapi.core_api.datamodels.variables import VariableBody

    bodies = bulk_bodies(SETTINGS)
    models = {"connections": ConnectionBody, "pools": PoolBody, "variables": VariableBody}
    for section, model in models.items():
        parsed = common.BulkBody[model].model_validate(bodies[section])
        (action,) = parsed.actions
        assert action.action.value == "create"
        assert action.action_on_existence.value == "overwrite"
    conn = common.BulkBody[ConnectionBody].model_validate(bodies["connections"]).actions[0]
    entity = conn.entities[0]
    assert (entity.connection_id, entity.host, entity.port) == (
        "mlflow_staging",
        "https://mlflow.staging",
        443,
    )
    assert entity.schema_ is None
    assert entity.extra == '{"timeout": 5}'
    pool = common.BulkBody[PoolBody].model_validate(bodies["pools"]).actions[0].entities[0]
    assert (pool.pool, pool.slots) == ("ml_scoring", 2)


def test_empty_sections_send_nothing() -> None:
    assert bulk_bodies(Settings(pools=SETTINGS.pools)).keys() == {"pools"}
    assert bulk_bodies(Settings()) == {}
