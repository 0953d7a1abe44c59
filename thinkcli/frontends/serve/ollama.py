"""Ollama's API on the same server: /api/chat, /api/generate (NDJSON streams), /api/tags, /api/show,
/api/version — so the many tools that speak only Ollama get the adaptive policy, and a thinking
budget Ollama itself lacks (`think` as a number, or `options.think_budget`, the spellings of its
open proposal). A request becomes the same `Parsed` as an OpenAI one: same queue, decoder, limits.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.responses import JSONResponse, Response, StreamingResponse

from ...engine.events import Answer, Thinking
from ...output.records import Outcome
from ...scheduler.results import Failed, RunEvent
from ...scheduler.runtime import Runtime
from ...text import Json, printable
from .dialects import think_extension
from .protocol import ApiError, Limits, Parsed, display_name, failure_error, parse_request, served_models

if TYPE_CHECKING:
    from .app import Exchange

OLLAMA_VERSION = "0.12.0"  # the API level these routes follow
LEVELS = {"low": "low", "medium": "medium", "high": "high"}  # think levels → reasoning_effort


def now() -> str:
    return datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")


def error_response(exc: ApiError) -> Response:
    """Ollama's error shape: {"error": "..."} (its clients raise it as ResponseError)."""
    return JSONResponse({"error": exc.message}, status_code=exc.status, headers=exc.headers)


def translate(body: object, chat: bool) -> Json:
    """An Ollama request as the OpenAI-style body parse_request validates (one set of rules)."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    options = body.get("options") or {}
    if not isinstance(options, dict):
        raise ApiError(400, "'options' must be an object", param="options")
    out: Json = {"stream": body.get("stream", True)}
    name = body.get("model")
    if isinstance(name, str) and name.endswith(":latest"):
        name = name[: -len(":latest")]
    out["model"] = name
    if chat:
        out["messages"] = body.get("messages")
    else:
        prompt = body.get("prompt")
        system = body.get("system")
        if body.get("raw") is True:
            out["prompt"], out["raw"] = prompt, True
        else:
            system_message = [{"role": "system", "content": system}] if isinstance(system, str) and system else []
            out["messages"] = [*system_message, {"role": "user", "content": prompt}]
    think, budget = body.get("think"), options.get("think_budget")
    if isinstance(think, bool):
        out["chat_template_kwargs"] = {"enable_thinking": think}
    elif isinstance(think, str):
        if think not in LEVELS:
            raise ApiError(400, "'think' must be true, false, low, medium, high or a number of tokens", param="think")
        out["reasoning_effort"] = LEVELS[think]
    elif isinstance(think, int):
        out["thinking_budget_tokens"] = think  # a number: a budget, where Ollama has none
    elif think is not None:
        raise ApiError(400, "'think' must be true, false, low, medium, high or a number of tokens", param="think")
    if budget is not None:
        if think is False:
            raise ApiError(400, "'think' is false and 'options.think_budget' gives thinking a budget: give one of them",
                           param="options.think_budget")
        if isinstance(think, int) and not isinstance(think, bool) and think != budget:
            raise ApiError(400, "'think' and 'options.think_budget' disagree: give one of them", param="think")
        out["max_thinking"] = budget
    predict = options.get("num_predict")
    if predict is not None and predict != -1:  # -1: no limit
        out["max_tokens"] = predict
    for key in ("temperature", "seed", "stop"):
        if key in options:
            out[key] = options[key]
    return out


def parse(body: object, runtime: Runtime, limits: Limits, chat: bool) -> Parsed:
    translated = translate(body, chat)
    raw = bool(translated.pop("raw", False))
    return parse_request(translated, runtime, limits, chat=not raw)


def _durations(outcome: Outcome) -> Json:
    done = outcome.done
    ns = 1_000_000_000
    first = done.first_token_s or 0.0
    return {"total_duration": int(outcome.total_s * ns), "load_duration": int(outcome.load_s * ns),
            "prompt_eval_count": done.usage.prompt_tokens, "prompt_eval_duration": int(first * ns),
            "eval_count": done.usage.thinking_tokens + done.usage.answer_tokens + done.usage.forced_tokens,
            "eval_duration": int(max(0.0, done.elapsed_s - first) * ns)}


class Ollama:
    """The routes' shapes: a whole reply, a stream of NDJSON lines, the model listings."""

    def __init__(self, runtime: Runtime, model: str, chat: bool):
        self.runtime, self.model, self.chat = runtime, model, chat

    def part(self, answer: str, thinking: str) -> Json:
        if self.chat:
            message: Json = {"role": "assistant", "content": answer}
            if thinking:
                message["thinking"] = thinking
            return {"message": message}
        return {"response": answer, **({"thinking": thinking} if thinking else {})}

    def line(self, answer: str = "", thinking: str = "", done: bool = False, extra: Json | None = None) -> bytes:
        data = {"model": self.model, "created_at": now(), **self.part(answer, thinking), "done": done, **(extra or {})}
        return json.dumps(data, ensure_ascii=False).encode() + b"\n"

    def final(self, outcome: Outcome) -> Json:
        reason = "length" if outcome.done.finish_reason in ("length", "context", "cancelled") else "stop"
        return {"done_reason": reason, **_durations(outcome), "think": think_extension(outcome)}

    def reply(self, outcome: Outcome, exclude: bool) -> Json:
        thinking = "" if exclude else outcome.done.thinking
        return {"model": self.model, "created_at": now(), **self.part(outcome.done.answer, thinking), "done": True,
                **self.final(outcome)}

    async def stream(self, exchange: Exchange, exclude: bool) -> AsyncIterator[bytes]:
        """NDJSON, a line per event batch's text (Ollama sends one a token), the stats on the last."""
        try:
            while exchange.open:
                out = [self._event(event, exclude) for _, event in [await exchange.next(), *exchange.ready()]]
                yield b"".join(line for line in out if line)
        finally:
            exchange.cancel()

    def _event(self, event: RunEvent, exclude: bool) -> bytes | None:
        match event:
            case Thinking() if not exclude and event.text:
                return self.line(thinking=event.text)
            case Answer() if event.text:
                return self.line(answer=event.text)
            case Failed():
                return json.dumps({"error": failure_error(event).message}).encode() + b"\n"
            case Outcome():
                return self.line(done=True, extra=self.final(event))
        return None


def tags(runtime: Runtime) -> Json:
    """GET /api/tags: what this server answers to, as Ollama lists its models."""
    return {"models": [_model_entry(runtime, name, ref, _path(runtime, ref)) for name, ref in served_models(runtime).items()]}


def show(runtime: Runtime, body: object) -> Json:
    """POST /api/show: one model's details (its chat template read from the file, nothing loaded)."""
    name = body.get("model") or body.get("name") if isinstance(body, dict) else None
    if not isinstance(name, str):
        raise ApiError(400, "'model' must be a string", param="model")
    served = served_models(runtime)
    key = name[: -len(":latest")] if name.endswith(":latest") else name
    ref = served.get(key) or (runtime.default_model if key == "think" else None)
    if ref is None:
        raise ApiError(404, f"model '{printable(key[:80])}' not found")
    path = _path(runtime, ref)
    entry = _model_entry(runtime, key, ref, path)
    template = ""
    if path is not None:
        from ...engine.model import gguf_chat_template

        try:
            template = gguf_chat_template(path) or ""
        except Exception:  # a file llama.cpp cannot read: no template to show
            template = ""
    return {"modelfile": "", "parameters": "", "template": template, "details": entry["details"],
            "model_info": {"general.architecture": entry["details"]["family"]}, "capabilities": ["completion", "thinking"],
            "modified_at": entry["modified_at"]}


def _path(runtime: Runtime, ref: str) -> Path | None:
    from ...models.resolve import LocalModel, resolve

    try:
        found = resolve(ref, runtime.registry, runtime.paths)
    except Exception:
        return None
    return found.path if isinstance(found, LocalModel) else None


def _model_entry(runtime: Runtime, name: str, ref: str, path: Path | None) -> Json:
    """A model as /api/tags and /api/show list it (`path`: its file, where it is local)."""
    size, modified = 0, time.time()
    if path is not None:
        stat = path.stat()
        size, modified = stat.st_size, stat.st_mtime
    entry = runtime.registry.models.get(ref)
    family = entry.family if entry is not None else "auto"
    return {"name": name, "model": name, "size": size, "digest": hashlib.sha256(display_name(ref).encode()).hexdigest(),
            "modified_at": datetime.fromtimestamp(modified, timezone.utc).isoformat().replace("+00:00", "Z"),
            "details": {"parent_model": "", "format": "gguf", "family": family, "families": [family],
                        "parameter_size": "", "quantization_level": ""}}


def version() -> Response:
    return JSONResponse({"version": OLLAMA_VERSION})


def streaming(chunks: AsyncIterator[bytes]) -> Response:
    return StreamingResponse(chunks, media_type="application/x-ndjson")
