"""`think serve`: the adaptive-compute policy behind an OpenAI-compatible HTTP API (Starlette).

Every request becomes tasks for the one scheduler (through service.py), so concurrent clients
are decoded together. The answer travels in `content`, the thinking in `reasoning_content` (the
convention of llama-server and DeepSeek); `reasoning_effort` picks a tier; a `think` object in
each response says what the policy did. Errors are OpenAI-style objects with 4xx codes.
Split by concern: protocol.py (requests in), dialects.py (responses out), service.py (the
scheduler's threads); this module is the HTTP floor between them.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ...engine.events import Answer, Thinking
from ...output.records import Outcome
from ...policy.plan import Plan, reseeded
from ...scheduler.results import Failed, Planned, RunEvent, Task
from ...scheduler.runtime import Runtime
from ...text import clean_json
from . import ollama
from .dialects import OpenAIChat, OpenAIText, finish_of, sse, think_extension
from .protocol import EFFORT_NAMES, ApiError, Limits, Parsed, display_name, failure_error, parse_request, served_models
from .service import Busy, Listener, Service

Handler = Callable[[Request], Awaitable[Response]]
DRAIN_LIMIT = 64_000_000  # bytes of an oversized body read (and dropped) before the 413; past that, the connection closes


class Exchange:
    """One HTTP request's n tasks and the queue their events come back on."""

    def __init__(self, service: Service, parsed: Parsed, loop: asyncio.AbstractEventLoop):
        self.id = uuid.uuid4().hex[:24]
        self.service = service
        self.parsed = parsed
        self.events: asyncio.Queue[tuple[int, RunEvent]] = asyncio.Queue()
        self.keys = [f"{self.id}-{i}" for i in range(parsed.n)]
        self.loop = loop
        self.open = set(range(parsed.n))
        self._lock = threading.Lock()
        self._pending: list[tuple[int, RunEvent]] = []
        self._scheduled = False

    def start(self) -> None:
        if self.service.closing:
            raise ApiError(503, "the server is shutting down", kind="server_error", code="shutting_down",
                           headers={"Retry-After": "5"})
        plan = self.parsed.plan
        tasks = []
        for index, key in enumerate(self.keys):
            seeded = reseeded(plan, plan.seed + 1000 * index) if index else plan  # n different draws
            task = Task(key, self.parsed.prompt, seeded, self.parsed.messages, raw=self.parsed.raw,
                        stop=self.parsed.stop)
            tasks.append((task, self._listener(index)))
        try:
            self.service.submit_all(tasks)
        except Busy as exc:
            raise ApiError(429, f"server busy: {exc}; retry shortly", kind="rate_limit_error",
                           code="server_busy", headers={"Retry-After": "1"}) from None

    def _listener(self, index: int) -> Listener:
        """Events arrive on the decoding thread; they are handed to the event loop in bunches (one
        wake-up per bunch, not per token: a wake-up is a syscall and a GIL hand-over)."""

        def put(event: RunEvent) -> None:
            with self._lock:
                self._pending.append((index, event))
                if self._scheduled:
                    return
                self._scheduled = True
            self.loop.call_soon_threadsafe(self._drain)

        return put

    def _drain(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
            self._scheduled = False
        for item in pending:
            self.events.put_nowait(item)

    def cancel(self) -> None:
        for key in self.keys:
            self.service.cancel(key)

    async def next(self) -> tuple[int, RunEvent]:
        return self._seen(await self.events.get())

    def ready(self) -> list[tuple[int, RunEvent]]:
        """Events already waiting (taken without waiting), to be sent together."""
        items = []
        while not self.events.empty():
            items.append(self._seen(self.events.get_nowait()))
        return items

    def _seen(self, item: tuple[int, RunEvent]) -> tuple[int, RunEvent]:
        if isinstance(item[1], (Outcome, Failed)):
            self.open.discard(item[0])
        return item


async def _discard(request: Request, limit: int) -> None:
    from starlette.requests import ClientDisconnect

    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                return
    except (ClientDisconnect, RuntimeError):  # RuntimeError: the stream was already consumed
        return


async def read_json(request: Request, limits: Limits) -> object:
    too_large = ApiError(413, f"the request is larger than {limits.max_request_bytes} bytes",
                         headers={"Connection": "close"})
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limits.max_request_bytes:
        await _discard(request, DRAIN_LIMIT)  # read what was sent, so the client reads the 413, not a reset
        raise too_large
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        parts.append(chunk)
        size += len(chunk)
        if size > limits.max_request_bytes:
            await _discard(request, DRAIN_LIMIT)
            raise too_large
    try:
        return clean_json(json.loads(b"".join(parts).decode("utf-8", errors="replace")))
    except ValueError:
        raise ApiError(400, "the request body is not valid JSON") from None
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply") from None


async def outcomes_of(exchange: Exchange, request: Request) -> list[Outcome] | Response:
    """Every choice's outcome, in order (a 499 if the client leaves first; a failure raises its ApiError)."""
    outcomes: dict[int, Outcome] = {}
    try:
        while exchange.open:
            getter = asyncio.ensure_future(exchange.next())
            while not getter.done():
                done, _ = await asyncio.wait({getter}, timeout=0.5)
                if not done and await request.is_disconnected():
                    getter.cancel()
                    exchange.cancel()
                    return Response(status_code=499)
            index, event = getter.result()
            if isinstance(event, Failed):
                exchange.cancel()
                raise failure_error(event)
            if isinstance(event, Outcome):
                outcomes[index] = event
    except asyncio.CancelledError:
        exchange.cancel()
        raise
    return [outcomes[i] for i in range(exchange.parsed.n)]


async def collect(exchange: Exchange, request: Request, dialect: OpenAIChat) -> Response:
    """A whole reply: every choice's outcome, then one body."""
    outcomes = await outcomes_of(exchange, request)
    return outcomes if isinstance(outcomes, Response) else JSONResponse(dialect.reply(outcomes, exchange.parsed.exclude))


async def _one_outcome(exchange: Exchange, request: Request) -> Outcome | Response:
    outcomes = await outcomes_of(exchange, request)
    return outcomes if isinstance(outcomes, Response) else outcomes[0]


class Stream:
    """One streamed reply: events become chunks, tokens that arrived together go out together.
    Under Best-of-N only the vote's winner is shown, whole, when its task ends."""

    def __init__(self, exchange: Exchange, dialect: OpenAIChat):
        self.exchange, self.dialect = exchange, dialect
        self.voting = exchange.parsed.plan.samples > 1
        self.exclude = exchange.parsed.exclude  # thinking runs but is not sent
        self.outcomes: dict[int, Outcome] = {}
        self.pending: dict[int, list[list[str]]] = {}  # per choice: runs of [delta key, text] not yet sent
        self.counts: dict[int, dict[str, int]] = {}  # per choice: tokens so far (`think_progress`, a live counter)

    async def chunks(self) -> AsyncIterator[bytes]:
        exchange = self.exchange
        try:
            yield self.dialect.opening(exchange.parsed.n, {"think": self.planned(exchange.parsed.plan)})
            while exchange.open:
                out: list[bytes] = []
                batch = [await exchange.next(), *exchange.ready()]
                going = all(self.handle(out, index, event) for index, event in batch)
                for index in list(self.pending):
                    self.flush(out, index)
                if out:
                    yield b"".join(out)
                if not going:
                    return
            if exchange.parsed.include_usage and self.outcomes:
                yield self.dialect.usage_chunk([self.outcomes[i] for i in sorted(self.outcomes)])
            yield b"data: [DONE]\n\n"
        finally:
            exchange.cancel()  # a client that went away (or any early end) frees its slots at once

    @staticmethod
    def planned(plan: Plan) -> dict[str, object]:
        """What the policy means to spend, sent first and again when the probe escalates (the final
        chunk's `think` says what it did)."""
        return {"tier": plan.difficulty.tier, "strategy": plan.strategy,
                "budget": {"min_thinking": plan.budget.min_thinking, "max_thinking": plan.budget.max_thinking,
                           "max_answer": plan.budget.max_answer, "samples": plan.samples}}

    def count(self, index: int, key: str, tokens: int) -> None:
        self.counts.setdefault(index, {"thinking_tokens": 0, "answer_tokens": 0})[key] = tokens

    def add(self, index: int, key: str, text: str) -> None:
        if not text:
            return
        runs = self.pending.setdefault(index, [])
        if runs and runs[-1][0] == key:
            runs[-1][1] += text
        else:
            runs.append([key, text])

    def flush(self, out: list[bytes], index: int) -> None:
        runs = self.pending.pop(index, [])
        for number, (key, text) in enumerate(runs, 1):
            last = number == len(runs) and index in self.counts
            progress: dict[str, object] | None = {"think_progress": self.counts[index]} if last else None
            out.append(self.dialect.chunk(index, {key: text}, extra=progress))

    def handle(self, out: list[bytes], index: int, event: RunEvent) -> bool:
        """Turn one event into chunks; False ends the stream (an error)."""
        match event:
            case Thinking():
                self.count(index, "thinking_tokens", event.tokens)
                if not self.voting and not self.exclude:
                    self.add(index, "reasoning_content", event.text)
            case Planned() if event.plan.difficulty.tier != self.exchange.parsed.plan.difficulty.tier:
                self.flush(out, index)  # the probe escalated: the plan it thinks under now
                out.append(self.dialect.chunk(index, {}, extra={"think": self.planned(event.plan)}))
            case Answer():
                self.count(index, "answer_tokens", event.tokens)
                if not self.voting:
                    self.add(index, "content", event.text)
            case Failed():
                self.exchange.cancel()
                error = failure_error(event)
                out.append(sse({"error": {"message": error.message, "type": error.kind}}))
                return False
            case Outcome():
                self.outcomes[index] = event
                if self.voting:  # the vote decides what is shown: the winner's thinking and answer at the end
                    if not self.exclude:
                        self.add(index, "reasoning_content", event.done.thinking)
                    self.add(index, "content", event.done.answer)
                self.flush(out, index)
                out.append(self.dialect.chunk(index, {}, finish_of(event), {"think": think_extension(event)}))
        return True


class Api:
    """The routes, over one runtime and service."""

    def __init__(self, runtime: Runtime, service: Service, api_key: str | None, limits: Limits):
        self.runtime, self.service, self.api_key, self.limits = runtime, service, api_key, limits

    def guarded(self, handler: Handler, shape: Callable[[ApiError], Response] = ApiError.response) -> Handler:
        """The key checked, and an ApiError answered in the dialect's error shape."""
        async def endpoint(request: Request) -> Response:
            try:
                self.authorise(request)
                return await handler(request)
            except ApiError as exc:
                return shape(exc)

        return endpoint

    def authorise(self, request: Request) -> None:
        if self.api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.api_key.encode()):
            raise ApiError(401, "invalid or missing API key (Authorization: Bearer …)", kind="authentication_error",
                           code="invalid_api_key")

    async def completions(self, request: Request, chat: bool) -> Response:
        parsed = parse_request(await read_json(request, self.limits), self.runtime, self.limits, chat)
        exchange = Exchange(self.service, parsed, asyncio.get_running_loop())
        exchange.start()
        dialect = (OpenAIChat if chat else OpenAIText)(exchange.id, display_name(parsed.plan.model))
        if parsed.stream:
            return StreamingResponse(Stream(exchange, dialect).chunks(), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await collect(exchange, request, dialect)

    async def chat_completions(self, request: Request) -> Response:
        return await self.completions(request, chat=True)

    async def text_completions(self, request: Request) -> Response:
        return await self.completions(request, chat=False)

    # -- Ollama's API ----------------------------------------------------------------------
    def ollama_guarded(self, handler: Handler) -> Handler:
        return self.guarded(handler, ollama.error_response)

    async def ollama_completion(self, request: Request, chat: bool) -> Response:
        parsed = ollama.parse(await read_json(request, self.limits), self.runtime, self.limits, chat)
        exchange = Exchange(self.service, parsed, asyncio.get_running_loop())
        exchange.start()
        shape = ollama.Ollama(self.runtime, display_name(parsed.plan.model), chat)
        if parsed.stream:
            return ollama.streaming(shape.stream(exchange, parsed.exclude))
        outcome = await _one_outcome(exchange, request)
        return outcome if isinstance(outcome, Response) else JSONResponse(shape.reply(outcome, parsed.exclude))

    async def ollama_chat(self, request: Request) -> Response:
        return await self.ollama_completion(request, chat=True)

    async def ollama_generate(self, request: Request) -> Response:
        return await self.ollama_completion(request, chat=False)

    async def ollama_tags(self, request: Request) -> Response:
        return JSONResponse(ollama.tags(self.runtime))

    async def ollama_show(self, request: Request) -> Response:
        return JSONResponse(ollama.show(self.runtime, await read_json(request, self.limits)))

    async def ollama_version(self, request: Request) -> Response:
        return ollama.version()

    async def models(self, request: Request) -> Response:
        runtime = self.runtime
        tiers = {name: {"max_thinking": t.max_thinking, "max_answer": t.max_answer, "strategy": t.strategy,
                        "samples": t.samples, "model": display_name(t.model or runtime.default_model)}
                 for name, t in runtime.registry.tiers.items()}
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "thinkcli", "default": index == 0}
                for index, name in enumerate(served_models(runtime))]
        return JSONResponse({"object": "list", "data": data, "tiers": tiers, "reasoning_effort": EFFORT_NAMES})

    async def health(self, request: Request) -> Response:
        stats = self.service.stats()  # models by display name: no paths for a caller without a key
        stats["models"] = {display_name(name): value for name, value in stats["models"].items()}
        return JSONResponse({"status": "ok", "model": display_name(self.runtime.default_model),
                             "parallel": self.service.parallel, **stats})


async def _not_found(request: Request, exc: Exception) -> Response:
    return ApiError(404, f"no route {request.method} {request.url.path}", code="not_found").response()


async def _method_not_allowed(request: Request, exc: Exception) -> Response:
    return ApiError(405, f"{request.method} is not allowed on {request.url.path}").response()


async def _server_error(request: Request, exc: Exception) -> Response:
    return ApiError(500, "internal error", kind="server_error").response()


def create_app(runtime: Runtime, service: Service, api_key: str | None = None, limits: Limits | None = None,
               ui: bool = True) -> Starlette:
    """The API's routes, and the web page's (ui.py) unless `ui` is off."""
    from .ui import Ui

    api = Api(runtime, service, api_key, limits or Limits())
    routes = [
        Route("/v1/chat/completions", api.guarded(api.chat_completions), methods=["POST"]),
        Route("/v1/completions", api.guarded(api.text_completions), methods=["POST"]),
        Route("/v1/models", api.guarded(api.models), methods=["GET"]),
        Route("/health", api.health, methods=["GET"]),
        Route("/api/chat", api.ollama_guarded(api.ollama_chat), methods=["POST"]),
        Route("/api/generate", api.ollama_guarded(api.ollama_generate), methods=["POST"]),
        Route("/api/tags", api.ollama_guarded(api.ollama_tags), methods=["GET"]),
        Route("/api/show", api.ollama_guarded(api.ollama_show), methods=["POST"]),
        Route("/api/version", api.ollama_version, methods=["GET"]),
    ]
    if ui:
        routes += Ui(runtime, api_key, api.authorise).routes()
    return Starlette(routes=routes, exception_handlers={404: _not_found, 405: _method_not_allowed, 500: _server_error})
