"""Request parsing and scoring for the model API, with MLflow's own scoring machinery.

Scoring uses MLflow's machinery, not a copy: the scoring server's parser
(`scoring_server.infer_and_parse_data`, which builds the frame with the signature's types), the
pyfunc's signature enforcement in `predict` (missing columns, uncastable types) and
`scoring_server.predictions_to_json` for the answer, so the API answers as `mlflow models serve`
does. The checks before parsing (JSON, exactly one format key, no rows) exist to give clear 4xx
messages where MLflow's answer is vague ("unexpected error", or a missing-inputs message for an
empty payload). Parquet bodies are refused (JSON and CSV only).
"""

from __future__ import annotations

import json
import re
from io import StringIO
from typing import Any

from airmlops_core.serve.state import Served

FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")


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


def parse_request(body: bytes, content_type: str | None, input_schema: Any) -> tuple[Any, Any]:
    """A request body -> (model input, params), with MLflow's scoring-server parser.

    Raises:
        RequestError: empty, not JSON/CSV, malformed, no or several format keys, no rows.
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
        return frame, None
    if mime != "application/json":
        raise RequestError(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"content type '{mime}' is not accepted: send application/json (or text/csv)",
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
    try:
        data = scoring_server.infer_and_parse_data({fmt: payload[fmt]}, input_schema)
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
    return data, payload.get("params")


def score(served: Served, body: bytes, content_type: str | None) -> tuple[str, int]:
    """Score one request with one served version -> (JSON answer, rows scored).

    Raises:
        RequestError: the input is refused (parsing, schema enforcement or the model's own
            checks; 400, as MLflow's scoring server answers).
    """
    from mlflow.exceptions import MlflowException
    from mlflow.pyfunc import scoring_server

    data, params = parse_request(body, content_type, served.input_schema)
    try:
        raw = served.model.predict(data, params=params) if params else served.model.predict(data)
    except MlflowException as exc:
        raise RequestError(400, "SCHEMA_MISMATCH", short_message(exc.message)) from None
    except Exception as exc:  # the model rejects the input (MLflow answers 400 too)
        raise RequestError(
            400,
            "PREDICT_FAILED",
            "the model could not score this input: "
            f"{type(exc).__name__}: {short_message(str(exc))}",
        ) from None
    out = StringIO()
    scoring_server.predictions_to_json(raw, out)
    return out.getvalue(), row_count(data)
