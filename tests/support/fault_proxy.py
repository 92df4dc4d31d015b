"""Fault injection for tests: a killable, restartable MLflow server behind a faulty proxy.

``MlflowServer`` runs a real ``mlflow server`` (SQLite backend, served artifacts) on one
loopback port and one data directory that both survive restarts. ``kill()`` sends SIGKILL to
the whole process group, like a crashed host; ``start()`` brings it back on the same port.

The first start is the real ``mlflow server`` command (``airmlops_dev.mlflow_server``). A
restart replays exactly the worker that command launched (same uvicorn arguments, same
environment, read back from /proc): it is forked from a "zygote" process that imported the
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
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from http.client import HTTPConnection
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from airmlops_dev.mlflow_server import SERVER_ENV, server_argv
from airmlops_dev.ports import LOOPBACK, free_ports

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


def _children(pid: int) -> list[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # the command name is in parentheses and may contain spaces: parse after the last ')'
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(fields[1]) == pid:
            found.append(int(entry.name))
    return found


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:  # a zombie still answers kill(0): look at its state
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


class MlflowServer:
    """A real MLflow server on a fixed port and data directory, killable and restartable.

    Args:
        root: Holds mlflow.db, artifacts/ and server.log; kept across restarts.
        port: The loopback port, kept across restarts (a free one when None).
        fast_restart: Restart by forking the captured worker from a zygote (see module doc).
    """

    def __init__(
        self,
        root: Path,
        port: int | None = None,
        *,
        fast_restart: bool = True,
        timeout: float = 180.0,
    ) -> None:
        self.root = root
        self.port = port or free_ports(1)[0]
        self.fast_restart = fast_restart
        self.timeout = timeout
        self.url = f"http://{LOOPBACK}:{self.port}"
        self.db_path = root / "mlflow.db"
        self.log_path = root / "server.log"
        self.starts = 0
        self.kills = 0
        self.start_seconds: list[float] = []
        self._lock = threading.RLock()
        self._cli: subprocess.Popen[bytes] | None = None
        self._forked: int | None = None
        self._zygote: subprocess.Popen[str] | None = None
        self._zygote_ready = threading.Event()

    def __enter__(self) -> MlflowServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def alive(self) -> bool:
        """Whether a server process of ours is running (it may still be booting)."""
        with self._lock:
            if self._cli is not None:
                return self._cli.poll() is None
            return self._forked is not None and not _gone(self._forked)

    def start(self) -> None:
        """Start the server and wait until /health answers."""
        with self._lock:
            if self.alive():
                raise RuntimeError(f"MLflow server on port {self.port} is already running")
            t0 = time.monotonic()
            self.root.mkdir(parents=True, exist_ok=True)
            if (
                self.fast_restart
                and self._zygote is not None
                and self._zygote_ready.wait(self.timeout)
            ):
                self._fork_server()
            else:
                self._start_cli()
            try:
                self._wait_healthy()
            except BaseException:
                self.kill()  # never leave a half-started server behind
                raise
            self.starts += 1
            self.start_seconds.append(time.monotonic() - t0)
            if self.fast_restart and self._zygote is None and self._cli is not None:
                self._launch_zygote()

    def kill(self) -> None:
        """SIGKILL the server's whole process group and wait until it is gone."""
        with self._lock:
            if self._cli is not None:
                self._killpg(self._cli.pid)
                self._cli.wait(timeout=30)
                self._cli = None
            if self._forked is not None:
                self._killpg(self._forked)
                deadline = time.monotonic() + 30
                while not _gone(self._forked):
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"server process {self._forked} survived SIGKILL")
                    time.sleep(0.02)
                self._forked = None
            self.kills += 1

    def restart(self) -> None:
        """Kill the server if it runs, then start it again on the same port and data."""
        if self.alive():
            self.kill()
        self.start()

    def stop(self) -> None:
        """Kill the server and the zygote."""
        with self._lock:
            if self.alive():
                self.kill()
            if self._zygote is not None:
                if self._zygote.stdin:
                    try:
                        self._zygote.stdin.close()
                    except OSError:  # it died already
                        pass
                self._killpg(self._zygote.pid)
                self._zygote.wait(timeout=30)
                self._zygote = None

    @staticmethod
    def _killpg(pgid: int) -> None:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def _start_cli(self) -> None:
        out = self.log_path.open("ab")
        try:
            self._cli = subprocess.Popen(
                server_argv(self.root, LOOPBACK, self.port),
                env={**os.environ, **SERVER_ENV},
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            out.close()

    def _fork_server(self) -> None:
        assert self._zygote is not None
        assert self._zygote.stdin is not None
        assert self._zygote.stdout is not None
        self._zygote.stdin.write(f"{self.log_path}\n")
        self._zygote.stdin.flush()
        self._forked = int(self._zygote.stdout.readline())

    def _wait_healthy(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                pass
            if not self.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"MLflow server did not start; see {self.log_path}")
            time.sleep(0.1)

    def _launch_zygote(self) -> None:
        """Read back the worker the real command started and prepare to replay it."""
        assert self._cli is not None
        workers = [
            p
            for p in _children(self._cli.pid)
            if b"uvicorn" in Path(f"/proc/{p}/cmdline").read_bytes()
        ]
        if len(workers) != 1:
            log.warning("cannot find the uvicorn worker of %s: restarts use the CLI", self._cli.pid)
            self.fast_restart = False
            return
        pid = workers[0]
        argv = [a.decode() for a in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if a]
        env = dict(
            item.decode().split("=", 1)
            for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
            if item
        )
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
        server: MlflowServer,
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
