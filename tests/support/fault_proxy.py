"""Fault injection for tests: a killable, restartable MLflow server behind a faulty proxy.

``KillableMlflowServer`` runs a real ``mlflow server`` (SQLite backend, served artifacts) on one
loopback port and one data directory that both survive restarts. ``kill()`` sends SIGKILL to
the whole process group, like a crashed host; ``start()`` brings it back on the same port.

The first start is the real ``mlflow server`` command (``mlflow_server.MlflowServer``). A
restart replays exactly the worker that command launched (same uvicorn arguments, same
environment, read back with psutil): it is forked from a "zygote" process that imported the
server's modules once and nothing else (no thread, no open database), so a restart costs about
a second instead of two full MLflow imports (10-30 s on two busy cores). Pass
``fast_restart=False`` to run the real command every time.

``FaultProxy`` is a loopback HTTP reverse proxy in front of it; clients only know the proxy's
URL. Armed with ``Fault``s, on the Nth request matching (method, path regex[, body regex]) it:

- ``KILL_BEFORE``: kills the server, the request never reaches it;
- ``KILL_MID_BODY``: sends the headers and part of the body (a broken upload), then kills;
- ``KILL_AFTER``: forwards, receives the server's answer, kills the server and drops the
  answer (the change is stored, the client never hears of it);
- ``DROP_RESPONSE``: forwards and drops the answer, the server stays up (a lost response,
  which the MLflow client's own HTTP retry then repeats).

A client whose request is dropped, or that reaches the proxy while the server is down, sees
its connection closed without an answer. ``on_response`` is called after the server answered
each state-changing request and before the client gets the answer, so a test can look at
every intermediate state a reader could see.
"""

from __future__ import annotations

import json
import logging
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Self

import psutil

from airmlops_dev import process_group
from airmlops_dev.ports import LOOPBACK
from mlflow_server import MlflowServer

log = logging.getLogger(__name__)

MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)

# Runs in the zygote: import the server once, then fork one server per line read on stdin.
_ZYGOTE = r"""
import json, os, signal, sys, uuid
argv = json.loads(sys.argv[1])
import uvicorn.main
import mlflow.server.fastapi_app  # noqa: F401  - the expensive import, paid once
signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps killed servers
print("ready", flush=True)
for line in sys.stdin:
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            out = os.open(line.strip(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.dup2(out, 1)
            os.dup2(out, 2)
            os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
            os.environ["_MLFLOW_SERVER_BOOT_ID"] = uuid.uuid4().hex
            uvicorn.main.main(args=argv, prog_name="uvicorn")
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        finally:
            os._exit(code)
    print(pid, flush=True)
"""


class KillableMlflowServer(MlflowServer):
    """A real MLflow server on a fixed port and data directory, killable and restartable.

    `stop()` kills it too (SIGKILL to its process group); `close()` also ends the zygote.

    Args:
        root: Holds mlflow.db, artifacts/ and server.log; kept across restarts.
        port: The loopback port, kept across restarts (a free one when None).
        fast_restart: Restart by forking the captured worker from a zygote (see module doc).
        timeout: Seconds to wait until /health answers.
    """

    STOP_SIGNAL = signal.SIGKILL
    READY_POLL = 0.1

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        *,
        fast_restart: bool = True,
        timeout: float = 180.0,
    ) -> None:
        super().__init__(root, port, startup_timeout=timeout)
        self.fast_restart = fast_restart
        self.starts = 0
        self.kills = 0
        self.start_seconds: list[float] = []
        self._lock = threading.RLock()
        self._from_cli = False
        self._zygote: subprocess.Popen[str] | None = None
        self._zygote_ready = threading.Event()

    def alive(self) -> bool:
        """Whether a server process of ours is running (it may still be booting)."""
        with self._lock:
            return self.running()

    def launch(self) -> int:
        """Fork the server from the zygote when it is ready, else run the real command."""
        self._from_cli = not (
            self.fast_restart
            and self._zygote is not None
            and self._zygote_ready.wait(self.startup_timeout)
        )
        return super().launch() if self._from_cli else self._fork_server()

    def start(self) -> Self:
        """Start the server and wait until /health answers."""
        with self._lock:
            t0 = time.monotonic()
            super().start()
            self.starts += 1
            self.start_seconds.append(time.monotonic() - t0)
            if self.fast_restart and self._zygote is None and self._from_cli:
                self._launch_zygote()
            return self

    def kill(self) -> None:
        """SIGKILL the server's whole process group and wait until it is gone."""
        with self._lock:
            super().kill()
            self.kills += 1

    def close(self) -> None:
        """Kill the server and the zygote."""
        with self._lock:
            super().close()
            zygote, self._zygote = self._zygote, None
            if zygote is not None:
                if zygote.stdin:
                    try:
                        zygote.stdin.close()
                    except OSError:  # it died already
                        pass
                process_group.terminate({zygote.pid}, 30.0, signal.SIGKILL)
                zygote.wait(timeout=30)

    def _fork_server(self) -> int:
        """Have the zygote fork a server (in a session of its own); return its PID."""
        assert self._zygote is not None
        assert self._zygote.stdin is not None
        assert self._zygote.stdout is not None
        self._zygote.stdin.write(f"{self.log_path}\n")
        self._zygote.stdin.flush()
        return int(self._zygote.stdout.readline())

    def _launch_zygote(self) -> None:
        """Read back the worker the real command started and prepare to replay it."""
        assert self.pid is not None
        try:
            workers = [
                p
                for p in psutil.Process(self.pid).children()
                if any("uvicorn" in arg for arg in p.cmdline())
            ]
            if len(workers) != 1:
                raise psutil.NoSuchProcess(self.pid)
            argv, env = workers[0].cmdline(), workers[0].environ()
        except psutil.Error:
            log.warning("cannot find the uvicorn worker of %s: restarts use the CLI", self.pid)
            self.fast_restart = False
            return
        uvicorn_args = argv[argv.index("uvicorn") + 1 :]
        self._zygote = subprocess.Popen(
            [sys.executable, "-c", _ZYGOTE, json.dumps(uvicorn_args)],
            env=env,
            text=True,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        zygote = self._zygote

        def wait_ready() -> None:
            assert zygote.stdout is not None
            if zygote.stdout.readline().strip() == "ready":
                self._zygote_ready.set()

        threading.Thread(target=wait_ready, daemon=True).start()


class Action(Enum):
    """What the proxy does to the request a fault matches."""

    KILL_BEFORE = "kill before forwarding"
    KILL_MID_BODY = "kill mid body"
    KILL_AFTER = "kill after the answer, answer lost"
    DROP_RESPONSE = "answer lost, server up"


@dataclass
class Fault:
    """Act on the `nth` request (counted from arming) matching method, path and body.

    `path` and `body` are regular expressions searched in the request path (with query) and in
    the body decoded as UTF-8. For KILL_MID_BODY, `body_fraction` of the body is sent.
    """

    method: str
    path: str
    action: Action
    nth: int = 1
    body: str | None = None
    body_fraction: float = 0.5
    seen: int = 0
    fired: threading.Event = field(default_factory=threading.Event)
    fired_on: str = ""

    def matches(self, method: str, path: str, body: bytes) -> bool:
        if method != self.method or not re.search(self.path, path):
            return False
        return (
            self.body is None or re.search(self.body, body.decode("utf-8", "replace")) is not None
        )


@dataclass(frozen=True)
class ProxyEvent:
    """One request seen by the proxy and what became of it."""

    method: str
    path: str
    outcome: str  # an HTTP status, "dropped: <action>" or "server down"


class FaultProxy:
    """A loopback reverse proxy to `server` that injects the armed faults.

    Args:
        server: The MLflow server behind the proxy (killed by the kill actions).
        on_response: Called as (method, path, status) after the server answered a
            state-changing request, before the client gets the answer.
    """

    def __init__(
        self,
        server: KillableMlflowServer,
        *,
        on_response: Callable[[str, str, int], None] | None = None,
        upstream_timeout: float = 60.0,
    ) -> None:
        self.server = server
        self.on_response = on_response
        self.upstream_timeout = upstream_timeout
        self.events: list[ProxyEvent] = []
        self._faults: list[Fault] = []
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((LOOPBACK, 0), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.fault_proxy = self  # type: ignore[attr-defined]
        self.url = f"http://{LOOPBACK}:{self._httpd.server_address[1]}"
        self._thread: threading.Thread | None = None

    def __enter__(self) -> FaultProxy:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread = None
        self._httpd.server_close()

    def arm(self, *faults: Fault) -> tuple[Fault, ...]:
        """Add faults; each counts matching requests from now and fires once."""
        with self._lock:
            self._faults.extend(faults)
        return faults

    def disarm(self) -> list[Fault]:
        """Remove every fault; returns them (see `fired`)."""
        with self._lock:
            out, self._faults = self._faults, []
        return out

    def _pick(self, method: str, path: str, body: bytes) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.fired.is_set() or not fault.matches(method, path, body):
                    continue
                fault.seen += 1
                if fault.seen == fault.nth:
                    fault.fired_on = f"{method} {path}"
                    fault.fired.set()
                    return fault
        return None

    def _record(self, method: str, path: str, outcome: str) -> None:
        with self._lock:
            self.events.append(ProxyEvent(method, path, outcome))

    def handle(self, h: _Handler) -> None:
        method, path = h.command, h.path
        body = _read_body(h)
        fault = self._pick(method, path, body)
        action = fault.action if fault else None
        if action is Action.KILL_BEFORE:
            self.server.kill()
            return self._drop(h, method, path, f"dropped: {action.value}")
        headers = [(k, v) for k, v in h.headers.items() if k.lower() not in _HOP_BY_HOP]
        conn = HTTPConnection(LOOPBACK, self.server.port, timeout=self.upstream_timeout)
        try:
            conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
            conn.putheader("Host", f"{LOOPBACK}:{self.server.port}")
            for key, value in headers:
                conn.putheader(key, value)
            if body or method in MUTATING:
                conn.putheader("Content-Length", str(len(body)))
            conn.putheader("Connection", "close")
            if action is Action.KILL_MID_BODY:
                assert fault is not None
                conn.endheaders(body[: max(1, int(len(body) * fault.body_fraction))])
                time.sleep(0.3)  # let the server start reading the upload
                self.server.kill()
                return self._drop(h, method, path, f"dropped: {action.value}")
            conn.endheaders(body or None)  # one send: no Nagle / delayed-ACK stall
            resp = conn.getresponse()
            data = resp.read()
        except OSError:
            return self._drop(h, method, path, "server down")
        finally:
            conn.close()
        if self.on_response is not None and method in MUTATING:
            self.on_response(method, path, resp.status)
        if action is Action.KILL_AFTER:
            self.server.kill()
        if action in (Action.KILL_AFTER, Action.DROP_RESPONSE):
            assert action is not None
            return self._drop(h, method, path, f"dropped: {action.value}")
        self._record(method, path, str(resp.status))
        h.send_response_only(resp.status, resp.reason)
        for key, value in resp.getheaders():
            if key.lower() not in _HOP_BY_HOP:
                h.send_header(key, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        if method != "HEAD":
            h.wfile.write(data)
        return None

    def _drop(self, h: _Handler, method: str, path: str, outcome: str) -> None:
        """Close the client's connection without an answer (reset, as from a dead peer)."""
        self._record(method, path, outcome)
        h.close_connection = True
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes

    def _proxy(self) -> None:
        self.server.fault_proxy.handle(self)  # type: ignore[attr-defined]

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _proxy

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
        log.debug("proxy: " + format, *args)


def _read_body(h: BaseHTTPRequestHandler) -> bytes:
    """The whole request body, from Content-Length or chunked transfer encoding."""
    if h.headers.get("Transfer-Encoding", "").lower() == "chunked":
        parts: list[bytes] = []
        while True:
            size = int(h.rfile.readline().split(b";")[0].strip(), 16)
            if size == 0:
                while h.rfile.readline() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(parts)
            parts.append(h.rfile.read(size))
            h.rfile.readline()
    length = int(h.headers.get("Content-Length") or 0)
    return h.rfile.read(length) if length else b""
