"""A small HTTP proxy whose failures are switched on over HTTP (a test helper, see
``registry_testing.FaultProxy``): it forwards every request to the upstream server until told to
answer 503, hang or drop connections, optionally only after a given request went through.

Standard library only (``http.server`` + ``http.client``), one thread per connection.
"""

from __future__ import annotations

import http.client
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

CONTROL = "/__abx_fault__"
HANG_MAX_S = 120.0


class FaultState:
    """The switch: ``mode`` applies to requests matching ``only`` once ``after`` was seen."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.mode, self.after, self.only = "pass", None, None
        self.armed = True
        self.forwarded = self.faulted = 0

    def configure(self, body: dict[str, Any]) -> None:
        with self.lock:
            self.mode = str(body.get("mode", "pass"))
            self.after, self.only = body.get("after"), body.get("only")
            self.armed = self.after is None
            self.changed.set()
            self.changed = threading.Event()

    def fault_for(self, path: str) -> str | None:
        with self.lock:
            if self.mode == "pass" or not self.armed:
                return None
            if self.only and self.only not in path:
                return None
            self.faulted += 1
            return self.mode

    def forwarded_one(self, path: str) -> None:
        with self.lock:
            self.forwarded += 1
            if self.after and self.after in path:
                self.armed = True


def make_handler(state: FaultState, upstream: str) -> type[BaseHTTPRequestHandler]:
    target = urlsplit(upstream)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, fmt: str, *args: Any) -> None:  # quiet: tests read stats instead
            return

        def _body(self) -> bytes:
            n = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(n) if n else b""

        def _reply(self, status: int, body: bytes, ctype: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _control(self) -> None:
            if self.command == "POST":
                state.configure(json.loads(self._body() or b"{}"))
            with state.lock:
                info = {"mode": state.mode, "after": state.after, "only": state.only,
                        "armed": state.armed, "forwarded": state.forwarded,
                        "faulted": state.faulted}
            self._reply(200, json.dumps(info).encode(), "application/json")

        def _handle(self) -> None:
            if self.path.startswith(CONTROL):
                return self._control()
            body = self._body()
            fault = state.fault_for(self.path)
            if fault == "503":
                return self._reply(503, b"Service Unavailable (abx fault proxy)")
            if fault == "hang":
                state.changed.wait(HANG_MAX_S)  # until the test switches the mode back
            if fault in ("hang", "close"):
                self.close_connection = True
                return None
            self._forward(body)
            return None

        def _forward(self, body: bytes) -> None:
            conn = http.client.HTTPConnection(target.hostname or "127.0.0.1", target.port,
                                              timeout=60)
            headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
            try:
                conn.request(self.command, self.path, body=body or None, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
            except OSError:  # upstream down: look like it to the client (no answer)
                self.close_connection = True
                return
            finally:
                conn.close()
            state.forwarded_one(self.path)
            self.send_response(resp.status)
            for key, value in resp.getheaders():
                if key.lower() not in ("transfer-encoding", "connection", "content-length"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

    return Handler


def serve(port: int, upstream: str) -> None:
    """Run the proxy on 127.0.0.1:``port`` until killed."""
    server = ThreadingHTTPServer(("127.0.0.1", port), make_handler(FaultState(), upstream))
    server.daemon_threads = True
    server.serve_forever()
