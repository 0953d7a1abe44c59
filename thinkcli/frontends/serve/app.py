"""`think serve`: the adaptive-compute policy behind an OpenAI-compatible HTTP API (Starlette).

Every request becomes tasks for the one scheduler (through service.py), so concurrent clients
are decoded together. The answer travels in `content`, the thinking in `reasoning_content` (the
convention of llama-server and DeepSeek); `reasoning_effort` picks a tier; a `think` object in
each response says what the policy did. Errors are OpenAI-style objects with 4xx codes.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ...engine.events import Answer, Thinking
from ...errors import ThinkError
from ...output.records import Outcome, outcome_record
from ...policy.plan import MAX_SEED, Overrides, Plan, make_plan, reseeded
from ...policy.registry import TIER_NAMES
from ...scheduler.run import Failed, RunEvent, Task
from ...scheduler.runtime import Runtime
from ...text import clean_json, printable
from .service import Busy, Service

# reasoning_effort → (tier, thinking switched off)
EFFORTS: dict[str, tuple[str, bool]] = {
    "none": ("instant", True), "minimal": ("instant", False), "low": ("light", False),
    "medium": ("standard", False), "high": ("deep", False), "xhigh": ("deep", False), "max": ("deep", False),
}
# "cancelled" reaches a client only when the server cut it (shutdown): the reply is incomplete, so "length"
FINISH = {"stop": "stop", "length": "length", "context": "length", "stopped_early": "stop", "dropped": "stop",
          "cancelled": "length"}


class ApiError(Exception):
    """An OpenAI-style error: HTTP status, message, type, param, code."""

    def __init__(self, status: int, message: str, kind: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = status, message, kind, param, code
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 1_000_000
    max_tokens: int = 32_768
    max_n: int = 8


@dataclass(frozen=True)
class Parsed:
    """A validated request: what to run, n times, and how to answer."""

    prompt: str
    messages: tuple[dict[str, str], ...]
    plan: Plan
    n: int
    stream: bool
    include_usage: bool
    stop: tuple[str, ...]
    raw: bool = False  # /v1/completions: the prompt goes to the model as it is, no chat template


# -- request parsing (pure: tested without a server) -------------------------------------------
def _text(content: Any, where: str) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # [{"type": "text", "text": ...}, ...]
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"{where}: only text content parts are supported", param=where)
            parts.append(part["text"])
        return "".join(parts)
    raise ApiError(400, f"{where}: content must be a string or a list of text parts", param=where)


def _number(body: dict[str, Any], name: str, kind: type, low: float, high: float) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ApiError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}", param=name)
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' must be between {low:g} and {high:g}", param=name)
    return value


def _stop(body: dict[str, Any]) -> tuple[str, ...]:
    stop = body.get("stop")
    if stop is None:
        return ()
    stops = [stop] if isinstance(stop, str) else stop
    if not isinstance(stops, list) or len(stops) > 4 or not all(isinstance(s, str) and s for s in stops):
        raise ApiError(400, "'stop' must be a string or a list of up to 4 non-empty strings", param="stop")
    return tuple(stops)


def parse_request(body: Any, runtime: Runtime, limits: Limits, chat: bool) -> Parsed:
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    if chat:
        raw = body.get("messages")
        if not isinstance(raw, list) or not raw:
            raise ApiError(400, "'messages' must be a non-empty list", param="messages")
        messages = []
        for i, message in enumerate(raw):
            if not isinstance(message, dict) or message.get("role") not in ("system", "developer", "user", "assistant"):
                raise ApiError(400, f"messages[{i}]: role must be system, user or assistant", param=f"messages[{i}]")
            role = "system" if message["role"] == "developer" else message["role"]
            messages.append({"role": role, "content": _text(message.get("content"), f"messages[{i}].content")})
        users = [m["content"] for m in messages if m["role"] == "user"]
        if not users:
            raise ApiError(400, "'messages' needs a user message", param="messages")
        prompt = users[-1]
    else:
        raw_prompt = body.get("prompt")
        if isinstance(raw_prompt, list) and len(raw_prompt) == 1:
            raw_prompt = raw_prompt[0]
        if not isinstance(raw_prompt, str):
            raise ApiError(400, "'prompt' must be a string", param="prompt")
        prompt = raw_prompt
        messages = [{"role": "user", "content": prompt}]
    if not prompt.strip():
        raise ApiError(400, "the prompt is empty", param="messages" if chat else "prompt")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", param="model")
    model = model_for(model, runtime)
    effort = body.get("reasoning_effort")
    tier = body.get("tier", "auto")
    no_think = False
    if effort is not None:
        if not isinstance(effort, str) or effort not in EFFORTS:
            raise ApiError(400, f"'reasoning_effort' must be one of {', '.join(EFFORTS)}", param="reasoning_effort")
        tier, no_think = EFFORTS[effort]
    if not isinstance(tier, str) or tier not in ("auto", *TIER_NAMES):
        raise ApiError(400, f"'tier' must be auto or one of {', '.join(TIER_NAMES)}", param="tier")
    max_tokens = _number(body, "max_completion_tokens", int, 1, limits.max_tokens)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", int, 1, limits.max_tokens)
    overrides = Overrides(
        tier=tier, model=model, no_think=no_think,
        max_thinking=_number(body, "max_thinking", int, 0, limits.max_tokens),
        min_thinking=_number(body, "min_thinking", int, 0, limits.max_tokens),
        samples=_number(body, "samples", int, 1, 64),
        temperature=_number(body, "temperature", float, 0, 2),
        seed=_number(body, "seed", int, 0, MAX_SEED),
        probe=_flag(body, "probe", True),
    )
    try:
        plan = make_plan(prompt, runtime.registry, overrides, model)
    except ThinkError as exc:
        raise ApiError(400, str(exc)) from None
    if max_tokens is not None:
        plan = _cap_completion(plan, max_tokens)
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "'stream' must be true or false", param="stream")
    options = body.get("stream_options") or {}
    n = _number(body, "n", int, 1, limits.max_n) or 1
    return Parsed(prompt, tuple(messages), plan, n, stream, bool(isinstance(options, dict) and options.get("include_usage")),
                  _stop(body), raw=not chat)


def _flag(body: dict[str, Any], name: str, default: bool) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"'{name}' must be true or false", param=name)
    return value


def _cap_completion(plan: Plan, max_tokens: int) -> Plan:
    """max_tokens caps thinking + answer + forced text together: the scheduler splits it (run.fit),
    for it alone knows how many tokens the model's forced budget end takes."""
    if plan.probe is not None and plan.probe.escalation is not None:  # the plan it may escalate to, too
        plan = replace(plan, probe=replace(plan.probe, escalation=_cap_completion(plan.probe.escalation, max_tokens)))
    return replace(plan, budget=replace(plan.budget, max_total=max_tokens))


def display_name(ref: str) -> str:
    """How a model is named to clients: its alias or repo, or the file name of a .gguf path."""
    from ...models.hub import looks_like_path

    return Path(ref).name if looks_like_path(ref) else ref


def served_models(runtime: Runtime) -> dict[str, str]:
    """What this server answers to: client-facing name → model reference. Only `think`, the default
    and the registry's aliases whose files are here (what GET /v1/models lists): a request's `model`
    never reaches the file system as a path or a Hub repository."""
    default = runtime.default_model
    names = {display_name(default): default}
    for alias in sorted(runtime.registry.models):
        if alias != default and _available(runtime, alias):
            names[alias] = alias
    return names


def model_for(name: str | None, runtime: Runtime) -> str:
    """The `model` field: `think` (= the default), the default's own name, or a listed alias. Anything
    else gets one identical 404, whether or not a file of that name exists anywhere."""
    default = runtime.default_model
    if name in (None, "", "think", default, display_name(default)):
        return default
    assert name is not None
    if name in runtime.registry.models and _available(runtime, name):  # a file check, no load
        return name
    raise ApiError(404, f"the model '{_shown(name)}' does not exist (GET /v1/models lists them)",
                   code="model_not_found", param="model")


def _shown(text: str, limit: int = 80) -> str:
    """A client's text quoted in a message: cut, its control characters made visible."""
    return printable(text[:limit]) + ("…" if len(text) > limit else "")


# -- stop strings ----------------------------------------------------------------------------
class StopFilter:
    """Cuts streamed answer text at the first stop string, holding back what might start one."""

    def __init__(self, stops: tuple[str, ...]):
        self.stops = stops
        self.hold = max((len(s) for s in stops), default=1) - 1
        self.buffer = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        if self.stopped:
            return ""
        self.buffer += text
        cut = min((i for i in (self.buffer.find(s) for s in self.stops) if i >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            out, self.buffer = self.buffer[:cut], ""
            return out
        if not self.stops or len(self.buffer) <= self.hold:
            out = self.buffer if not self.stops else ""
            self.buffer = "" if not self.stops else self.buffer
            return out
        out, self.buffer = self.buffer[: len(self.buffer) - self.hold], self.buffer[len(self.buffer) - self.hold:]
        return out

    def flush(self) -> str:
        out, self.buffer = ("" if self.stopped else self.buffer), ""
        return out

    def apply(self, text: str) -> tuple[str, bool]:
        """A whole text at once: (cut text, whether a stop string was found)."""
        return self.feed(text) + self.flush(), self.stopped


# -- responses -------------------------------------------------------------------------------
def think_extension(outcome: Outcome) -> dict[str, Any]:
    record = outcome_record(outcome, keep_thinking=False)
    keep = ("model", "family", "tier", "score", "reasons", "strategy", "budget", "finish_reason", "confidence", "probe",
            "events", "samples", "vote", "timings")
    extension = {key: record[key] for key in keep}
    if outcome.done.finish_reason == "cancelled":
        extension["interrupted"] = "the server shut down before this reply was complete"
    return extension


def usage_of(outcomes: list[Outcome]) -> dict[str, Any]:
    prompt = outcomes[0].done.usage.prompt_tokens if outcomes else 0
    cached = outcomes[0].done.usage.reused_tokens if outcomes else 0
    runs = [s for o in outcomes for s in (o.samples or (o.done,))]
    thinking = sum(s.usage.thinking_tokens + s.usage.forced_tokens for s in runs)
    answer = sum(s.usage.answer_tokens for s in runs)
    return {"prompt_tokens": prompt, "completion_tokens": thinking + answer, "total_tokens": prompt + thinking + answer,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": thinking}}


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
            task = Task(key, self.parsed.prompt, seeded, self.parsed.messages, raw=self.parsed.raw)
            tasks.append((task, self._listener(index)))
        try:
            self.service.submit_all(tasks)
        except Busy as exc:
            raise ApiError(429, f"server busy: {exc}; retry shortly", kind="rate_limit_error",
                           code="server_busy", headers={"Retry-After": "1"}) from None

    def _listener(self, index: int) -> Any:
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


DRAIN_LIMIT = 64_000_000  # bytes of an oversized body read (and dropped) before the 413; past that, the connection closes


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


def _failed(event: Failed) -> ApiError:
    """A task's failure as the client sees it, by its kind (never by its words)."""
    if event.kind == "cancelled":  # queued when the server began to shut down, never started
        return ApiError(503, "the server shut down before this request ran", kind="server_error",
                        code="shutting_down", headers={"Retry-After": "5"})
    message = event.error.split("; raise n_ctx")[0]  # the CLI's hint (flags, variables) means nothing to a client
    if event.kind == "context":
        return ApiError(400, message, kind="invalid_request_error")
    return ApiError(500, message, kind="server_error")


def create_app(runtime: Runtime, service: Service, api_key: str | None = None, limits: Limits | None = None) -> Starlette:
    limits = limits or Limits()

    async def authorised(request: Request) -> None:
        if api_key is None:
            return
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), api_key.encode()):
            raise ApiError(401, "invalid or missing API key (Authorization: Bearer …)", kind="authentication_error",
                           code="invalid_api_key")

    async def read_json(request: Request) -> Any:
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
        body = b"".join(parts)
        try:
            return clean_json(json.loads(body.decode("utf-8", errors="replace")))
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON") from None
        except RecursionError:
            raise ApiError(400, "the request body is nested too deeply") from None

    def guarded(handler: Any) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                await authorised(request)
                response: Response = await handler(request)
                return response
            except ApiError as exc:
                return exc.response()

        return endpoint

    async def completions(request: Request, chat: bool) -> Response:
        parsed = parse_request(await read_json(request), runtime, limits, chat)
        exchange = Exchange(service, parsed, asyncio.get_running_loop())
        exchange.start()
        if parsed.stream:
            return StreamingResponse(stream_chunks(exchange, request, chat), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return await collect(exchange, request, chat)

    async def collect(exchange: Exchange, request: Request, chat: bool) -> Response:
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
                    raise _failed(event)
                if isinstance(event, Outcome):
                    outcomes[index] = event
        except asyncio.CancelledError:
            exchange.cancel()
            raise
        ordered = [outcomes[i] for i in range(exchange.parsed.n)]
        choices = []
        for index, outcome in enumerate(ordered):
            text, stopped = StopFilter(exchange.parsed.stop).apply(outcome.done.answer)
            finish = "stop" if stopped else FINISH.get(outcome.done.finish_reason, "stop")
            if chat:
                message = {"role": "assistant", "content": text, "reasoning_content": outcome.done.thinking or None}
                choices.append({"index": index, "message": message, "finish_reason": finish, "logprobs": None})
            else:
                choices.append({"index": index, "text": text, "reasoning_content": outcome.done.thinking or None,
                                "finish_reason": finish, "logprobs": None})
        body = {
            "id": ("chatcmpl-" if chat else "cmpl-") + exchange.id,
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": display_name(exchange.parsed.plan.model),
            "choices": choices,
            "usage": usage_of(ordered),
            "think": [think_extension(o) for o in ordered] if len(ordered) > 1 else think_extension(ordered[0]),
        }
        return JSONResponse(body)

    async def stream_chunks(exchange: Exchange, request: Request, chat: bool) -> AsyncIterator[bytes]:
        created = int(time.time())
        ident = ("chatcmpl-" if chat else "cmpl-") + exchange.id
        model = display_name(exchange.parsed.plan.model)
        kind = "chat.completion.chunk" if chat else "text_completion"
        filters = [StopFilter(exchange.parsed.stop) for _ in range(exchange.parsed.n)]
        voting = exchange.parsed.plan.samples > 1
        outcomes: dict[int, Outcome] = {}

        def chunk(index: int, delta: dict[str, Any], finish: str | None = None, extra: dict[str, Any] | None = None) -> bytes:
            if chat:
                choice: dict[str, Any] = {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}
            else:
                choice = {"index": index, "text": delta.get("content", ""), "finish_reason": finish, "logprobs": None}
                if "reasoning_content" in delta:
                    choice["reasoning_content"] = delta["reasoning_content"]
            data = {"id": ident, "object": kind, "created": created, "model": model, "choices": [choice], **(extra or {})}
            return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"

        pending: dict[int, list[list[str]]] = {}  # per choice: runs of [delta key, text] not yet sent

        def add(index: int, key: str, text: str) -> None:
            runs = pending.setdefault(index, [])
            if runs and runs[-1][0] == key:
                runs[-1][1] += text  # tokens that arrived together go out in one chunk
            else:
                runs.append([key, text])

        def flush(out: list[bytes], index: int) -> None:
            for key, text in pending.pop(index, []):
                out.append(chunk(index, {key: text}))

        def handle(out: list[bytes], index: int, event: RunEvent) -> bool:
            """Turn one event into chunks; False ends the stream (an error)."""
            match event:
                case Thinking() if not voting and event.text:
                    add(index, "reasoning_content", event.text)
                case Answer() if not voting and not filters[index].stopped:
                    text = filters[index].feed(event.text)
                    if text:
                        add(index, "content", text)
                    if filters[index].stopped:
                        exchange.service.cancel(exchange.keys[index])  # a stop string: no more tokens
                        exchange.open.discard(index)
                        flush(out, index)
                        out.append(chunk(index, {}, "stop"))
                case Failed():
                    exchange.cancel()
                    error = _failed(event)
                    out.append(b"data: " + json.dumps({"error": {"message": error.message, "type": error.kind}}).encode()
                               + b"\n\n")
                    return False
                case Outcome():
                    outcomes[index] = event
                    if voting:  # the vote decides what is shown: the winner's thinking and answer at the end
                        if event.done.thinking:
                            add(index, "reasoning_content", event.done.thinking)
                        text = filters[index].feed(event.done.answer)
                        if text:
                            add(index, "content", text)
                    rest = filters[index].flush()
                    if rest:
                        add(index, "content", rest)
                    flush(out, index)
                    if not filters[index].stopped or voting:
                        finish = "stop" if filters[index].stopped else FINISH.get(event.done.finish_reason, "stop")
                        out.append(chunk(index, {}, finish, {"think": think_extension(event)}))
            return True

        try:
            if chat:
                yield b"".join(chunk(index, {"role": "assistant", "content": ""}) for index in range(exchange.parsed.n))
            while exchange.open:
                out: list[bytes] = []
                batch = [await exchange.next(), *exchange.ready()]
                going = all(handle(out, index, event) for index, event in batch)
                for index in list(pending):
                    flush(out, index)
                if out:
                    yield b"".join(out)
                if not going:
                    return
            if exchange.parsed.include_usage and outcomes:
                ordered = [outcomes[i] for i in sorted(outcomes)]
                usage = {"id": ident, "object": kind, "created": created, "model": model, "choices": [],
                         "usage": usage_of(ordered)}
                yield b"data: " + json.dumps(usage).encode() + b"\n\n"
            yield b"data: [DONE]\n\n"
        finally:
            exchange.cancel()  # a client that went away (or any early end) frees its slots at once

    async def chat_completions(request: Request) -> Response:
        return await completions(request, chat=True)

    async def text_completions(request: Request) -> Response:
        return await completions(request, chat=False)

    async def models(request: Request) -> Response:
        names = list(served_models(runtime))
        tiers = {name: {"max_thinking": t.max_thinking, "max_answer": t.max_answer, "strategy": t.strategy,
                        "samples": t.samples, "model": display_name(t.model or runtime.default_model)}
                 for name, t in runtime.registry.tiers.items()}
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "thinkcli",
                 "default": index == 0} for index, name in enumerate(names)]
        return JSONResponse({"object": "list", "data": data, "tiers": tiers,
                             "reasoning_effort": {k: v[0] + (" (no thinking)" if v[1] else "") for k, v in EFFORTS.items()}})

    async def health(request: Request) -> Response:
        stats = service.stats()  # models by display name: no paths for a caller without a key
        stats["models"] = {display_name(name): value for name, value in stats["models"].items()}
        return JSONResponse({"status": "ok", "model": display_name(runtime.default_model), "parallel": service.parallel,
                             **stats})

    async def not_found(request: Request, exc: Exception) -> Response:
        return ApiError(404, f"no route {request.method} {request.url.path}", code="not_found").response()

    async def method_not_allowed(request: Request, exc: Exception) -> Response:
        return ApiError(405, f"{request.method} is not allowed on {request.url.path}").response()

    async def server_error(request: Request, exc: Exception) -> Response:
        return ApiError(500, "internal error", kind="server_error").response()

    routes = [
        Route("/v1/chat/completions", guarded(chat_completions), methods=["POST"]),
        Route("/v1/completions", guarded(text_completions), methods=["POST"]),
        Route("/v1/models", guarded(models), methods=["GET"]),
        Route("/health", health, methods=["GET"]),
    ]
    return Starlette(routes=routes, exception_handlers={404: not_found, 405: method_not_allowed, 500: server_error})


def _available(runtime: Runtime, alias: str) -> bool:
    """On disk (a file check), or served elsewhere (asked only when a request runs on it)."""
    from ...models.hub import resolve

    entry = runtime.registry.models.get(alias)
    if entry is not None and entry.remote:
        return True
    try:
        resolve(alias, runtime.registry, runtime.paths)
        return True
    except ThinkError:
        return False
