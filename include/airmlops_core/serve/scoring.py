"""Request parsing and scoring for the model API, with MLflow's own scoring machinery.

Scoring uses MLflow's machinery, not a copy: the scoring server's parser
(`scoring_server.infer_and_parse_data`, which builds the frame with the signature's types), the
pyfunc's signature enforcement in `predict` (missing columns, uncastable types) and
`scoring_server.predictions_to_json` for the answer, so the API answers as `mlflow models serve`
does. The checks before parsing (JSON, exactly one format key, no rows) exist to give clear 4xx
messages where MLflow's answer is vague ("unexpected error", or a missing-inputs message for an
empty payload). Parquet bodies are refused (JSON and CSV only).

Limits, each a 4xx naming it: JSON nested deeper than `MAX_JSON_DEPTH` (measured on the bytes
before parsing: Python's parser recurses until RecursionError), more rows than the server's
`max_rows`, and infinite numbers (`Infinity`, `1e999`, a CSV `inf`): no pack model can score
them. `NaN` is a missing value, as in MLflow's own serving examples (send `null` preferably);
the signature decides whether a column may be missing (an integer column may not).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from io import StringIO
from typing import Any

from airmlops_core.serve.state import Served

FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")
DEFAULT_MAX_ROWS = 10_000
MAX_JSON_DEPTH = 32  # MLflow's formats need 4 or 5 levels (tensor inputs a few more)
_SKELETON_DROP = bytes(b for b in range(256) if b not in b'"[]{}')
_DEPTH_STEP = bytes(1 if b in b"[{" else 255 if b in b"]}" else 0 for b in range(256))


class RequestError(Exception):
    """A request the API refuses: HTTP status, a short code and a message naming the problem."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def short_message(message: str, limit: int = 1500) -> str:
    """MLflow's schema errors quote the whole input frame: drop it, lead with the error."""
    found = re.search(
        r"Failed to enforce schema of data '.*' with schema '(.*?)'\.\s*"
        r"Error:\s*(.*)$",
        message,
        flags=re.DOTALL,
    )
    if found:
        message = f"{found.group(2).strip()} (model signature: {found.group(1)})"
    if len(message) > limit:
        message = message[: limit // 3] + " ... " + message[-(2 * limit) // 3 :]
    return message


def row_count(data: Any) -> int:
    """Rows in a parsed model input: a frame, a dict of columns or a list of rows."""
    if hasattr(data, "shape"):
        return int(data.shape[0])
    if isinstance(data, dict):
        lengths = [
            len(v) if hasattr(v, "__len__") and not isinstance(v, str) else 1 for v in data.values()
        ]
        return max(lengths, default=0)
    return len(data) if hasattr(data, "__len__") else 1


def json_depth(body: bytes) -> int:
    """The deepest nesting of arrays and objects in a JSON text, read from its bytes.

    Escaped backslashes and quotes are dropped, then everything but quotes and brackets; the
    brackets between a pair of quotes are inside a string. Linear in the body's size, and it
    agrees with the parser on every prefix the parser accepts, so the parser never nests deeper
    than this says.
    """
    import numpy as np

    if b"\\" in body:
        body = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    skeleton = body.translate(None, _SKELETON_DROP)
    if b'"' in skeleton:
        skeleton = b"".join(skeleton.split(b'"')[::2])  # odd parts are inside strings
    steps = np.frombuffer(skeleton.translate(_DEPTH_STEP), dtype=np.int8)
    deepest = level = 0
    for start in range(0, steps.size, 1 << 20):  # bounded memory for the running sum
        levels = np.cumsum(steps[start : start + (1 << 20)], dtype=np.int64) + level
        deepest, level = max(deepest, int(levels.max())), int(levels[-1])
    return deepest


def payload_rows(fmt: str, value: Any) -> int:
    """Rows in a parsed JSON payload, before MLflow builds a frame from it."""
    if fmt == "dataframe_split" and isinstance(value, dict):
        data = value.get("data")
        return len(data) if isinstance(data, list) else 0
    return row_count(value)


def check_rows(rows: int, max_rows: int) -> None:
    """Refuse a request with more than `max_rows` rows (413 TOO_MANY_ROWS)."""
    if rows > max_rows:
        raise RequestError(
            413,
            "TOO_MANY_ROWS",
            f"the request has {rows} rows; the limit is {max_rows} rows per request "
            "(--max-rows): send them in several requests",
        )


def check_finite(data: Any) -> None:
    """Refuse infinite numbers in a parsed input (a frame, an array or a dict of arrays).

    Raises:
        RequestError: 400 NON_FINITE_NUMBER naming the column.
    """
    import numpy as np
    import pandas as pd

    if isinstance(data, pd.DataFrame):  # float columns only: no other dtype holds inf
        columns = {str(c): data[c] for c, dtype in data.dtypes.items() if dtype.kind == "f"}
    elif isinstance(data, dict):
        columns = {str(k): v for k, v in data.items()}
    else:
        columns = {"input": data}
    for name, values in columns.items():
        try:
            arr = np.asarray(values)
        except (ValueError, TypeError):  # ragged or mixed: no float array to check
            continue
        if arr.dtype.kind == "f" and np.isinf(arr).any():
            raise RequestError(
                400,
                "NON_FINITE_NUMBER",
                f"column '{name}' holds an infinite number: no model here can score it "
                "(a missing value is null)",
            )


def _empty_payload(fmt: str, value: Any) -> bool:
    if value is None:
        return True
    if fmt == "dataframe_split":
        return isinstance(value, dict) and not value.get("data")
    if isinstance(value, dict):
        return not value or all(
            hasattr(v, "__len__") and not isinstance(v, str) and not v for v in value.values()
        )
    return isinstance(value, list) and not value


@dataclass(frozen=True)
class Payload:
    """A request body read and checked, before MLflow builds the model input from it.

    `fmt` is the format key (or "csv": `value` is then the frame already built), `value` what
    it holds, `rows` its row count (within the limit).
    """

    fmt: str
    value: Any
    params: Any
    rows: int


def read_payload(
    body: bytes,
    content_type: str | None,
    input_schema: Any,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> Payload:
    """The checks on one request body that need no frame: format, depth, key, rows.

    Raises:
        RequestError: empty, not JSON/CSV, malformed, too deep, no or several format keys, no
            rows, more than `max_rows` rows (and for CSV, what `to_model_input` refuses).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    if not body.strip():
        raise RequestError(
            400,
            "EMPTY_PAYLOAD",
            f"empty request body: send a JSON object with one of {list(FORMATS)}",
        )
    mime = (content_type or "application/json").split(";")[0].strip().lower()
    if mime == "text/csv":
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RequestError(400, "MALFORMED_CSV", f"body is not UTF-8: {exc}") from None
        try:
            frame = scoring_server.parse_csv_input(StringIO(text), schema=input_schema)
        except MlflowException as exc:
            raise RequestError(400, "MALFORMED_CSV", short_message(exc.message)) from None
        if len(frame) == 0:
            raise RequestError(400, "EMPTY_PAYLOAD", "CSV body has a header but no rows")
        check_rows(len(frame), max_rows)
        check_finite(frame)
        return Payload("csv", frame, None, len(frame))
    if mime != "application/json":
        raise RequestError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"content type '{mime}' is not accepted: send application/json (or text/csv)",
        )
    depth = json_depth(body)
    if depth > MAX_JSON_DEPTH:
        raise RequestError(
            400,
            "JSON_TOO_DEEP",
            f"JSON nested {depth} levels deep; the limit is {MAX_JSON_DEPTH} "
            "(the scoring formats need 4 or 5)",
        )
    try:
        payload = json.loads(body)
    except UnicodeDecodeError as exc:
        raise RequestError(400, "MALFORMED_JSON", f"body is not UTF-8: {exc}") from None
    except json.JSONDecodeError as exc:
        raise RequestError(
            400,
            "MALFORMED_JSON",
            f"malformed JSON: {exc.msg} at line {exc.lineno} column {exc.colno} (char {exc.pos})",
        ) from None
    if not isinstance(payload, dict):
        raise RequestError(
            400,
            "BAD_REQUEST",
            "the body must be a JSON object with one of "
            f"{list(FORMATS)}; got a JSON {type(payload).__name__}",
        )
    keys = [k for k in FORMATS if k in payload]
    if len(keys) != 1:
        found = "none of them" if not keys else f"several: {keys}"
        raise RequestError(
            400,
            "BAD_REQUEST",
            f"the body must have exactly one of "
            f"{list(FORMATS)}; found {found} (keys: {sorted(payload)[:10]})",
        )
    fmt = keys[0]
    if _empty_payload(fmt, payload[fmt]):
        raise RequestError(400, "EMPTY_PAYLOAD", f"'{fmt}' holds no rows")
    rows = payload_rows(fmt, payload[fmt])
    check_rows(rows, max_rows)
    return Payload(fmt, payload[fmt], payload.get("params"), rows)


def to_model_input(payload: Payload, input_schema: Any) -> tuple[Any, Any]:
    """A checked payload -> (model input, params), with MLflow's scoring-server parser.

    Raises:
        RequestError: MLflow cannot read it, no rows, an infinite number.
    """
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    if payload.fmt == "csv":
        return payload.value, None
    fmt = payload.fmt
    try:
        data = scoring_server.infer_and_parse_data({fmt: payload.value}, input_schema)
    except MlflowException as exc:
        code = "SCHEMA_MISMATCH" if "signature" in exc.message else "BAD_REQUEST"
        raise RequestError(
            400, code, f"cannot read '{fmt}': {short_message(exc.message)}"
        ) from None
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise RequestError(
            400, "BAD_REQUEST", f"cannot read '{fmt}' as a table: {type(exc).__name__}: {exc}"
        ) from None
    if row_count(data) == 0:
        raise RequestError(400, "EMPTY_PAYLOAD", f"'{fmt}' holds no rows")
    check_finite(data)
    return data, payload.params


def parse_request(
    body: bytes,
    content_type: str | None,
    input_schema: Any,
    *,
    max_rows: int = DEFAULT_MAX_ROWS,
) -> tuple[Any, Any]:
    """A request body -> (model input, params): `read_payload`, then `to_model_input`.

    Raises:
        RequestError: empty, not JSON/CSV, malformed, too deep, no or several format keys, no
            rows, more than `max_rows` rows, an infinite number.
    """
    payload = read_payload(body, content_type, input_schema, max_rows=max_rows)
    return to_model_input(payload, input_schema)


def predict_parsed(served: Served, data: Any, params: Any) -> Any:
    """The served version's raw predictions of a parsed input.

    Raises:
        RequestError: the model refuses the input (schema enforcement or the model's own
            checks; 400, as MLflow's scoring server answers).
    """
    from mlflow.exceptions import MlflowException

    try:
        return served.model.predict(data, params=params) if params else served.model.predict(data)
    except MlflowException as exc:
        raise RequestError(400, "SCHEMA_MISMATCH", short_message(exc.message)) from None
    except Exception as exc:  # the model rejects the input (MLflow answers 400 too)
        raise RequestError(
            400,
            "PREDICT_FAILED",
            "the model could not score this input: "
            f"{type(exc).__name__}: {short_message(str(exc))}",
        ) from None


def score(
    served: Served, body: bytes, content_type: str | None, *, max_rows: int = DEFAULT_MAX_ROWS
) -> tuple[str, int]:
    """Score one request with one served version -> (JSON answer, rows scored).

    Raises:
        RequestError: the input is refused (parsing, limits, schema enforcement or the model's
            own checks; 400, as MLflow's scoring server answers; 413 over `max_rows`).
    """
    from mlflow.pyfunc import scoring_server

    data, params = parse_request(body, content_type, served.input_schema, max_rows=max_rows)
    raw = predict_parsed(served, data, params)
    out = StringIO()
    scoring_server.predictions_to_json(raw, out)
    return out.getvalue(), row_count(data)
