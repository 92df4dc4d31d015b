"""The MLflow buttons on the pack's tasks (airmlops.extra_links)."""

from __future__ import annotations

import pytest

from airmlops import extra_links
from airmlops.operators.score import PublishScoresOperator
from airmlops.operators.train import RegisterModelOperator
from airmlops.operators.validate import GateOperator

MLFLOW = "http://127.0.0.1:5000"


def test_run_link_is_the_run_url_the_step_returned() -> None:
    url = f"{MLFLOW}/#/experiments/1/runs/abc"
    assert extra_links.run_link({"run_url": url, "version": "3"}) == url
    assert extra_links.run_link({"version": "3"}) == ""
    assert extra_links.run_link(None) == ""  # the task failed before returning


@pytest.mark.parametrize(
    ("value", "want"),
    [
        ({"url": f"{MLFLOW}/#/models/churn/versions/4", "version": "4"}, "versions/4"),
        ({"challenger": "5", "champion": "2"}, "versions/5"),  # the gate's result
        ({"model_version": "6", "status": "scored"}, "versions/6"),  # a scored partition
        ({"version": "7", "run_url": "x"}, "versions/7"),  # publish, drift
    ],
)
def test_version_link_names_the_version_the_step_used(value: dict, want: str) -> None:
    assert extra_links.version_link(value, MLFLOW + "/", "churn") == (
        f"{MLFLOW}/#/models/churn/{want}"
    )


def test_version_link_is_empty_without_a_version() -> None:
    assert extra_links.version_link({"sent": True}, MLFLOW, "churn") == ""
    assert extra_links.version_link(["a"], MLFLOW, "churn") == ""


@pytest.mark.parametrize("cls", [RegisterModelOperator, GateOperator, PublishScoresOperator])
def test_model_operators_carry_both_links(cls: type) -> None:
    names = {link.name for link in cls.operator_extra_links}
    assert names == {"MLflow run", "MLflow model version"}
