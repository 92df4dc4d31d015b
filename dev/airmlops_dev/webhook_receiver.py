"""A local stand-in for Slack's incoming webhooks, for the embedded stack and the tests.

Every POST (any path) is recorded as one JSON line ``{"received_at", "path", "status", "body"}``
appended to a JSON-lines file, and answered like Slack answers (200 ``ok``). ``body`` is the parsed
JSON payload when the request carries JSON (or a form field ``payload=<json>``), else the raw text;
``status`` is the HTTP status answered (0 in ``hang`` mode). Attempts are recorded in every mode.

Other endpoints:
    GET /health    200 ``ok`` (in every mode, so the stack can health-check it).
    GET /messages  the recorded messages as a JSON list.
    PUT /mode      switch the failure mode at runtime; the request body is the mode name.

Failure modes, for testing how alerting copes with a broken Slack:
    ok            200 ``ok`` (default)
    error500      500 ``internal_error``
    ratelimit429  429 ``rate_limited`` with ``Retry-After: 1``
    hang          never answers (the connection stays open until the client gives up)

Run it with ``python -m airmlops_dev.webhook_receiver --port 8099 --out messages.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

log = logging.getLogger(__name__)

MODES = ("ok", "error500", "ratelimit429", "hang")
MAX_BODY_BYTES = 10 * 1024 * 1024


def parse_body(raw: bytes, content_type: str = "") -> Any:
    """Decode a webhook request body the way Slack accepts it.

    Args:
        raw: The request body.
        content_type: The request's Content-Type header.

    Returns:
        The parsed JSON value, the parsed ``payload`` form field, or the raw text.
    """
    text = raw.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "application/x-www-form-urlencoded" in content_type:
        payload = parse_qs(text).get("payload")
        if payload:
            try:
                return json.loads(payload[0])
            except ValueError:
                return payload[0]
    return text


def read_messages(path: str | Path) -> list[dict[str, Any]]:
    """Read the messages recorded by a receiver.

    Args:
        path: The receiver's JSON-lines file.

    Returns:
        The recorded messages, oldest first; an empty list when nothing was recorded yet. A line
        being written concurrently (incomplete JSON) is skipped.
    """
    p = Path(path)
    if not p.exists():
        return []
    messages: list[dict[str, Any]] = []
    with p.open(encoding="utf-8") as fh:
        for line in fh:
            line = line.strip()
            if not line:
                continue
            try:
                messages.append(json.loads(line))
            except ValueError:
                continue
    return messages


class ReceiverServer(ThreadingHTTPServer):
    """A threading HTTP server that records webhook posts to a JSON-lines file."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], out: str | Path, mode: str = "ok") -> None:
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self.out = Path(out)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.mode = mode
        self.write_lock = threading.Lock()
        self.stopping = threading.Event()
        super().__init__(address, ReceiverHandler)

    @property
    def url(self) -> str:
        """The base URL the server listens on."""
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def record(self, path: str, body: Any, status: int) -> dict[str, Any]:
        """Append one message to the output file and flush it."""
        entry = {
            "received_at": datetime.now(UTC).isoformat(),
            "path": path,
            "status": status,
            "body": body,
        }
        line = json.dumps(entry, ensure_ascii=False, default=str) + "\n"
        with self.write_lock, self.out.open("a", encoding="utf-8") as fh:
            fh.write(line)
            fh.flush()
        return entry

    def server_close(self) -> None:
        """Release hanging handlers, then close the socket."""
        self.stopping.set()
        super().server_close()


class ReceiverHandler(BaseHTTPRequestHandler):
    """Request handler; see the module docstring for the endpoints."""

    server: ReceiverServer
    server_version = "airmlops-webhook-receiver"
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        log.info("%s %s", self.address_string(), format % args)

    def _reply(
        self, status: int, body: str, content_type: str = "text/plain", headers: dict | None = None
    ) -> None:
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", f"{content_type}; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        if length > MAX_BODY_BYTES:
            raise ValueError("body too large")
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/health":
            self._reply(200, "ok")
        elif path == "/messages":
            self._reply(
                200, json.dumps(read_messages(self.server.out)), content_type="application/json"
            )
        else:
            self._reply(404, "not_found")

    def do_PUT(self) -> None:
        body = self._read_body().decode("utf-8", errors="replace").strip()
        if self.path.split("?", 1)[0] != "/mode":
            self._reply(404, "not_found")
        elif body not in MODES:
            self._reply(400, f"unknown mode {body!r}; expected one of {', '.join(MODES)}")
        else:
            self.server.mode = body
            log.info("mode set to %s", body)
            self._reply(200, body)

    def do_POST(self) -> None:
        try:
            raw = self._read_body()
        except ValueError:
            self._reply(413, "too_large")
            return
        body = parse_body(raw, self.headers.get("Content-Type", ""))
        mode = self.server.mode
        status = {"ok": 200, "error500": 500, "ratelimit429": 429, "hang": 0}[mode]
        self.server.record(self.path, body, status)
        if mode == "ok":
            self._reply(200, "ok", content_type="text/html")
        elif mode == "error500":
            self._reply(500, "internal_error")
        elif mode == "ratelimit429":
            self._reply(429, "rate_limited", headers={"Retry-After": "1"})
        else:  # hang: keep the connection open without answering
            self.server.stopping.wait()
            self.close_connection = True


def serve(host: str, port: int, out: str | Path, mode: str = "ok") -> ReceiverServer:
    """Create a bound receiver (call ``serve_forever`` on it, or run it in a thread).

    Args:
        host: The interface to bind, normally 127.0.0.1.
        port: The port; 0 picks a free one (read it back from ``server.server_address``).
        out: The JSON-lines file messages are appended to.
        mode: One of ``MODES``.

    Returns:
        The bound server.
    """
    return ReceiverServer((host, port), out, mode)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8099)
    parser.add_argument("--out", required=True, help="JSON-lines file to append messages to")
    parser.add_argument("--mode", choices=MODES, default="ok")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")

    server = serve(args.host, args.port, args.out, args.mode)

    def _stop(signum: int, _frame: object) -> None:
        log.info("signal %s: shutting down", signum)
        server.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    log.info("listening on %s, mode %s, writing to %s", server.url, args.mode, args.out)
    try:
        server.serve_forever(poll_interval=0.5)
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
