"""A lean HTTP/1.1 client for the remote engine's hot path: one request per generation, one line per token.

httpx (h11 + httpcore) spends about 40 µs of Python per streamed chunk and a few milliseconds per request
on its layers of state machines, decoders and pools; a batch of short items against a fast server spends
most of its client CPU there. What the remote engine needs is narrow: a POST of a JSON body to a
plain-HTTP server it was pointed at, and the reply's status and body (whole, or line by line as it
streams). This module does exactly that over keep-alive sockets — Content-Length and chunked bodies,
read timeouts per read as httpx has them — and raises httpx's own exception types, so the engine's
retry rules read the same whichever client carried the request. TLS, proxies and anything unusual stay
with httpx (`usable`).
"""

from __future__ import annotations

import json
import socket
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from .fastjson import loads

_MAX_HEAD = 64 * 1024  # a status line and headers longer than this are not a server we speak to
_READ = 65536
_IDLE_PER_HOST = 64  # idle keep-alive sockets kept per server


def usable(url: str) -> bool:
    """Plain http:// with no proxy in the environment for its host (httpx honours those: it keeps them)."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        return False
    proxies = urllib.request.getproxies()
    return not (proxies.get("http") or proxies.get("all")) or bool(urllib.request.proxy_bypass(parts.hostname))


class Wire:
    """Keep-alive sockets to the servers of one endpoint, shared by the engine's threads (one request per
    socket at a time; a socket goes back to the pool only after its reply was read to the end)."""

    def __init__(self, headers: dict[str, str], timeout: float, connect_timeout: float):
        self.headers = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self._idle: dict[tuple[str, int], list[socket.socket]] = {}
        self._lock = threading.Lock()
        self._closed = False

    def post(self, url: str, body: Any, timeout: float | None = None) -> Reply:
        """POST `body` as JSON; the reply's status and headers are read, its body is the caller's to read
        (`read`, `iter_lines`) or to abandon (`close`). A pooled socket the server closed while idle is
        replaced once, before any byte of a reply came."""
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 80
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        payload = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        head = (f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
                f"Accept: */*\r\nContent-Length: {len(payload)}\r\n{self.headers}\r\n").encode("latin-1")
        read_timeout = self.timeout if timeout is None else timeout
        for fresh in (False, True):
            sock = None if fresh else self._take((host, port))
            reused = sock is not None
            if sock is None:
                sock = self._connect(host, port)
            try:
                sock.settimeout(read_timeout)
                sock.sendall(head + payload)
                return Reply(self, (host, port), sock, read_timeout)
            except _Stale:
                sock.close()
                if not reused:
                    raise httpx.RemoteProtocolError("the server closed the connection without a reply") from None
            except TimeoutError:
                sock.close()
                raise httpx.ReadTimeout(f"no reply from {host}:{port} within {read_timeout:g} s") from None
            except OSError as exc:
                sock.close()
                if not reused:
                    raise httpx.ReadError(f"{host}:{port}: {exc}") from None
        raise httpx.RemoteProtocolError("unreachable")  # pragma: no cover (the fresh socket returns or raises)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, {}
        for sockets in idle.values():
            for sock in sockets:
                sock.close()

    def _connect(self, host: str, port: int) -> socket.socket:
        try:
            sock = socket.create_connection((host, port), timeout=self.connect_timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"cannot connect to {host}:{port} within {self.connect_timeout:g} s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _take(self, address: tuple[str, int]) -> socket.socket | None:
        with self._lock:
            idle = self._idle.get(address)
            return idle.pop() if idle else None

    def _give(self, address: tuple[str, int], sock: socket.socket) -> None:
        with self._lock:
            idle = self._idle.setdefault(address, [])
            if not self._closed and len(idle) < _IDLE_PER_HOST:
                idle.append(sock)
                return
        sock.close()


class _Stale(Exception):
    """A pooled socket that the server had closed: nothing of a reply came."""


class Reply:
    """One reply: status and headers read at once, the body as the caller asks for it (httpx's names)."""

    def __init__(self, wire: Wire, address: tuple[str, int], sock: socket.socket, timeout: float):
        self._wire, self._address, self._sock, self._timeout = wire, address, sock, timeout
        self._buffer = b""
        self._done = False  # the body was read to its end
        self._open = True
        head = self._head()
        lines = head.split(b"\r\n")
        status = lines[0].split(None, 2)
        if len(status) < 2 or not status[0].startswith(b"HTTP/1.") or not status[1].isdigit():
            self._drop()
            raise httpx.RemoteProtocolError(f"not an HTTP reply: {lines[0][:80]!r}")
        self.status_code = int(status[1])
        self.headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            self.headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        self._chunked = "chunked" in self.headers.get("transfer-encoding", "").lower()
        length = self.headers.get("content-length")
        self._left = int(length) if length and length.isdigit() and not self._chunked else None
        self._reusable = self.headers.get("connection", "").lower() != "close" and (
            self._chunked or self._left is not None) and status[0] == b"HTTP/1.1"
        if self._left == 0 or self.status_code in (204, 304):
            self._finish()

    def __enter__(self) -> Reply:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the body ---------------------------------------------------------------------------
    def read(self) -> bytes:
        return b"".join(self._pieces())

    def iter_lines(self) -> Iterator[str]:
        """The body's lines as they come (a line ends at "\\n"; a "\\r" before it goes)."""
        pending = b""
        for piece in self._pieces():
            pending += piece
            if b"\n" not in piece:
                continue
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.rstrip(b"\r").decode("utf-8", "replace")
        if pending:
            yield pending.rstrip(b"\r").decode("utf-8", "replace")

    def json(self) -> Any:
        return loads(self.read())

    def close(self) -> None:
        """Done with it: a reply read to its end leaves its socket to the next request; one left halfway is
        closed (the server stops generating when it sees that)."""
        if not self._open:
            return
        self._open = False
        if self._done and self._reusable:
            self._wire._give(self._address, self._sock)
        else:
            self._sock.close()

    # -- framing ----------------------------------------------------------------------------
    def _pieces(self) -> Iterator[bytes]:
        """The body's bytes as they arrive: Content-Length, chunked, or up to the server's close."""
        if self._done:
            return
        if self._chunked:
            yield from self._chunks()
        elif self._left is not None:
            while self._left > 0:
                data = self._take_some(self._left)
                self._left -= len(data)
                yield data
        else:
            while True:
                data = self._buffer or self._recv(eof_ok=True)
                self._buffer = b""
                if not data:
                    break
                yield data
        self._finish()

    def _chunks(self) -> Iterator[bytes]:
        """A chunked body: every chunk the buffer holds whole is taken at once and yielded together (a
        streamed token is one chunk; after a read, all that came is one piece, not one generator step
        each); a chunk bigger than what came yields as it arrives."""
        buffer, at = self._buffer, 0
        self._buffer = b""
        while True:
            taken: list[bytes] = []
            while True:
                end = buffer.find(b"\r\n", at)
                if end < 0:
                    break
                size_text = buffer[at:end].split(b";", 1)[0].strip()
                try:
                    size = int(size_text, 16)
                except ValueError:
                    self._drop()
                    raise httpx.RemoteProtocolError(f"a bad chunk size: {size_text[:20]!r}") from None
                if size == 0:
                    if taken:
                        yield b"".join(taken)
                    self._buffer = buffer[end + 2:]
                    while self._line():  # trailers, up to the blank line
                        pass
                    return
                start, stop = end + 2, end + 2 + size
                if len(buffer) < stop + 2:
                    if start + _READ < len(buffer) < stop:  # a big chunk: hand on what came, keep the framing
                        taken.append(buffer[start:])
                        buffer, at = b"%x\r\n" % (stop - len(buffer)), 0
                        buffer += self._recv()
                        continue
                    break
                if buffer[stop:stop + 2] != b"\r\n":
                    self._drop()
                    raise httpx.RemoteProtocolError("a chunk that does not end where its size says")
                taken.append(buffer[start:stop])
                at = stop + 2
            if taken:
                yield b"".join(taken)
            if len(buffer) - at > _MAX_HEAD and buffer.find(b"\r\n", at) < 0:
                self._drop()
                raise httpx.RemoteProtocolError("a framing line without an end")
            buffer, at = buffer[at:] + self._recv(), 0

    def _take_some(self, most: int) -> bytes:
        """Up to `most` bytes of what has come (waiting for some when nothing has)."""
        if not self._buffer:
            self._buffer = self._recv()
        data, self._buffer = self._buffer[:most], self._buffer[most:]
        return data

    def _line(self) -> bytes:
        """A framing line (a chunk size, a trailer), without its CRLF."""
        while True:
            end = self._buffer.find(b"\r\n")
            if end >= 0:
                line, self._buffer = self._buffer[:end], self._buffer[end + 2:]
                return line
            if len(self._buffer) > _MAX_HEAD:
                self._drop()
                raise httpx.RemoteProtocolError("a framing line without an end")
            self._buffer += self._recv()

    def _head(self) -> bytes:
        while True:
            end = self._buffer.find(b"\r\n\r\n")
            if end >= 0:
                head, self._buffer = self._buffer[:end], self._buffer[end + 4:]
                if head.startswith(b"HTTP/1.1 100"):  # an interim "continue": the reply follows
                    continue
                return head
            if len(self._buffer) > _MAX_HEAD:
                self._drop()
                raise httpx.RemoteProtocolError("a reply head without an end")
            self._buffer += self._recv(head=True)

    def _recv(self, eof_ok: bool = False, head: bool = False) -> bytes:
        """One read. Waiting for a reply `head` with nothing of it yet, a dead socket is a stale pooled
        one (_Stale: the request is sent again on a fresh one), not the server's fault."""
        try:
            data = self._sock.recv(_READ)
        except TimeoutError:
            self._drop()
            waited = "no reply within" if head else "the server sent nothing for"
            raise httpx.ReadTimeout(f"{waited} {self._timeout:g} s") from None
        except OSError as exc:
            self._drop()
            if head and not self._buffer:
                raise _Stale() from None
            raise httpx.ReadError(str(exc)) from None
        if not data and not eof_ok:
            self._drop()
            if head and not self._buffer:
                raise _Stale()
            raise httpx.RemoteProtocolError("the server closed the connection inside a reply" + (" head" if head else ""))
        return data

    def _finish(self) -> None:
        self._done = True

    def _drop(self) -> None:
        self._reusable = False
        self._done = False
