"""Recorded requests -> Parquet record files: rows built column-wise in Arrow, published
through the data layer.

A `Recorded` is one answered request as the model API saw it: the raw body it accepted (JSON
or CSV, already checked by the request path), the JSON answer, the served version and its
class labels. `RecordWriter` buffers them per model and, every `flush_rows` rows or
`flush_seconds` (or when forced), writes one file per model (`io.live` names it): the time,
the version, the spec's input columns the requests hold, the row key when present, and the
outputs as the score DAG names them (`prediction`, `proba_<class>`). It runs in the recorder
process (recorder_process.py), or in the caller's process when no recorder process was started.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
import os
import re
import secrets
import socket
import time
from dataclasses import dataclass, field
from typing import Any, TypedDict

from airmlops_core.io import live
from airmlops_core.io.data import is_s3
from airmlops_core.io.scored import proba_names
from airmlops_core.io.store import S3Settings, Store

log = logging.getLogger(__name__)

PREDICTION = "prediction"
JSON_FORMATS = ("dataframe_split", "dataframe_records", "inputs", "instances")


class RecordingSettings(TypedDict):
    """One model's recording, as handed to worker and recorder processes (JSON)."""

    model: str
    base: str
    sample_rate: float
    retention_days: int
    flush_rows: int
    flush_seconds: float
    queue_rows: int
    columns: list[str]


def store_for(settings: dict[str, RecordingSettings]) -> Store:
    """The data layer for `settings`' bases. A base on S3 is reached through
    $AWS_ENDPOINT_URL and the default credential chain (the AWS_* variables)."""
    s3 = None
    if any(is_s3(s["base"]) for s in settings.values()):
        s3 = S3Settings(
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            region=os.environ.get("AWS_DEFAULT_REGION") or None,
        )
    return Store(s3)


def worker_id() -> str:
    """This process's part of its file names: host, pid and a random part."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class Recorded:
    """One answered request: its time, model, version, class labels (None: unknown), the raw
    body and its content type, the JSON answer and the row count."""

    at: float
    model: str
    version: str
    classes: tuple[Any, ...] | None
    body: bytes
    content_type: str | None
    answer: str | bytes
    rows: int


@dataclass
class FlushOutcome:
    """What one flush did: files written, rows recorded per model, rows dropped per
    (model, reason)."""

    files: list[str] = field(default_factory=list)
    recorded: dict[str, int] = field(default_factory=dict)
    dropped: dict[tuple[str, str], int] = field(default_factory=dict)

    def drop(self, model: str, reason: str, rows: int) -> None:
        self.dropped[(model, reason)] = self.dropped.get((model, reason), 0) + rows


@dataclass
class _Buffer:
    items: list[Recorded] = field(default_factory=list)
    rows: int = 0
    since: float = field(default_factory=time.monotonic)


class RecordWriter:
    """Buffers recorded requests per model and publishes them as Parquet files.

    Args:
        settings: per model name (`recording.settings_from_spec`).
        store: the data layer the files go through.
        worker: this writer's part of the file names (`recording.worker_id`): unique per process.
    """

    def __init__(self, settings: dict[str, RecordingSettings], store: Store, worker: str) -> None:
        self.settings = settings
        self.store = store
        self.worker = worker
        self.seq = 0
        self._buffers: dict[str, _Buffer] = {}

    def add(self, item: Recorded) -> None:
        """Buffer one request (of a model in `settings`)."""
        buf = self._buffers.get(item.model)
        if buf is None:
            buf = self._buffers[item.model] = _Buffer()
        buf.items.append(item)
        buf.rows += item.rows

    def buffered_rows(self) -> int:
        return sum(b.rows for b in self._buffers.values())

    def seconds_to_due(self) -> float | None:
        """Seconds until some buffer is due by time (None: nothing buffered)."""
        now = time.monotonic()
        waits = [
            self.settings[m]["flush_seconds"] - (now - b.since) for m, b in self._buffers.items()
        ]
        return max(0.0, min(waits)) if waits else None

    def flush(self, force: bool = False) -> FlushOutcome:
        """Write each model's buffer that holds `flush_rows` rows or is `flush_seconds` old
        (every buffer when `force`); a failed write drops and counts its rows."""
        out = FlushOutcome()
        now = time.monotonic()
        for model, buf in list(self._buffers.items()):
            cfg = self.settings[model]
            due = now - buf.since >= cfg["flush_seconds"] or buf.rows >= cfg["flush_rows"]
            if not (force or due):
                continue
            del self._buffers[model]
            try:
                uri = self._write(cfg, buf.items, out)
            except Exception:
                log.exception("live recording: %d rows of %s not written", buf.rows, model)
                out.drop(model, "write_failed", buf.rows)
                continue
            if uri is not None:
                out.files.append(uri)
        return out

    def _write(
        self, cfg: RecordingSettings, items: list[Recorded], out: FlushOutcome
    ) -> str | None:
        """One Parquet file of `items`, published atomically; None when none could be
        recorded (those are counted as dropped, `unsupported`)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        model = cfg["model"]
        groups: dict[str, list[tuple[Recorded, dict[str, Any], list[Any]]]] = {}
        for item in items:
            parsed = _parse(item)
            if parsed is None:
                out.drop(model, "unsupported", item.rows)
                continue
            groups.setdefault(item.version, []).append((item, *parsed))
        if not groups:
            return None
        tables = [_table(cfg, group) for group in groups.values()]
        table = (
            pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        )
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.seq += 1
        last = dt.datetime.fromtimestamp(items[-1].at, dt.UTC).date()
        uri = self.store.write_bytes(
            live.file_uri(cfg["base"], last, self.worker, self.seq), sink.getvalue()
        )
        out.recorded[model] = out.recorded.get(model, 0) + table.num_rows
        return uri


def _parse(item: Recorded) -> tuple[dict[str, Any], list[Any]] | None:
    """(input columns, predictions) of one request; None when they are not a table of
    `item.rows` rows with one prediction per row."""
    try:
        cols = body_columns(item.body, item.content_type)
        answer = json.loads(item.answer)
    except ValueError:
        return None
    preds = answer.get("predictions") if isinstance(answer, dict) else answer
    if (
        cols is None
        or not isinstance(preds, list)
        or len(preds) != item.rows
        or any(len(v) != item.rows for v in cols.values())
    ):
        return None
    return cols, preds


def body_columns(body: bytes, content_type: str | None) -> dict[str, Any] | None:
    """A request body's input rows by column (None when they are not a table)."""
    mime = (content_type or "application/json").split(";")[0].strip().lower()
    if mime == "text/csv":
        import pyarrow.csv as pacsv

        table = pacsv.read_csv(io.BytesIO(body))
        return {str(n): table.column(n).to_pylist() for n in table.column_names}
    doc = json.loads(body)
    if not isinstance(doc, dict):
        return None
    for fmt in JSON_FORMATS:
        if fmt in doc:
            return input_columns(fmt, doc[fmt])
    return None


def input_columns(fmt: str, value: Any) -> dict[str, Any] | None:
    """The rows of a parsed JSON payload by column (None when they are not a table)."""
    if fmt == "dataframe_split" and isinstance(value, dict):
        names, data = value.get("columns"), value.get("data")
        if not isinstance(names, list) or not isinstance(data, list) or not data:
            return None
        if not all(isinstance(row, list) and len(row) == len(names) for row in data):
            return None
        return {str(n): col for n, col in zip(names, zip(*data, strict=True), strict=True)}
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        keys = dict.fromkeys(k for r in value for k in r)
        return {str(k): [r.get(k) for r in value] for k in keys}
    if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
        return {str(k): v for k, v in value.items()}
    return None


def _table(cfg: RecordingSettings, group: list[tuple[Recorded, dict[str, Any], list[Any]]]) -> Any:
    """The rows of one served version's requests: time, version, inputs, outputs."""
    import numpy as np
    import pyarrow as pa

    first = group[0][0]
    counts = [item.rows for item, _, _ in group]
    total = int(sum(counts))
    micros = np.repeat([int(item.at * 1_000_000) for item, _, _ in group], counts)
    out: dict[str, Any] = {
        live.RECORDED_AT: pa.array(micros, type=pa.timestamp("us", tz="UTC")),
        live.MODEL_VERSION: pa.array([first.version] * total, type=pa.string()),
    }
    for name in cfg["columns"]:
        if any(name in cols for _, cols, _ in group):
            values: list[Any] = []
            for item, cols, _ in group:
                got = cols.get(name)
                values.extend(got if got is not None else (None,) * item.rows)
            out[name] = _arrow(values)
    preds = [p for _, _, ps in group for p in ps]
    arr = np.asarray(preds) if preds and not isinstance(preds[0], dict) else None
    if arr is None or arr.dtype == object or arr.ndim > 2:
        for key in dict.fromkeys(k for p in preds if isinstance(p, dict) for k in p):
            out[str(key)] = _arrow([p.get(key) if isinstance(p, dict) else None for p in preds])
        if arr is not None and arr.ndim == 1:
            out[PREDICTION] = _arrow(preds)
    elif arr.ndim == 1:
        out[PREDICTION] = pa.array(arr)
    else:
        classes = first.classes
        if classes is not None and len(classes) == arr.shape[1]:
            out[PREDICTION] = pa.array(np.asarray(classes)[arr.argmax(axis=1)])
            out.update({n: pa.array(arr[:, i]) for i, n in enumerate(proba_names(list(classes)))})
        else:
            out.update({f"output_{i}": pa.array(arr[:, i]) for i in range(arr.shape[1])})
    return pa.table(out)


def _arrow(values: list[Any]) -> Any:
    """An Arrow array of JSON values; mixed types become strings."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
