"""The web page of `think serve`: a chat, the runs of the run log, a run's trace (GET /; --no-ui).

Plain HTML, CSS and JavaScript from the package (ui/), no build step and no CDN, so it works offline.
The page itself holds no data and is served to anyone who can reach the server; what it shows comes
from the JSON routes here (/think/…) and the OpenAI API, under the same API key. Without a key, those
routes answer only a Host that is this machine or an address (a page of another site that re-points
its own name at 127.0.0.1, DNS rebinding, cannot read the run log), and never a foreign Origin.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ...output.logs import Query, daily, find, recent
from ...output.trace import MARK_LABELS, pieces
from ...policy.tiers import TIER_NAMES
from ...scheduler.runtime import Runtime
from ...text import Json
from .protocol import ApiError

ASSETS = {"app.js": "text/javascript; charset=utf-8", "app.css": "text/css; charset=utf-8"}
HEADERS = {
    # scripts and styles from this server only, no inline code, no framing by other sites
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                               "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}
# a run's summary for the runs page: its big columns (texts, trace) stay on the server
SUMMARY = ("id", "at", "source", "model", "tier", "strategy", "samples", "max_thinking", "spent_thinking_tokens",
           "answer_tokens", "total_s", "finish_reason", "confidence", "prompt", "error")
LIMIT = 500  # runs one page lists at most


def _asset(name: str) -> str:
    return (resources.files(__package__) / "ui" / name).read_text(encoding="utf-8")


def is_local_host(host: str) -> bool:
    """A Host header naming this machine or an address literal (not a name someone else's DNS controls)."""
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]").lower()
    if name in ("localhost", "localhost.") or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class Ui:
    """The page and its JSON routes over the run log."""

    def __init__(self, runtime: Runtime, api_key: str | None, authorise: Callable[[Request], None]):
        self.runtime, self.api_key = runtime, api_key
        self.authorise = authorise  # Api.authorise: the same key rules as the API
        self.page = _asset("index.html")
        self.assets = {name: _asset(name) for name in ASSETS}

    def routes(self) -> list[Route]:
        return [
            Route("/", self.index, methods=["GET"]),
            Route("/runs", self.index, methods=["GET"]),
            Route("/runs/{run_id:int}", self.index, methods=["GET"]),
            Route("/ui/{name}", self.asset, methods=["GET"]),
            Route("/think/info", self.info, methods=["GET"]),
            Route("/think/runs", self.guarded(self.runs), methods=["GET"]),
            Route("/think/runs/{run_id:int}", self.guarded(self.run), methods=["GET"]),
            Route("/think/ledger", self.guarded(self.ledger), methods=["GET"]),
        ]

    async def index(self, request: Request) -> Response:
        return Response(self.page, media_type="text/html; charset=utf-8", headers=HEADERS)

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in self.assets:
            return ApiError(404, f"no route GET {request.url.path}", code="not_found").response()
        return Response(self.assets[name], media_type=ASSETS[name], headers=HEADERS)

    def guarded(self, handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                self.check(request)
                return await handler(request)
            except ApiError as exc:
                return exc.response()

        return endpoint

    def check(self, request: Request) -> None:
        """The API key, and without one a local Host and no foreign Origin (see the module's note)."""
        self.authorise(request)
        host = request.headers.get("host", "")
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != host:
            raise ApiError(403, "the run log is not shared with other sites", kind="permission_error")
        if self.api_key is None and not is_local_host(host):
            raise ApiError(403, f"the run log is served only to this machine's names without --api-key (Host {host[:60]!r})",
                           kind="permission_error")

    @property
    def log_path(self) -> Path | None:
        return self.runtime.log.path if self.runtime.log is not None else None

    def query(self, request: Request, limit: int = LIMIT) -> Query:
        params = request.query_params
        tier = params.get("tier") or None
        if tier is not None and tier not in TIER_NAMES:
            raise ApiError(400, f"'tier' must be one of {', '.join(TIER_NAMES)}", param="tier")
        count = params.get("n", "")
        if count and (not count.isdigit() or not 1 <= int(count) <= LIMIT):
            raise ApiError(400, f"'n' must be a whole number from 1 to {LIMIT}", param="n")
        return Query(limit=int(count) if count else limit, tier=tier, model=params.get("model") or None,
                     text=params.get("q") or None, source=params.get("source") or None)

    async def info(self, request: Request) -> Response:
        """What the page needs before it may ask anything: whether a key is needed, whether runs are logged."""
        return JSONResponse({"key_required": self.api_key is not None, "log": self.log_path is not None},
                            headers={"Cache-Control": "no-store"})

    async def runs(self, request: Request) -> Response:
        query = self.query(request, limit=50)
        path = self.log_path
        rows = recent(path, query) if path else []
        runs: list[Json] = [{key: row[key] for key in SUMMARY} for row in reversed(rows)]  # newest first
        return JSONResponse({"log": self.log_path is not None, "runs": runs})

    async def run(self, request: Request) -> Response:
        run_id = request.path_params["run_id"]
        path = self.log_path
        row = find(path, run_id) if path else None
        if row is None:
            raise ApiError(404, f"no run #{run_id} in the log", code="not_found")
        trace = row.pop("trace") or {}
        parts = {part: [[p.text, p.prob, p.mark] for p in pieces(row.get(part), trace.get(part))]
                 for part in ("thinking", "answer")}
        return JSONResponse({"run": row, "pieces": parts, "labels": MARK_LABELS})

    async def ledger(self, request: Request) -> Response:
        query = self.query(request)
        path = self.log_path
        return JSONResponse({"days": daily(path, query) if path else []})
