"""`make up`'s summary: every alias of a version, and the training fold's class balance."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import pytest

from airmlops_dev import demo
from airmlops_dev.stack_config import StackConfig


def test_aliases_are_all_shown_champion_first() -> None:
    assert demo.ordered_aliases(["challenger", "champion"]) == ("champion", "challenger")
    assert demo.ordered_aliases(["zz", "previous_champion", "challenger"]) == (
        "challenger",
        "previous_champion",
        "zz",
    )
    summary = demo.ModelSummary(
        "customer_churn", 2, "1", ("champion", "challenger"), {"roc_auc": 0.84}, "http://x"
    )
    first = summary.line().splitlines()[0]
    assert "v1 @champion @challenger" in first
    assert "roc_auc=0.84" in first


def test_class_balance_from_the_training_run_metrics() -> None:
    metrics = {
        "train_class_before.0": 3880.0,
        "train_class_before.1": 1401.0,
        "train_class_after.1": 3880.0,
        "train_class_after.0": 3880.0,
        "roc_auc": 0.8,
        "train.cpu_seconds": 3.0,
    }
    balance = demo.class_balance(metrics)
    assert balance == {"after": {"0": 3880, "1": 3880}, "before": {"0": 3880, "1": 1401}}
    assert demo.balance_line(balance) == (
        "0: 3,880 (73%), 1: 1,401 (27%) -> rebalanced 0: 3,880 (50%), 1: 3,880 (50%)"
    )
    same = {"before": {"0": 9, "1": 1}, "after": {"0": 9, "1": 1}}
    assert demo.balance_line(same) == "0: 9 (90%), 1: 1 (10%) (not rebalanced)"
    assert demo.class_balance({"rmse": 3.0}) == {}
    summary = demo.ModelSummary("m", 1, "1", ("challenger",), {}, "u", balance=balance)
    assert "training classes: 0: 3,880 (73%), 1: 1,401 (27%) -> rebalanced" in summary.line()
    plain = demo.ModelSummary("m", 1, "1", ("challenger",), {}, "u")
    assert "training classes" not in plain.line()


@pytest.mark.integration
def test_summary_reads_aliases_and_balance_from_a_real_registry(
    mlflow_url: str, tmp_path: Path
) -> None:
    import mlflow
    from mlflow import MlflowClient

    model = "summary_demo"
    client = MlflowClient(mlflow_url)
    mlflow.set_tracking_uri(mlflow_url)
    mlflow.set_experiment(f"airmlops/{model}")
    with mlflow.start_run() as run:
        mlflow.log_metrics({"train_class_before.0": 30, "train_class_before.1": 10})
        mlflow.log_metrics({"train_class_after.0": 30, "train_class_after.1": 30})
        mlflow.log_text("placeholder", "model/README.txt")
    client.create_registered_model(model)
    mv = client.create_model_version(model, f"{run.info.artifact_uri}/model", run.info.run_id)
    client.set_model_version_tag(model, mv.version, "metric.roc_auc", "0.81")
    client.set_registered_model_alias(model, "challenger", mv.version)
    client.set_registered_model_alias(model, "champion", mv.version)
    cfg = StackConfig(home=tmp_path, mlflow_port=urlparse(mlflow_url).port)
    summary = demo.summarize(cfg, model)
    assert summary.aliases == ("champion", "challenger")
    assert summary.champion == mv.version
    assert summary.balance == {"after": {"0": 30, "1": 30}, "before": {"0": 30, "1": 10}}
    text = summary.line()
    assert f"v{mv.version} @champion @challenger" in text
    assert "training classes: 0: 30 (75%), 1: 10 (25%) -> rebalanced 0: 30 (50%)" in text
