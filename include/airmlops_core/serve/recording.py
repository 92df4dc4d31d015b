"""Live-traffic recording: a sample of the model API's requests, kept for the online drift check.

The request path only decides (one random draw per request, `sample_rate`) and appends the
already-read payload and the answer to a bounded in-process queue: it never waits for a file.
A background thread turns queued requests into rows (the spec's input columns, the row key
when the request has one, the outputs as the score DAG names them, the model version and the
time) and publishes them as small Parquet files through the data layer (`io.live` names them
per worker process and sequence, so no two workers collide; `Store.write_bytes` publishes a
file whole or not at all). It flushes every `flush_rows` rows or `flush_seconds` seconds, and
at shutdown. A request that would take a model's queued rows over `queue_rows` is dropped and
counted (`recorded_rows` / `dropped_rows` in serve.metrics), as are rows a write failed for.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import random
import re
import secrets
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypedDict

from airmlops_core.io import live
from airmlops_core.io.scored import proba_names
from airmlops_core.io.store import Store
from airmlops_core.spec import ModelSpec

if TYPE_CHECKING:
    from airmlops_core.serve.metrics import Metrics
    from airmlops_core.serve.scoring import Payload
    from airmlops_core.serve.state import Served

log = logging.getLogger(__name__)

PREDICTION = "prediction"
PRUNE_EVERY_S = 3600.0


class RecordingSettings(TypedDict):
    """One model's recording, as handed to worker processes (JSON)."""

    model: str
    base: str
    sample_rate: float
    retention_days: int
    flush_rows: int
    flush_seconds: float
    queue_rows: int
    columns: list[str]


def settings_from_spec(spec: ModelSpec, work_uri: str | None = None) -> RecordingSettings | None:
    """The recording of `spec`'s model (None: `monitoring.live` unset or its rate 0)."""
    cfg = spec.monitoring.live
    if cfg is None or cfg.sample_rate <= 0:
        return None
    keep = ([spec.row_key] if spec.row_key else []) + [
        c for c in spec.columns if c != spec.target and c != spec.row_key
    ]
    return {
        "model": spec.name,
        "base": live.live_base(spec.name, work_uri),
        "sample_rate": cfg.sample_rate,
        "retention_days": cfg.retention_days,
        "flush_rows": cfg.flush_rows,
        "flush_seconds": cfg.flush_seconds,
        "queue_rows": cfg.queue_rows,
        "columns": list(dict.fromkeys(keep)),
    }


def recorder_for(
    settings: dict[str, RecordingSettings], metrics: Metrics | None = None
) -> Recorder | None:
    """A recorder of `settings` (None when no model is recorded). A base on S3 is reached
    through $AWS_ENDPOINT_URL and the default credential chain (the AWS_* variables)."""
    from airmlops_core.io.data import is_s3
    from airmlops_core.io.store import S3Settings

    if not settings:
        return None
    s3 = None
    if any(is_s3(s["base"]) for s in settings.values()):
        s3 = S3Settings(
            endpoint_url=os.environ.get("AWS_ENDPOINT_URL") or None,
            region=os.environ.get("AWS_DEFAULT_REGION") or None,
        )
    return Recorder(settings, Store(s3), metrics)


def worker_id() -> str:
    """This process's part of its file names: host, pid and a random part."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "_", socket.gethostname())[:40] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class _Item:
    at: float
    served: Served
    payload: Payload
    answer: str
    rows: int


@dataclass
class _Buffer:
    items: list[_Item] = field(default_factory=list)
    rows: int = 0
    since: float = field(default_factory=time.monotonic)


class Recorder:
    """Records sampled requests of the configured models; one per worker process.

    Args:
        settings: per model name (`settings_from_spec`); models not in it are not recorded.
        store: the data layer the files go through.
        metrics: the API's metrics (recorded and dropped rows); None: not counted.
        rng: the sampling draws (a seeded one in tests).
    """

    def __init__(
        self,
        settings: dict[str, RecordingSettings],
        store: Store,
        metrics: Metrics | None = None,
        *,
        rng: random.Random | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.metrics = metrics
        self.rng = rng or random.Random()
        self.worker = worker_id()
        self.seq = 0
        self.written: list[str] = []
        self._queue: deque[_Item] = deque()
        self._pending = dict.fromkeys(settings, 0)  # rows queued or buffered, per model
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._classes: dict[tuple[str, str], list[Any] | None] = {}
        self._pruned_at = -PRUNE_EVERY_S
        self._buffers: dict[str, _Buffer] = {}  # the flushing thread's only

    # ------------------------------------------------------------------------------------
    # The request path

    def offer(self, served: Served, payload: Payload, answer: str, rows: int) -> bool:
        """Queue one answered request when it is sampled; never blocks on I/O.

        Returns:
            Whether it was queued (False: not sampled, not recorded, or dropped).
        """
        cfg = self.settings.get(served.name)
        if cfg is None or self._stopping.is_set():
            return False
        if cfg["sample_rate"] < 1.0 and self.rng.random() >= cfg["sample_rate"]:
            return False
        with self._lock:
            pending = self._pending[served.name]
            if pending + rows > cfg["queue_rows"]:
                self._dropped(served.name, rows, "queue_full")
                return False
            self._pending[served.name] = pending + rows
        self._queue.append(_Item(time.time(), served, payload, answer, rows))
        if pending + rows >= cfg["flush_rows"]:
            self._wake.set()
        return True

    def _dropped(self, model: str, rows: int, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.dropped_rows.labels(model=model, reason=reason).inc(rows)

    # ------------------------------------------------------------------------------------
    # The background thread

    def start(self) -> None:
        """Start the flushing thread (once)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="live-recorder", daemon=True)
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Flush what is queued and stop the thread."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None
        else:
            self.flush(force=True)

    def _run(self) -> None:
        tick = min(s["flush_seconds"] for s in self.settings.values())
        while not self._stopping.is_set():
            self._wake.wait(tick)
            self._wake.clear()
            self._safely(self.flush)
            if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
                self._safely(self.prune)
        self._safely(lambda: self.flush(force=True))

    def _safely(self, step: Any) -> None:
        try:
            step()
        except Exception:  # a recorder fault must never take the API down
            log.exception("live recording: %s failed", getattr(step, "__name__", "a step"))

    def prune(self) -> None:
        """Remove every recorded model's files past their retention."""
        self._pruned_at = time.monotonic()
        now = dt.datetime.now(dt.UTC)
        for cfg in self.settings.values():
            live.prune(self.store, cfg["base"], cfg["retention_days"], now)

    def flush(self, force: bool = False) -> list[str]:
        """Write each model's queued rows when there are `flush_rows` of them, or
        `flush_seconds` have passed since its last file (or `force`). Returns the files."""
        buffers = self._buffers
        while self._queue:
            item = self._queue.popleft()
            buf = buffers.setdefault(item.served.name, _Buffer())
            buf.items.append(item)
            buf.rows += item.rows
        written = []
        for model, buf in list(buffers.items()):
            cfg = self.settings[model]
            due = time.monotonic() - buf.since >= cfg["flush_seconds"]
            if not buf.items or not (force or due or buf.rows >= cfg["flush_rows"]):
                continue
            del buffers[model]
            try:
                uri = self._write(cfg, buf.items)
            except Exception:
                log.exception("live recording: %d rows of %s not written", buf.rows, model)
                self._dropped(model, buf.rows, "write_failed")
                uri = None
            finally:
                with self._lock:
                    self._pending[model] -= buf.rows
            if uri is not None:
                written.append(uri)
                if self.metrics is not None:
                    self.metrics.recorded_rows.labels(model=model).inc(buf.rows)
        self.written += written
        return written

    def _write(self, cfg: RecordingSettings, items: list[_Item]) -> str | None:
        """One Parquet file of `items` (built column by column in Arrow: no frame per
        request), published atomically; None when none of them could be recorded."""
        import io

        import pyarrow as pa
        import pyarrow.parquet as pq

        groups: dict[str, list[tuple[_Item, dict[str, list[Any]], list[Any]]]] = {}
        for item in items:
            cols = input_columns(item.payload)
            answer = json.loads(item.answer)
            preds = answer.get("predictions") if isinstance(answer, dict) else answer
            if (
                cols is None
                or not isinstance(preds, list)
                or len(preds) != item.rows
                or any(len(v) != item.rows for v in cols.values())
            ):
                self._dropped(cfg["model"], item.rows, "unsupported")
                continue
            groups.setdefault(item.served.version, []).append((item, cols, preds))
        if not groups:
            return None
        tables = [self._table(cfg, group) for group in groups.values()]
        table = (
            pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        )
        sink = io.BytesIO()
        pq.write_table(table, sink)
        self.seq += 1
        last = dt.datetime.fromtimestamp(items[-1].at, dt.UTC).date()
        uri = live.file_uri(cfg["base"], last, self.worker, self.seq)
        return self.store.write_bytes(uri, sink.getvalue())

    def _table(
        self, cfg: RecordingSettings, group: list[tuple[_Item, dict[str, list[Any]], list[Any]]]
    ) -> Any:
        """The rows of one served version's requests: time, version, inputs, outputs."""
        import numpy as np
        import pyarrow as pa

        served = group[0][0].served
        counts = [item.rows for item, _, _ in group]
        micros = np.repeat([int(item.at * 1_000_000) for item, _, _ in group], counts)
        out: dict[str, Any] = {
            live.RECORDED_AT: pa.array(micros, type=pa.timestamp("us", tz="UTC")),
            live.MODEL_VERSION: pa.array([served.version] * int(sum(counts)), type=pa.string()),
        }
        for name in cfg["columns"]:
            if any(name in cols for _, cols, _ in group):
                values: list[Any] = []
                for item, cols, _ in group:
                    values.extend(cols.get(name) or [None] * item.rows)
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
            classes = self.classes(served)
            if classes is not None and len(classes) == arr.shape[1]:
                out[PREDICTION] = pa.array(np.asarray(classes)[arr.argmax(axis=1)])
                out.update({n: pa.array(arr[:, i]) for i, n in enumerate(proba_names(classes))})
            else:
                out.update({f"output_{i}": pa.array(arr[:, i]) for i in range(arr.shape[1])})
        return pa.table(out)

    def classes(self, served: Served) -> list[Any] | None:
        """The class labels of a classifier's probability columns (None: unknown)."""
        key = (served.name, served.version)
        if key not in self._classes:
            found = None
            try:
                raw = served.model.get_raw_model()
                found = list(raw.classes_) if hasattr(raw, "classes_") else None
            except Exception:  # not every flavor exposes its model
                found = None
            self._classes[key] = (
                [c.item() if hasattr(c, "item") else c for c in found] if found else None
            )
        return self._classes[key]


def input_columns(payload: Payload) -> dict[str, list[Any]] | None:
    """The request's input rows by column (None when they are not a table)."""
    value = payload.value
    if payload.fmt == "csv":
        return {str(c): value[c].tolist() for c in value.columns}
    if payload.fmt == "dataframe_split" and isinstance(value, dict):
        names, data = value.get("columns"), value.get("data")
        if not isinstance(names, list) or not isinstance(data, list) or not data:
            return None
        if not all(isinstance(row, list) and len(row) == len(names) for row in data):
            return None
        return {str(n): list(col) for n, col in zip(names, zip(*data, strict=True), strict=True)}
    if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
        keys = dict.fromkeys(k for r in value for k in r)
        return {str(k): [r.get(k) for r in value] for k in keys}
    if isinstance(value, dict) and all(isinstance(v, list) for v in value.values()):
        return {str(k): list(v) for k, v in value.items()}
    return None


def _arrow(values: list[Any]) -> Any:
    """An Arrow array of JSON values; mixed types become strings."""
    import pyarrow as pa

    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())
