"""A local HTTP server on 127.0.0.1 that speaks enough of the Hugging Face Hub's file protocol.

Repos are dicts of {filename: bytes}. Knobs for failure tests: `cut_once` (drop the connection
half-way through a file the first time it is fetched), `hold` (then freeze the resume until
released), `bad_sha` (advertise a wrong sha256), `private` (answer 401). Requests are logged so tests can check Range resumes.
"""

from __future__ import annotations

import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote

COMMIT = "0123456789abcdef0123456789abcdef01234567"


class Hub:
    def __init__(self) -> None:
        self.repos: dict[str, dict[str, bytes]] = {}
        self.cut_once: set[str] = set()
        self.bad_sha: set[str] = set()
        self.private: set[str] = set()
        # `hold`: the first GET sends half the file and drops; the resuming GET (with Range) then
        # waits until the event is set: a pull is frozen half-way, deterministically, to be killed.
        self.hold: dict[str, threading.Event] = {}
        self.log: list[tuple[str, str, str | None]] = []
        self.auth_headers: list[str | None] = []
        handler = self._handler()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Hub:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sha(self, repo: str, name: str) -> str:
        if f"{repo}/{name}" in self.bad_sha:
            return "0" * 64
        return hashlib.sha256(self.repos[repo][name]).hexdigest()

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _send(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
                self.send_response(code)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                if "Content-Length" not in (headers or {}):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD" and body:
                    self.wfile.write(body)

            def _json(self, data: object) -> None:
                self._send(200, json.dumps(data).encode(), {"Content-Type": "application/json"})

            def _repo_of(self, parts: list[str]) -> str | None:
                repo = "/".join(parts[:2])
                if repo in hub.private:
                    self._send(401, b'{"error":"Invalid credentials"}', {"X-Error-Code": "RepoNotFound",
                                                                         "X-Error-Message": "Invalid credentials"})
                    return None
                if repo not in hub.repos:
                    self._send(404, b'{"error":"Repository not found"}', {"X-Error-Code": "RepoNotFound",
                                                                          "X-Error-Message": "Repository not found"})
                    return None
                return repo

            def do_HEAD(self) -> None:
                self.do_GET()

            def do_GET(self) -> None:
                path = unquote(self.path.split("?")[0])
                hub.log.append((self.command, path, self.headers.get("Range")))
                hub.auth_headers.append(self.headers.get("Authorization"))
                parts = path.strip("/").split("/")
                if parts[:2] == ["api", "models"]:
                    rest = parts[2:]
                    repo = self._repo_of(rest)
                    if repo is None:
                        return
                    files = hub.repos[repo]
                    if len(rest) > 2 and rest[2] == "tree":
                        self._json([
                            {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest(),
                             "lfs": {"oid": hub.sha(repo, name), "size": len(data), "pointerSize": 130}}
                            for name, data in files.items()
                        ])
                        return
                    self._json({"id": repo, "sha": COMMIT, "siblings": [{"rfilename": n} for n in files]})
                    return
                # /{org}/{repo}/resolve/{rev}/{file...}
                if len(parts) >= 5 and parts[2] == "resolve":
                    repo = self._repo_of(parts)
                    if repo is None:
                        return
                    name = "/".join(parts[4:])
                    data = hub.repos[repo].get(name)
                    if data is None:
                        self._send(404, b"", {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
                        return
                    etag = f'"{hub.sha(repo, name)}"'
                    headers = {"X-Repo-Commit": COMMIT, "ETag": etag, "X-Linked-Etag": etag,
                               "X-Linked-Size": str(len(data)), "Accept-Ranges": "bytes"}
                    start = 0
                    range_header = self.headers.get("Range")
                    if range_header and range_header.startswith("bytes="):
                        start = int(range_header[6:].split("-")[0])
                    body = data[start:]
                    code = 206 if start else 200
                    if start:
                        headers["Content-Range"] = f"bytes {start}-{len(data) - 1}/{len(data)}"
                    headers["Content-Length"] = str(len(body))
                    key = f"{repo}/{name}"
                    if self.command == "GET" and key in hub.hold:
                        if start:
                            hub.hold[key].wait(60)
                            self.close_connection = True
                            return
                        hub.cut_once.add(key)
                    if self.command == "GET" and key in hub.cut_once and not start:
                        hub.cut_once.discard(key)
                        self.send_response(code)
                        for k, v in headers.items():
                            self.send_header(k, v)
                        self.end_headers()
                        self.wfile.write(body[: len(body) // 2])
                        self.wfile.flush()
                        self.close_connection = True
                        return
                    self._send(code, body, headers)
                    return
                self._send(404, b"", {"X-Error-Code": "EntryNotFound"})

        return Handler
