"""The lean HTTP client (engine/wire.py) against a real socket server that answers as scripted: framing,
keep-alive, a pooled socket the server closed, a reply left halfway, silence, refusal, proxies."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Callable

import httpx
import pytest

from thinkcli.engine.wire import Wire, usable

Script = Callable[[socket.socket, bytes], bool]  # answers one request; False: close the connection after it


class Scripted:
    """A TCP server on 127.0.0.1: each request (head + Content-Length body) is answered by the next script."""

    def __init__(self, *scripts: Script):
        self.scripts = list(scripts)
        self.connections = 0
        self.bodies: list[dict] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while self.scripts:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        data = b""
        with conn:
            while self.scripts:
                while b"\r\n\r\n" not in data:
                    more = conn.recv(65536)
                    if not more:
                        return
                    data += more
                head, _, data = data.partition(b"\r\n\r\n")
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                while len(data) < length:
                    data += conn.recv(65536)
                body, data = data[:length], data[length:]
                self.bodies.append(json.loads(body))
                if not self.scripts.pop(0)(conn, head):
                    return

    def close(self) -> None:
        self.scripts.clear()
        self.listener.close()


def fixed(body: bytes, status: int = 200, keep: bool = True) -> Script:
    def answer(conn: socket.socket, head: bytes) -> bool:
        conn.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (status, len(body), body))
        return keep
    return answer


def chunked(*pieces: bytes, gate: threading.Event | None = None) -> Script:
    """A chunked reply, one chunk per piece (after the first, each waits for `gate` where given)."""
    def answer(conn: socket.socket, head: bytes) -> bool:
        try:
            conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            for i, piece in enumerate(pieces):
                if gate is not None and i:
                    gate.wait(10)
                conn.sendall(b"%x\r\n%s\r\n" % (len(piece), piece))
            conn.sendall(b"0\r\n\r\n")
        except OSError:  # the client left halfway
            return False
        return True
    return answer


def send(conn: socket.socket, data: bytes) -> bool:
    """Send raw bytes, then hang up."""
    conn.sendall(data)
    return False


@pytest.fixture
def wire():
    w = Wire({"Authorization": "Bearer k"}, timeout=5.0, connect_timeout=2.0)
    yield w
    w.close()


def test_a_whole_reply_and_a_stream_of_lines_share_one_kept_alive_socket(wire):
    server = Scripted(fixed(b'{"tokens": [1, 2]}'), chunked(b"data: a\n\ndata: b", b"c\n\n", b"data: [DONE]\n\n"))
    with wire.post(f"{server.url}/tokenize", {"content": "hé"}) as reply:
        assert reply.status_code == 200 and reply.json() == {"tokens": [1, 2]}
    with wire.post(f"{server.url}/v1/completions", {"prompt": "x"}) as reply:
        assert [line for line in reply.iter_lines() if line] == ["data: a", "data: bc", "data: [DONE]"]
    assert server.connections == 1 and server.bodies == [{"content": "hé"}, {"prompt": "x"}]
    server.close()


def test_a_big_chunk_arrives_whole_in_pieces_and_the_socket_is_kept(wire):
    text = b"".join(b"line %06d\n" % i for i in range(40_000))  # 480 KB in one chunk, then a small one
    server = Scripted(chunked(text, b"tail\n"), fixed(b"{}"))
    with wire.post(f"{server.url}/v1/chat/completions", {}) as reply:
        lines = list(reply.iter_lines())
    assert len(lines) == 40_001 and lines[0] == "line 000000" and lines[-2:] == ["line 039999", "tail"]
    with wire.post(f"{server.url}/x", {}) as reply:
        assert reply.read() == b"{}"
    assert server.connections == 1
    server.close()


def test_a_reply_left_halfway_closes_its_socket_and_the_next_request_opens_one(wire):
    gate = threading.Event()
    server = Scripted(chunked(b"data: 1\n", b"data: 2\n", gate=gate), fixed(b"{}"))
    with wire.post(f"{server.url}/v1/completions", {}) as reply:
        assert next(reply.iter_lines()) == "data: 1"  # the caller has what it needs and leaves
    gate.set()
    with wire.post(f"{server.url}/v1/completions", {}) as reply:
        assert reply.json() == {}
    assert server.connections == 2
    server.close()


def test_a_pooled_socket_the_server_closed_is_replaced_once(wire):
    server = Scripted(fixed(b"{}", keep=False), fixed(b'{"ok": 1}'))
    with wire.post(f"{server.url}/a", {}) as reply:  # keep-alive on our side, but the server hangs up after it
        assert reply.json() == {}
    with wire.post(f"{server.url}/b", {}) as reply:
        assert reply.json() == {"ok": 1}
    assert server.connections == 2
    server.close()


def test_errors_are_httpx_errors_the_engine_already_retries(wire):
    silent = Scripted(lambda conn, head: threading.Event().wait(3) or False)
    quick = Wire({}, timeout=0.3, connect_timeout=1.0)
    with pytest.raises(httpx.ReadTimeout):
        quick.post(f"{silent.url}/v1/completions", {})
    silent.close()
    garbage = Scripted(lambda conn, head: send(conn, b"SSH-2.0-OpenSSH\r\n\r\n"))
    with pytest.raises(httpx.RemoteProtocolError):
        wire.post(f"{garbage.url}/v1/completions", {})
    garbage.close()
    broken = Scripted(lambda conn, head: send(conn, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"))
    with pytest.raises(httpx.RemoteProtocolError), wire.post(f"{broken.url}/x", {}) as reply:
        list(reply.iter_lines())
    broken.close()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with pytest.raises(httpx.ConnectError):
        wire.post(f"http://127.0.0.1:{port}/x", {})


def test_a_stream_that_falls_silent_mid_body_is_a_read_timeout_and_its_socket_is_not_kept():
    gate = threading.Event()  # never set: the second chunk never comes
    server = Scripted(chunked(b'data: {"a": 1}\n', b"never", gate=gate))
    quick = Wire({}, timeout=0.3, connect_timeout=1.0)
    with pytest.raises(httpx.ReadTimeout), quick.post(f"{server.url}/v1/completions", {}) as reply:
        lines = reply.iter_lines()
        assert next(lines) == 'data: {"a": 1}'
        next(lines)  # waits 0.3 s, then times out
    assert not quick._idle.get(("127.0.0.1", int(server.url.rsplit(":", 1)[1])))
    gate.set()
    server.close()
    quick.close()


def test_an_error_status_is_read_like_any_reply(wire):
    server = Scripted(fixed(b'{"error": "busy"}', status=503), fixed(b"{}"))
    with wire.post(f"{server.url}/x", {}) as reply:
        assert reply.status_code == 503 and reply.json() == {"error": "busy"}
    with wire.post(f"{server.url}/x", {}) as reply:
        assert reply.status_code == 200
    assert server.connections == 1
    server.close()


def test_only_plain_http_without_a_proxy_takes_the_lean_client(monkeypatch):
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    assert usable("http://127.0.0.1:8080/v1") and not usable("https://api.example.com/v1")
    monkeypatch.setenv("http_proxy", "http://proxy:3128")
    assert not usable("http://gpu-node:8000/v1")
    monkeypatch.setenv("no_proxy", "gpu-node")
    assert usable("http://gpu-node:8000/v1")
