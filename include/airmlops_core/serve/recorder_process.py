"""The recorder process: one per API worker, it turns recorded requests into Parquet files so
that the serving process spends no CPU, GIL time or garbage-collector work on them.

The worker (recording.Recorder) starts it with `python -m airmlops_core.serve.recorder_process
<settings JSON>` and writes frames to its stdin: a header (`HEADER`: the byte lengths of the
three parts), a small JSON list of the request's facts (time, model, version, class labels,
content type, rows), the raw request body and the JSON answer. The process buffers them in a
`RecordWriter`, flushes every `flush_rows` rows or `flush_seconds`, removes files past their
retention every hour, and reports each flush on stdout as one JSON line (`{"files": [...],
"recorded": {model: rows}, "dropped": [[model, reason, rows], ...]}`), which the worker turns
into its metrics and frees its queue by. It runs at a lower priority (`NICE`) than serving, and
ends when its stdin closes (the worker stopping, or dying), after writing everything it holds:
it ignores SIGINT and SIGTERM, so a Ctrl-C or a stop signal sent to the whole process group
does not cut a flush short.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import IO

from airmlops_core import settings
from airmlops_core.io import live
from airmlops_core.serve.record_writer import (
    FlushOutcome,
    Recorded,
    RecordingSettings,
    RecordWriter,
    store_for,
    worker_id,
)

log = logging.getLogger(__name__)

HEADER = struct.Struct("<III")  # lengths of the facts, the body, the answer
NICE = 10  # a lower CPU priority than the serving process's (0)
PRUNE_EVERY_S = 3600.0


def frame(item: Recorded) -> list[bytes]:
    """The parts of one request's frame (joined by the caller, with other frames)."""
    facts = json.dumps(
        [item.at, item.model, item.version, item.classes, item.content_type, item.rows]
    ).encode()
    answer = item.answer.encode() if isinstance(item.answer, str) else item.answer
    return [HEADER.pack(len(facts), len(item.body), len(answer)), facts, item.body, answer]


def read_frames(stream: IO[bytes]) -> Iterator[Recorded]:
    """The requests framed on `stream`, until it ends (a cut-off last frame is ignored)."""
    while True:
        head = stream.read(HEADER.size)
        if len(head) < HEADER.size:
            return
        n_facts, n_body, n_answer = HEADER.unpack(head)
        rest = stream.read(n_facts + n_body + n_answer)
        if len(rest) < n_facts + n_body + n_answer:
            return
        at, model, version, classes, content_type, rows = json.loads(rest[:n_facts])
        yield Recorded(
            at=at,
            model=model,
            version=version,
            classes=tuple(classes) if classes is not None else None,
            body=rest[n_facts : n_facts + n_body],
            content_type=content_type,
            answer=rest[n_facts + n_body :],
            rows=rows,
        )


def report_line(outcome: FlushOutcome) -> bytes:
    """One flush's report, as the worker reads it."""
    body = {
        "files": outcome.files,
        "recorded": outcome.recorded,
        "dropped": [[m, reason, n] for (m, reason), n in outcome.dropped.items()],
    }
    return json.dumps(body).encode() + b"\n"


def run(settings: dict[str, RecordingSettings], source: IO[bytes], reports: IO[bytes]) -> None:
    """Record the frames of `source` until it ends, reporting each flush on `reports`."""
    import pyarrow.parquet  # noqa: F401  # loaded once at start, not in the first flush

    writer = RecordWriter(settings, store_for(settings), worker_id())
    inbox: queue.SimpleQueue[Recorded | None] = queue.SimpleQueue()

    def read() -> None:
        try:
            for item in read_frames(source):
                inbox.put(item)
        finally:
            inbox.put(None)

    threading.Thread(target=read, name="recorder-input", daemon=True).start()
    pruned_at = -PRUNE_EVERY_S

    def report(outcome: FlushOutcome) -> None:
        if outcome.files or outcome.recorded or outcome.dropped:
            reports.write(report_line(outcome))
            reports.flush()

    while True:
        wait = writer.seconds_to_due()
        try:
            item = inbox.get(timeout=PRUNE_EVERY_S if wait is None else max(wait, 0.001))
        except queue.Empty:
            pass  # a buffer is due
        else:
            if item is None:
                break
            if item.model in settings:
                writer.add(item)
        report(writer.flush())
        if time.monotonic() - pruned_at >= PRUNE_EVERY_S:
            pruned_at = time.monotonic()
            prune(writer)
    report(writer.flush(force=True))


def prune(writer: RecordWriter) -> None:
    """Remove every recorded model's files past their retention (a failure is logged)."""
    now = dt.datetime.now(dt.UTC)
    for cfg in writer.settings.values():
        try:
            live.prune(writer.store, cfg["base"], cfg["retention_days"], now)
        except Exception:
            log.exception("live recording: pruning %s failed", cfg["base"])


def main(argv: list[str] | None = None) -> int:
    """Entry point: settings JSON as the one argument; frames on stdin, reports on stdout."""
    args = sys.argv[1:] if argv is None else argv
    logging.basicConfig(
        level=settings.current().recorder_log_level,
        format="%(asctime)s %(levelname)s %(name)s[%(process)d]: %(message)s",
    )
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        os.nice(NICE)
    except OSError:  # not allowed here: same priority
        pass
    recordings: dict[str, RecordingSettings] = json.loads(args[0])
    reports = os.fdopen(os.dup(1), "wb")  # the report channel; anything printed goes to stderr
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    run(recordings, sys.stdin.buffer, reports)
    return 0


if __name__ == "__main__":
    sys.exit(main())
