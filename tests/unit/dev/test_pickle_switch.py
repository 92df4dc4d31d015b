"""MLflow's pickle switch is off in every process the pack controls.

`MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false` makes MLflow's own flavors refuse pickle and
cloudpickle (and skops with a trust list read from the model): set in the image every compose
service runs (Airflow, workers, MLflow, the model API), in every local-stack process, and by
the pack itself before each load (tests/unit/tracking/test_model_safety.py).
"""

from __future__ import annotations

import re

import yaml

from airmlops_core.tracking.model_safety import PICKLE_SWITCH
from airmlops_dev.stack_config import StackConfig
from airmlops_dev.stack_env import airflow_env, base_env
from paths import PROJECT_DIR as ROOT


def test_the_image_sets_the_switch_off_for_every_pack_service() -> None:
    dockerfile = (ROOT / "docker" / "Dockerfile").read_text()
    assert re.search(rf"^ENV {PICKLE_SWITCH}=false$", dockerfile, re.M)
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    for name in ("model-api", "mlflow", "airflow-scheduler"):
        service = compose["services"][name]
        assert service.get("image") == "airmlops/airflow:local", name  # built from it
        env = service.get("environment") or {}
        assert PICKLE_SWITCH not in (env if isinstance(env, dict) else {}), name


def test_the_local_stack_sets_the_switch_off(tmp_path) -> None:
    cfg = StackConfig(project_dir=ROOT, home=tmp_path)
    assert base_env(cfg)[PICKLE_SWITCH] == "false"  # MLflow, the model API, the receiver
    assert airflow_env(cfg)[PICKLE_SWITCH] == "false"  # every Airflow process and task
