"""Adaptive micro-batching: concurrent requests for one served version, one predict call.

Each request's body is read and checked on its own first (JSON, depth, format key, row limit:
a bad request is refused before it meets any other), then queued by served version and by its
columns (`merge_key`: `dataframe_split` or `dataframe_records` with the same columns, every row
complete; a request with `params`, or in another format, is never merged). A batch's payloads
are joined and MLflow builds one frame from them (building a frame costs about what a predict
costs, so this is merged too); the frame is checked (finite numbers) and predicted once. One
batch per queue predicts at a time, in the server's thread pool; the requests that arrive
meanwhile form the next batch (BentoML's adaptive batching), so a lone request waits for
nothing. When other invocations are already in flight (being received or read) the batch also
waits up to `wait_s` for them to join (Triton's `max_queue_delay`), and stops gathering at
`max_rows`.

Answers equal one-by-one predictions bit for bit. Two things could break that, and both are
handled: a failure of the merged frame or call (one request's values fail the parser, the
schema or the model) sends every request of the batch through the whole path on its own, so
errors stay per request and each gets the answer it would get alone; and BLAS computes a
row's dot product with a kernel that depends on the row's position in a block of rows
(OpenBLAS's gemv treats the last `n % 4` rows apart), so every predict call of a batchable
version is padded to a multiple of `ALIGN` rows (the last row repeated, its answers dropped;
in the JSON rows before the frame is built, `pad_payload`, else on the frame). Whether that
makes a version's answers row-stable is checked when it is loaded (`row_stable`, on its golden
rows at several batch sizes); a version that fails the check is served unbatched
(`Served.batchable` False).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from io import StringIO
from typing import Any

import anyio

from airmlops_core.serve.scoring import (
    Payload,
    RequestError,
    predict_parsed,
    row_count,
    to_model_input,
)
from airmlops_core.serve.state import Served

log = logging.getLogger(__name__)

ALIGN = 8
STABLE_SIZES = (1, 2, 3, 5, 9, 16, 33, 64, 257)
DEFAULT_BATCH_WAIT_MS = 2.0
DEFAULT_MAX_BATCH_ROWS = 1024


def merge_key(payload: Payload) -> tuple[Any, ...] | None:
    """What must match for two payloads to be joined into one frame; None: never joined.

    Every row must be complete (a split row as long as the columns, a record with the same keys
    in the same order): joined, a short row would be filled where alone it fails.
    """
    value = payload.value
    if payload.params is not None:
        return None
    if (
        payload.fmt == "dataframe_split"
        and isinstance(value, dict)
        and set(value)
        == {
            "columns",
            "data",
        }
    ):
        columns = value["columns"]
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            return None
        width = len(columns)
        if all(isinstance(row, list) and len(row) == width for row in value["data"]):
            return ("split", tuple(columns))
        return None
    if payload.fmt == "dataframe_records" and isinstance(value, list) and value:
        first = value[0]
        if not isinstance(first, dict):
            return None
        keys = tuple(first)
        if all(isinstance(r, dict) and tuple(r) == keys for r in value):
            return ("records", keys)
    return None


def join(payloads: list[Payload]) -> Payload:
    """Payloads of one merge key as one."""
    first = payloads[0]
    rows = sum(p.rows for p in payloads)
    if first.fmt == "dataframe_split":
        data = [row for p in payloads for row in p.value["data"]]
        return Payload(first.fmt, {"columns": first.value["columns"], "data": data}, None, rows)
    return Payload(first.fmt, [r for p in payloads for r in p.value], None, rows)


def stack_key(data: Any, params: Any) -> tuple[Any, ...] | None:
    """What must match for two parsed inputs to share a frame; None: never merged."""
    import pandas as pd

    if params or not isinstance(data, pd.DataFrame):
        return None
    return tuple(data.columns), tuple(str(t) for t in data.dtypes)


def padded_predict(served: Served, frame: Any) -> Any:
    """Predict `frame` padded to a multiple of ALIGN rows; the answers of its own rows.

    Raises:
        RequestError: the model refused the input (as `scoring.predict_parsed`).
    """
    n = len(frame)
    pad = (-n) % ALIGN
    if pad:
        frame = frame.iloc[list(range(n)) + [n - 1] * pad].reset_index(drop=True)
    raw = predict_parsed(served, frame, None)
    parts = split(raw, [n, pad]) if pad else [raw]
    if parts is None:
        raise RequestError(400, "PREDICT_FAILED", "the model answered a different row count")
    return parts[0]


def split(raw: Any, counts: list[int]) -> list[Any] | None:
    """The answers of consecutive inputs of `counts` rows; None when `raw` is not one per row."""
    import numpy as np
    import pandas as pd

    if not isinstance(raw, np.ndarray | pd.DataFrame | pd.Series | list):
        return None
    if len(raw) != sum(counts):
        return None
    parts, start = [], 0
    for n in counts:
        part = raw[start : start + n]
        if isinstance(raw, pd.DataFrame | pd.Series):
            part = raw.iloc[start : start + n].reset_index(drop=True)
        parts.append(part)
        start += n
    return parts


def row_stable(served: Served, frame: Any) -> bool:
    """Whether each row of `frame` gets the same answer alone and amid others, bit for bit.

    Tried at STABLE_SIZES rows (the rows of `frame` repeated), each padded as the batcher pads.
    """
    import numpy as np
    import pandas as pd

    try:
        alone = [np.asarray(padded_predict(served, frame.iloc[[i]])) for i in range(len(frame))]
        for size in STABLE_SIZES:
            idx = [i % len(frame) for i in range(size)]
            merged = np.asarray(padded_predict(served, frame.iloc[idx].reset_index(drop=True)))
            for row, i in enumerate(idx):
                if not np.array_equal(merged[row : row + 1], alone[i], equal_nan=True):
                    return False
    except (RequestError, ValueError, TypeError, IndexError):
        return False
    return isinstance(frame, pd.DataFrame)


def to_json(raw: Any) -> str:
    """MLflow's scoring-server answer for one request's predictions."""
    from mlflow.pyfunc import scoring_server

    out = StringIO()
    scoring_server.predictions_to_json(raw, out)
    return out.getvalue()


@dataclass
class Job:
    """One checked request waiting for its answer."""

    served: Served
    payload: Payload
    future: asyncio.Future[tuple[str, int]] = field(repr=False)


def pad_payload(payload: Payload) -> tuple[Payload, int]:
    """A joinable payload padded to a multiple of ALIGN rows (its last row repeated), and the
    rows added. Padding the rows before MLflow builds the frame costs nothing extra."""
    pad = (-payload.rows) % ALIGN
    if not pad:
        return payload, 0
    value = payload.value
    if payload.fmt == "dataframe_split":
        data = value["data"] + [value["data"][-1]] * pad
        padded = Payload(payload.fmt, {"columns": value["columns"], "data": data}, None, 0)
    else:
        padded = Payload(payload.fmt, value + [value[-1]] * pad, None, 0)
    return dataclasses.replace(padded, rows=payload.rows + pad), pad


def predict_joined(served: Served, payloads: list[Payload]) -> list[Any] | None:
    """The answers of joinable payloads (one merge key) from one padded frame and one predict;
    None when the answer is not one per row.

    Raises:
        RequestError: the parser, the schema or the model refused the frame.
    """
    counts = [p.rows for p in payloads]
    padded, pad = pad_payload(join(payloads) if len(payloads) > 1 else payloads[0])
    data, _ = to_model_input(padded, served.input_schema)
    if stack_key(data, None) is None or row_count(data) != padded.rows:
        return None
    parts = split(predict_parsed(served, data, None), [*counts, pad] if pad else counts)
    return parts[: len(counts)] if parts is not None else None


def predict_one(job: Job) -> tuple[str, int]:
    """One request on its own, as it would be answered in a batch when it could be in one.

    Raises:
        RequestError: the parser, the schema or the model refused it.
    """
    served, payload = job.served, job.payload
    if served.batchable and merge_key(payload) is not None:
        try:
            parts = predict_joined(served, [payload])
        except RequestError:
            parts = None  # the unpadded path below says what is wrong, as it would alone
        if parts is not None:
            return to_json(parts[0]), payload.rows
    data, params = to_model_input(payload, served.input_schema)
    if served.batchable and stack_key(data, params) is not None:
        raw = padded_predict(served, data)
    else:
        raw = predict_parsed(served, data, params)
    return to_json(raw), row_count(data)


def predict_batch(jobs: list[Job]) -> list[tuple[str, int] | RequestError]:
    """The answers of `jobs` (one served version, one merge key): joined, else one by one."""
    if len(jobs) > 1:
        parts = None
        try:
            parts = predict_joined(jobs[0].served, [job.payload for job in jobs])
        except Exception:  # some request's values: each one alone says whose
            log.debug("merged predict of %d requests failed; one by one", len(jobs))
        if parts is not None:
            pairs = zip(parts, jobs, strict=True)
            return [(to_json(part), job.payload.rows) for part, job in pairs]
    results: list[tuple[str, int] | RequestError] = []
    for job in jobs:
        try:
            results.append(predict_one(job))
        except RequestError as exc:
            results.append(exc)
    return results


class Batcher:
    """Queues parsed requests by served version and frame shape; one predict call per batch.

    Lives in the event loop it is made in (one per worker process). `waiting()` counts the
    invocations in flight that have not reached the batcher (being received or parsed): while
    there are any, a batch waits up to `wait_s` for them.
    """

    def __init__(
        self,
        limiter: anyio.CapacityLimiter,
        *,
        wait_s: float = DEFAULT_BATCH_WAIT_MS / 1000,
        max_rows: int = DEFAULT_MAX_BATCH_ROWS,
        waiting: Callable[[], int] = lambda: 0,
        observe: Callable[[int, int], None] = lambda requests, rows: None,
    ):
        self.limiter = limiter
        self.wait_s = wait_s
        self.max_rows = max_rows
        self.waiting = waiting
        self.observe = observe
        self.submitted = 0  # requests handed to the batcher and not answered yet
        self._queues: dict[tuple[Any, ...], list[Job]] = {}
        self.loop = asyncio.get_running_loop()
        self._arrived = asyncio.Event()

    async def predict(self, served: Served, payload: Payload) -> tuple[str, int]:
        """The JSON answer and row count of one checked request.

        Raises:
            RequestError: the parser, the schema or the model refused this request.
        """
        loop = asyncio.get_running_loop()
        job = Job(served, payload, loop.create_future())
        shape = merge_key(payload) if served.batchable else None
        self.submitted += 1
        try:
            if shape is None:  # alone, as before batching
                self.observe(1, payload.rows)
                return await anyio.to_thread.run_sync(predict_one, job, limiter=self.limiter)
            key = (id(served), shape)
            queue = self._queues.get(key)
            if queue is None:
                self._queues[key] = [job]
                asyncio.create_task(self._drain(key))  # noqa: RUF006 -- it ends with its queue
            else:
                queue.append(job)
            self._arrived.set()
            return await job.future
        finally:
            self.submitted -= 1

    async def _gather(self, queue: list[Job]) -> None:
        """Wait up to wait_s for the invocations still being received or parsed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        while sum(j.payload.rows for j in queue) < self.max_rows and self.waiting() > 0:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                return

    async def _drain(self, key: tuple[Any, ...]) -> None:
        queue = self._queues[key]
        batch: list[Job] = []
        try:
            while queue:
                await self._gather(queue)
                batch, rows = [], 0
                while queue and (not batch or rows + queue[0].payload.rows <= self.max_rows):
                    rows += queue[0].payload.rows
                    batch.append(queue.pop(0))
                self.observe(len(batch), rows)
                try:
                    results: list[Any] = await anyio.to_thread.run_sync(
                        predict_batch, batch, limiter=self.limiter
                    )
                except Exception as exc:  # a bug: every caller of the batch hears it
                    results = [exc] * len(batch)
                for job, result in zip(batch, results, strict=True):
                    if job.future.done():  # the caller went away
                        continue
                    if isinstance(result, BaseException):
                        job.future.set_exception(result)
                    else:
                        job.future.set_result(result)
        finally:
            del self._queues[key]
            for job in batch + queue:  # only unanswered on cancellation
                if not job.future.done():
                    job.future.cancel()
