"""Request parsing and scoring, in-process: MLflow's parser, clear 4xx codes, the answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from airmlops_core.serve.scoring import (
    RequestError,
    parse_request,
    row_count,
    score,
    short_message,
)
from airmlops_core.serve.state import Served

JSON = "application/json"
RECORDS = [{"a": 1.0, "b": "x"}, {"a": 2.0, "b": "y"}]


class Model:
    """A pyfunc stand-in: one [p, 1-p] row per input row, or the error it was given."""

    def __init__(self, fails: Exception | None = None):
        self.fails = fails
        self.params: Any = None

    def predict(self, data: Any, params: Any = None) -> np.ndarray:
        if self.fails is not None:
            raise self.fails
        self.params = params
        p = np.linspace(0.25, 0.75, row_count(data))
        return np.column_stack([p, 1 - p])


def served(model: Model) -> Served:
    return Served(
        name="m",
        version="1",
        run_id="r",
        model=model,
        input_schema=None,
        golden="{}",
        loaded_at=0.0,
        local_dir=Path("."),
    )


@pytest.mark.parametrize(
    "body",
    [
        {"dataframe_records": RECORDS},
        {"dataframe_split": {"columns": ["a", "b"], "data": [[1.0, "x"], [2.0, "y"]]}},
        {"inputs": {"a": [1.0, 2.0], "b": ["x", "y"]}},
        {"instances": RECORDS},
    ],
    ids=lambda body: next(iter(body)),
)
def test_parse_request_reads_every_format(body: dict[str, Any]) -> None:
    data, params = parse_request(json.dumps(body).encode(), JSON, None)
    assert row_count(data) == 2
    assert params is None


def test_parse_request_reads_csv_and_params() -> None:
    frame, params = parse_request(b"a,b\n1,x\n2,y\n", "text/csv; charset=utf-8", None)
    assert (frame.shape, params) == ((2, 2), None)
    body = json.dumps({"dataframe_records": RECORDS[:1], "params": {"k": 1}}).encode()
    data, params = parse_request(body, None, None)  # no content type: JSON
    assert (row_count(data), params) == (1, {"k": 1})


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code", "fragment"),
    [
        (b"  ", JSON, 400, "EMPTY_PAYLOAD", "empty request body"),
        (b"a,b\n", "text/csv", 400, "EMPTY_PAYLOAD", "header but no rows"),
        (b"\xff\xfe", "text/csv", 400, "MALFORMED_CSV", "not UTF-8"),
        (b"a,b", "application/vnd.apache.parquet", 415, "UNSUPPORTED_MEDIA_TYPE", "parquet"),
        (b'{"dataframe_records": [', JSON, 400, "MALFORMED_JSON", "line 1 column"),
        (b"\xff{", JSON, 400, "MALFORMED_JSON", "not UTF-8"),
        (b"[1, 2]", JSON, 400, "BAD_REQUEST", "got a JSON list"),
        (b'{"rows": []}', JSON, 400, "BAD_REQUEST", "found none of them"),
        (b'{"inputs": [1], "instances": [1]}', JSON, 400, "BAD_REQUEST", "found several"),
        (b'{"dataframe_records": []}', JSON, 400, "EMPTY_PAYLOAD", "no rows"),
        (b'{"dataframe_split": {"columns": ["a"]}}', JSON, 400, "EMPTY_PAYLOAD", "no rows"),
        (b'{"inputs": {"a": []}}', JSON, 400, "EMPTY_PAYLOAD", "no rows"),
        (b'{"instances": null}', JSON, 400, "EMPTY_PAYLOAD", "no rows"),
        (
            b'{"dataframe_split": {"cols": 1, "data": [[1]]}}',
            JSON,
            400,
            "BAD_REQUEST",
            "cannot read 'dataframe_split'",
        ),
    ],
    ids=[
        "empty body",
        "csv without rows",
        "csv not utf-8",
        "parquet",
        "malformed json",
        "json not utf-8",
        "not an object",
        "no format key",
        "two format keys",
        "no records",
        "split without data",
        "empty columns",
        "null instances",
        "unreadable split",
    ],
)
def test_parse_request_refuses_naming_the_problem(
    body: bytes, content_type: str, status: int, code: str, fragment: str
) -> None:
    with pytest.raises(RequestError) as info:
        parse_request(body, content_type, None)
    assert (info.value.status, info.value.code) == (status, code)
    assert fragment in info.value.message


def test_short_message_leads_with_the_schema_error_and_trims() -> None:
    frame = "x" * 5000
    message = (
        f"Failed to enforce schema of data '{frame}' with schema "
        "'['a': double (required)]'. Error: Model is missing inputs ['c']."
    )
    assert short_message(message) == (
        "Model is missing inputs ['c']. (model signature: ['a': double (required)])"
    )
    long = "a" * 1000 + "b" * 1000
    trimmed = short_message(long, limit=300)
    assert trimmed == "a" * 100 + " ... " + "b" * 200
    assert short_message("short") == "short"


def test_row_count_of_every_parsed_shape() -> None:
    assert row_count(np.zeros((3, 2))) == 3
    assert row_count({"a": [1, 2], "b": "x"}) == 2
    assert row_count({}) == 0
    assert row_count([1, 2, 3]) == 3
    assert row_count(7) == 1


def test_score_answers_as_mlflow_scoring_server() -> None:
    model = Model()
    body = json.dumps({"dataframe_records": RECORDS, "params": {"k": 1}}).encode()
    answer, rows = score(served(model), body, JSON)
    assert rows == 2
    assert json.loads(answer) == {"predictions": [[0.25, 0.75], [0.75, 0.25]]}
    assert model.params == {"k": 1}


def test_score_refuses_what_the_model_rejects() -> None:
    from mlflow.exceptions import MlflowException

    body = json.dumps({"dataframe_records": RECORDS}).encode()
    with pytest.raises(RequestError) as info:
        score(served(Model(ValueError("bad value"))), body, JSON)
    assert (info.value.status, info.value.code) == (400, "PREDICT_FAILED")
    assert "ValueError: bad value" in info.value.message
    with pytest.raises(RequestError) as info:
        score(served(Model(MlflowException("missing inputs ['c']"))), body, JSON)
    assert (info.value.status, info.value.code) == (400, "SCHEMA_MISMATCH")
    assert "missing inputs ['c']" in info.value.message
