"""Which partitions a score run takes: DAG param, landing events' inputs, or the spec's."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from airmlops_core import errors
from airmlops_core.io import data
from airmlops_core.score import flow as score_flow
from airmlops_core.spec import ModelSpec
from airmlops_core.tracking.runs import RunContext

CTX = RunContext(model="m", dag_id="m__score", run_id="manual__1", task_id="partitions")


def spec() -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "name": "m",
            "task": "binary",
            "target": "y",
            "row_key": "id",
            "source": {"kind": "file", "uri": "train.parquet"},
            "features": {"numeric": ["x"]},
            "estimator": {"class": "sklearn.linear_model.LogisticRegression"},
            "metrics": {"primary": "roc_auc"},
        }
    )


@pytest.fixture
def landing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("AIRMLOPS_DATA_DIR", str(tmp_path))
    frame = pd.DataFrame({"id": [1, 2], "x": [0.5, 1.5]})
    for name in ("month-10", "month-11", "month-12"):
        data.write_frame(frame, str(tmp_path / "landing" / "m" / f"{name}.parquet"))
    return tmp_path / "landing" / "m"


def names(found: list[str]) -> list[str]:
    return [Path(p).name for p in found]


def test_without_events_the_whole_landing_location_is_scored(landing: Path) -> None:
    found = score_flow.partitions_step(spec(), CTX)
    assert names(found) == ["month-10.parquet", "month-11.parquet", "month-12.parquet"]


def test_landing_events_score_only_the_batches_they_announce(landing: Path) -> None:
    found = score_flow.partitions_step(
        spec(),
        CTX,
        landed=[
            "landing/m/month-11.parquet",
            str(landing / "month-12.parquet"),
            "landing/m/month-11.parquet",
        ],
    )
    assert names(found) == ["month-11.parquet", "month-12.parquet"]


def test_the_dag_param_wins_over_events(landing: Path) -> None:
    found = score_flow.partitions_step(
        spec(), CTX, override="landing/m/month-10.parquet", landed=["landing/m/month-11.parquet"]
    )
    assert names(found) == ["month-10.parquet"]


def test_events_whose_batches_share_an_output_name_are_refused(landing: Path) -> None:
    other = landing.parent / "other"
    data.write_frame(pd.DataFrame({"id": [3], "x": [2.0]}), str(other / "month-10.parquet"))
    with pytest.raises(errors.DataError, match="share an output name"):
        score_flow.partitions_step(
            spec(), CTX, landed=["landing/m/month-10.parquet", "landing/other/month-10.parquet"]
        )


def test_an_event_naming_a_missing_batch_fails_naming_it(landing: Path) -> None:
    with pytest.raises(errors.DataError, match="month-13"):
        score_flow.partitions_step(spec(), CTX, landed=["landing/m/month-13.parquet"])
