"""A real HTTP proxy in front of a real server that misbehaves on cue: 500, 429, garbage, hang, cut.

Each request takes the next fault from `faults` (a list the test fills); with none left it is
forwarded, streamed chunk by chunk, to the upstream server. Lets the fault tests use real
generation and real sockets without a server that can be told to fail.
"""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


class FlakyProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream.rstrip("/")  # e.g. http://127.0.0.1:PORT (no /v1)
        self.faults: list[str] = []
        self.seen: list[str] = []  # what each request got: a fault's name, or "ok"
        self.paths: list[str] = []  # every request's path, in order
        self.bodies: list[bytes] = []  # and its body
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # quiet
                pass

            def do_GET(self) -> None:
                proxy._handle(self, "GET")

            def do_POST(self) -> None:
                proxy._handle(self, "POST")

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        completion = handler.path.endswith(("/completions", "/completion"))
        with self.lock:
            self.paths.append(handler.path)
            self.bodies.append(body)
            fault = self.faults.pop(0) if self.faults and completion else None
            if completion:
                self.seen.append(fault or "ok")
        if fault in ("500", "429"):
            _reply(handler, int(fault), "application/json", b'{"error": {"message": "injected"}}')
            return
        if fault == "garbage":
            _reply(handler, 200, "text/event-stream", b"data: {this is not json\n\n")
            return
        if fault == "hang":
            time.sleep(5)  # longer than the client's timeout in the tests
            handler.close_connection = True
            return
        cut_after = int(fault.split(":")[1]) if fault and fault.startswith("cut:") else None
        headers = {"Content-Type": handler.headers.get("Content-Type", "application/json")}
        with httpx.Client(timeout=120) as client, client.stream(method, self.upstream + handler.path, content=body,
                                                                  headers=headers) as response:
            handler.send_response(response.status_code)
            handler.send_header("Content-Type", response.headers.get("Content-Type", "application/json"))
            handler.send_header("Connection", "close")
            handler.end_headers()
            handler.close_connection = True
            for count, chunk in enumerate(response.iter_bytes()):
                if cut_after is not None and count >= cut_after:
                    return  # the connection drops mid-stream
                try:
                    handler.wfile.write(chunk)
                    handler.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client closed its stream (it had what it needed)


def _reply(handler: BaseHTTPRequestHandler, status: int, content_type: str, payload: bytes) -> None:
    """A whole response of the proxy's own (an injected fault)."""
    handler.send_response(status)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(payload)))
    handler.end_headers()
    handler.wfile.write(payload)
