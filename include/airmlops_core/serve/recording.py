"""Live-traffic recording: a sample of the model API's requests, kept for the online drift check.

The request path only decides (one random draw per request, `sample_rate`) and appends the
raw body it accepted and the answer to a bounded in-process queue: it never waits for a file
and builds no rows. A sender thread passes the queued requests in batches through a pipe to the
worker's recorder process (recorder_process.py), which builds the rows (the spec's input
columns, the row key when the request has one, the outputs as the score DAG names them, the
model version and the time) and publishes them as small Parquet files through the data layer
(record_writer.py; `io.live` names them per process and sequence, so no two processes collide;
`Store.write_bytes` publishes a file whole or not at all). Row building, Parquet encoding and
the garbage they make stay out of the serving process: it keeps its GIL and its collector for
serving. The recorder flushes every `flush_rows` rows or `flush_seconds` seconds, and at
shutdown (its stdin closes once the queue is sent). A request that would take a model's rows
not yet written over `queue_rows` is dropped and counted (`recorded_rows` / `dropped_rows` in
serve.metrics), as are rows a write failed for and rows a recorder process took with it when
it died (`recorder_failed`; the worker starts a new one).
"""

from __future__ import annotations

import json
import logging
import os
import random
import subprocess
import sys
import threading
import time
from collections import deque
from typing import IO, TYPE_CHECKING, Any

from airmlops_core.io import live
from airmlops_core.io.store import Store
from airmlops_core.serve import recorder_process
from airmlops_core.serve.record_writer import (
    FlushOutcome,
    Recorded,
    RecordingSettings,
    RecordWriter,
    store_for,
    worker_id,
)
from airmlops_core.spec import ModelSpec

if TYPE_CHECKING:
    from airmlops_core.serve.metrics import Metrics
    from airmlops_core.serve.state import Served

__all__ = ["Recorder", "RecordingSettings", "recorder_for", "settings_from_spec"]

log = logging.getLogger(__name__)

SEND_EVERY_S = 0.02  # the sender thread's batching interval
RESTART_AFTER_S = 1.0  # the least time between two starts of a recorder process
RECORDER_FAILED = "recorder_failed"


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
    """A recorder of `settings` (None when no model is recorded)."""
    if not settings:
        return None
    return Recorder(settings, store_for(settings), metrics)


class Recorder:
    """Records sampled requests of the configured models; one per worker process.

    `start()` starts the recorder process and the thread that feeds it; without it, `flush()`
    writes what is queued from the calling thread (tests, one-off use).

    Args:
        settings: per model name (`settings_from_spec`); models not in it are not recorded.
        store: the data layer for `flush()` in this process (the recorder process makes its
            own from the settings and the environment).
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
        self.written: list[str] = []
        self._queue: deque[Recorded] = deque()
        self._pending = dict.fromkeys(settings, 0)  # rows queued, sent or buffered, per model
        self._unacked = dict.fromkeys(settings, 0)  # rows sent to the recorder, not reported
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._sender: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None
        self._started_at = -RESTART_AFTER_S
        self._classes: dict[tuple[str, str], tuple[Any, ...] | None] = {}
        self._writer: RecordWriter | None = None  # flush() in this process
        self._stop_timeout = 30.0

    # ------------------------------------------------------------------------------------
    # The request path

    def offer(
        self, served: Served, body: bytes, content_type: str | None, answer: str, rows: int
    ) -> bool:
        """Queue one answered request (its raw body, already checked) when it is sampled;
        never blocks on I/O.

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
                self._count_dropped(served.name, "queue_full", rows)
                return False
            self._pending[served.name] = pending + rows
        self._queue.append(
            Recorded(
                time.time(),
                served.name,
                served.version,
                self.classes(served),  # cached per version
                body,
                content_type,
                answer,
                rows,
            )
        )
        return True

    def classes(self, served: Served) -> tuple[Any, ...] | None:
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
                tuple(c.item() if hasattr(c, "item") else c for c in found) if found else None
            )
        return self._classes[key]

    # ------------------------------------------------------------------------------------
    # Accounting (the caller holds no lock)

    def _count_dropped(self, model: str, reason: str, rows: int) -> None:
        if self.metrics is not None and rows:
            self.metrics.dropped_rows.labels(model=model, reason=reason).inc(rows)

    def _settle(self, outcome: FlushOutcome, *, sent: bool) -> None:
        """Free the queue by a flush's rows, count them, keep its files."""
        with self._lock:
            for model, n in outcome.recorded.items():
                self._pending[model] -= n
                if sent:
                    self._unacked[model] -= n
            for (model, _), n in outcome.dropped.items():
                self._pending[model] -= n
                if sent:
                    self._unacked[model] -= n
            self.written += outcome.files
        if self.metrics is not None:
            for model, n in outcome.recorded.items():
                self.metrics.recorded_rows.labels(model=model).inc(n)
        for (model, reason), n in outcome.dropped.items():
            self._count_dropped(model, reason, n)

    # ------------------------------------------------------------------------------------
    # In this process

    def flush(self, force: bool = False) -> list[str]:
        """Write the queued requests from this thread (when no recorder process runs): each
        model's when it has `flush_rows` rows or `flush_seconds` have passed since its first
        (or `force`). Returns the files written.

        Raises:
            RuntimeError: the recorder process runs (it owns the queue).
        """
        if self._sender is not None:
            raise RuntimeError("live recording: flush() with a recorder process running")
        if self._writer is None:
            self._writer = RecordWriter(self.settings, self.store, worker_id())
        while self._queue:
            self._writer.add(self._queue.popleft())
        outcome = self._writer.flush(force)
        self._settle(outcome, sent=False)
        return outcome.files

    # ------------------------------------------------------------------------------------
    # The recorder process and its feeder

    def start(self) -> None:
        """Start the recorder process and the thread that sends it the queue (once)."""
        if self._sender is None:
            self._spawn()
            self._sender = threading.Thread(
                target=self._send_loop, name="live-recorder", daemon=True
            )
            self._sender.start()

    def stop(self, timeout: float = 30.0) -> None:
        """Send what is queued, let the recorder write it and end; without a recorder
        process, flush here."""
        self._stopping.set()
        if self._sender is None:
            self.flush(force=True)
            return
        self._stop_timeout = timeout
        self._sender.join(timeout + 10)  # the sender waits `timeout` for the recorder at most
        self._sender = None

    @property
    def pid(self) -> int | None:
        """The running recorder process's id (None: none started)."""
        return self._proc.pid if self._proc is not None else None

    def _spawn(self) -> None:
        """Start a recorder process and the thread reading its reports."""
        self._started_at = time.monotonic()
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
        self._proc = subprocess.Popen(
            [sys.executable, "-m", recorder_process.__name__, json.dumps(self.settings)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        assert self._proc.stdout is not None
        self._reader = threading.Thread(
            target=self._read_reports,
            args=(self._proc.stdout,),
            name="live-recorder-reports",
            daemon=True,
        )
        self._reader.start()
        log.info("live recording: recorder process %d started", self._proc.pid)

    def _read_reports(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                doc = json.loads(line)
                outcome = FlushOutcome(
                    files=list(doc["files"]),
                    recorded={str(m): int(n) for m, n in doc["recorded"].items()},
                    dropped={(str(m), str(r)): int(n) for m, r, n in doc["dropped"]},
                )
            except (ValueError, KeyError, TypeError):
                log.warning("live recording: unreadable report from the recorder: %r", line[:200])
                continue
            self._settle(outcome, sent=True)

    def _send_loop(self) -> None:
        while True:
            stopping = self._stopping.wait(SEND_EVERY_S)
            self._send_queued()
            if stopping and not self._queue:
                break
        self._end_recorder(self._stop_timeout)

    def _send_queued(self) -> None:
        items = []
        while self._queue:
            items.append(self._queue.popleft())
        if not items:
            return
        sent: dict[str, int] = {}
        for item in items:
            sent[item.model] = sent.get(item.model, 0) + item.rows
        with self._lock:
            for model, n in sent.items():
                self._unacked[model] += n
        body = b"".join(part for item in items for part in recorder_process.frame(item))
        sink = self._proc.stdin if self._proc is not None else None
        try:
            if sink is None:
                raise OSError("no recorder process")
            sink.write(body)
            sink.flush()
        except (OSError, ValueError):
            self._recorder_failed()

    def _recorder_failed(self) -> None:
        """The recorder process died: count what it held as dropped, start a new one."""
        proc, reader = self._proc, self._reader
        if proc is not None:
            try:
                code = proc.wait(5)
            except subprocess.TimeoutExpired:  # alive, but its input broke: end it
                proc.kill()
                code = proc.wait()
            if reader is not None:
                reader.join()
            log.error("live recording: the recorder process %d ended (exit %s)", proc.pid, code)
        self._drop_unacked()
        wait = RESTART_AFTER_S - (time.monotonic() - self._started_at)
        if wait > 0:
            time.sleep(wait)
        self._spawn()

    def _drop_unacked(self) -> None:
        with self._lock:
            lost = {m: n for m, n in self._unacked.items() if n}
            for model, n in lost.items():
                self._unacked[model] = 0
                self._pending[model] -= n
        for model, n in lost.items():
            self._count_dropped(model, RECORDER_FAILED, n)

    def _end_recorder(self, timeout: float) -> None:
        """Close the recorder's input, wait for its last flush and reports."""
        proc, reader = self._proc, self._reader
        if proc is None:
            return
        try:
            assert proc.stdin is not None
            proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            log.error("live recording: the recorder did not end within %.0f s: killed", timeout)
            proc.kill()
            proc.wait()
        if reader is not None:
            reader.join()
        self._drop_unacked()
        self._proc = self._reader = None
