"""The DAG factory: every model spec in include/models becomes its pipelines' DAGs.

Parse-time cost is reading small YAML files and building DAG objects; nothing heavy is
imported here (see tests/dags/test_dag_integrity.py).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from airflow.sdk import DAG

from airmlops import assets, notify
from airmlops.operators.train import (
    EvaluateModelOperator,
    ExtractTrainingDataOperator,
    RegisterModelOperator,
    TrainModelOperator,
)
from airmlops_core import settings
from airmlops_core.spec import ModelSpec, SpecError, load_specs

START_DATE = datetime(2024, 1, 1)
RETRIES = 2
RETRY_DELAY = timedelta(seconds=20)


def default_args(spec: ModelSpec) -> dict[str, object]:
    """Arguments every task of a model's DAGs shares: owner, retries, failure alert."""
    return {
        "owner": spec.owner,
        "retries": RETRIES,
        "retry_delay": RETRY_DELAY,
        "retry_exponential_backoff": True,
        "on_failure_callback": [notify.failure_notifier(spec.alerts.conn_id)],
    }


def dag_tags(spec: ModelSpec, pipeline: str) -> list[str]:
    return ["airmlops", f"model:{spec.name}", pipeline, *spec.tags]


def train_dag(spec: ModelSpec) -> DAG:
    """`<model>__train`: extract -> train -> evaluate -> register (alias challenger)."""
    with DAG(
        dag_id=f"{spec.name}__train",
        description=f"Train {spec.name}: {spec.description}".strip(": "),
        doc_md=TRAIN_DOC.format(name=spec.name, estimator=spec.estimator.class_path),
        schedule=spec.schedules.train,
        start_date=START_DATE,
        catchup=False,
        max_active_runs=1,
        tags=dag_tags(spec, "train"),
        default_args=default_args(spec),
    ) as dag:
        common = {"model_name": spec.name}
        extract = ExtractTrainingDataOperator(task_id="extract", **common)
        train = TrainModelOperator(task_id="train", refs=extract.output, pool="ml_training",
                                   **common)
        evaluate = EvaluateModelOperator(task_id="evaluate", refs=extract.output,
                                         trained=train.output, **common)
        RegisterModelOperator(
            task_id="register", refs=extract.output, trained=train.output,
            evaluated=evaluate.output, outlets=[assets.candidate(spec.name)],
            on_success_callback=[notify.success_notifier(spec.alerts.conn_id)], **common)
    return dag


TRAIN_DOC = """### Train `{name}`
Extracts the spec's training window, freezes a train/holdout split, fits `{estimator}` in a
scikit-learn Pipeline, evaluates it on the holdout and registers a new MLflow model version
with alias `challenger`, then emits the `model/{name}/candidate` Asset.
Spec: `include/models/{name}.yaml`.
"""


def build_dags(models_dir: str | Path | None = None) -> dict[str, DAG]:
    """DAGs of every valid spec, by dag_id. Invalid specs are skipped (see spec_errors)."""
    specs, _ = load_specs(models_dir or settings.models_dir())
    dags: dict[str, DAG] = {}
    for spec in specs.values():
        for dag in (train_dag(spec),):
            dags[dag.dag_id] = dag
    return dags


def spec_errors(models_dir: str | Path | None = None) -> dict[str, SpecError]:
    """Errors of the invalid specs, by file path."""
    return load_specs(models_dir or settings.models_dir())[1]
