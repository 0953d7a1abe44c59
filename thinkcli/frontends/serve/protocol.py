"""The OpenAI API as requests arrive: validated into a `Parsed` (a plan, n, stream, stops) or refused
with an OpenAI-style error. Pure (tested without a server); also the one place that says which
model names a server answers to.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from starlette.responses import JSONResponse

from ...errors import ThinkError
from ...models.resolve import display_name, is_available
from ...policy.plan import MAX_SEED, MAX_TEMPERATURE, Overrides, Plan, make_plan
from ...policy.tiers import TIER_NAMES
from ...scheduler.results import Failed
from ...scheduler.runtime import Runtime
from ...text import Json, printable

# reasoning_effort → (tier, thinking switched off)
EFFORTS: dict[str, tuple[str, bool]] = {
    "none": ("instant", True), "minimal": ("instant", False), "low": ("light", False),
    "medium": ("standard", False), "high": ("deep", False), "xhigh": ("deep", False), "max": ("deep", False),
}

EFFORT_NAMES = {effort: tier + (" (no thinking)" if off else "") for effort, (tier, off) in EFFORTS.items()}


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
    exclude: bool = False  # think, but do not return the thinking (OpenRouter's reasoning.exclude)


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


def _number(body: Json, name: str, kind: type, low: float, high: float) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int)):
        raise ApiError(400, f"'{name}' must be {'an integer' if kind is int else 'a number'}", param=name)
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' must be between {low:g} and {high:g}", param=name)
    return value


def _stop(body: Json) -> tuple[str, ...]:
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
    ask = thinking_ask(body, limits)
    max_tokens = _number(body, "max_completion_tokens", int, 1, limits.max_tokens)
    if max_tokens is None:
        max_tokens = _number(body, "max_tokens", int, 1, limits.max_tokens)
    overrides = Overrides(
        tier=ask.tier, model=model, no_think=ask.off, max_thinking=ask.cap,
        min_thinking=_number(body, "min_thinking", int, 0, limits.max_tokens),
        samples=_number(body, "samples", int, 1, 64),
        temperature=_number(body, "temperature", float, 0, MAX_TEMPERATURE),
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
                  _stop(body), raw=not chat, exclude=ask.exclude)


@dataclass(frozen=True)
class ThinkingAsk:
    """How much to think, as one request asked it, whatever its dialect."""

    tier: str = "auto"
    off: bool = False  # thinking off (the tier is instant unless one was named)
    cap: int | None = None  # a thinking budget in tokens (0: off)
    exclude: bool = False


def thinking_ask(body: Json, limits: Limits) -> ThinkingAsk:
    """Every spelling apps send for thinking, mapped to one ask: ours (`tier`, `max_thinking`),
    OpenAI's `reasoning_effort`, OpenRouter's `reasoning{effort,max_tokens,exclude,enabled}`,
    Anthropic's `thinking{type,budget_tokens}`, llama.cpp's `reasoning_budget_tokens` (and
    `thinking_budget_tokens`), vLLM's `thinking_token_budget`, `chat_template_kwargs.enable_thinking`.
    Two fields that disagree are a 400 naming both."""
    said: dict[str, tuple[str, object]] = {}

    def say(aspect: str, field: str, value: object) -> None:
        if value is None:
            return
        if aspect in said and said[aspect][1] != value:
            raise ApiError(400, f"'{said[aspect][0]}' and '{field}' disagree: give one of them", param=field)
        said.setdefault(aspect, (field, value))

    def effort(field: str, value: object) -> None:
        if value is None:
            return
        if not isinstance(value, str) or value not in EFFORTS:
            raise ApiError(400, f"'{field}' must be one of {', '.join(EFFORTS)}", param=field)
        tier, off = EFFORTS[value]
        say("tier", field, tier)
        if off:
            say("off", field, True)

    def budget(field: str, value: object, unlimited: bool = False) -> None:
        if unlimited and value == -1:  # llama.cpp's "no limit"
            return
        say("cap", field, _checked_int(value, field, 0, limits.max_tokens))

    effort("reasoning_effort", body.get("reasoning_effort"))
    if "tier" in body:
        tier = body["tier"]
        if not isinstance(tier, str) or tier not in ("auto", *TIER_NAMES):
            raise ApiError(400, f"'tier' must be auto or one of {', '.join(TIER_NAMES)}", param="tier")
        say("tier", "tier", None if tier == "auto" else tier)
    budget("max_thinking", body.get("max_thinking"))
    for field in ("reasoning_budget_tokens", "thinking_budget_tokens"):
        budget(field, body.get(field), unlimited=True)
    budget("thinking_token_budget", body.get("thinking_token_budget"))
    reasoning = _object(body, "reasoning")
    effort("reasoning.effort", reasoning.get("effort"))
    budget("reasoning.max_tokens", reasoning.get("max_tokens"))
    if "enabled" in reasoning:
        say("off", "reasoning.enabled", not _flag(reasoning, "enabled", True, "reasoning.enabled"))
    exclude = _flag(reasoning, "exclude", False, "reasoning.exclude")
    thinking = _object(body, "thinking")
    if "type" in thinking:
        kind = thinking["type"]
        if kind not in ("enabled", "disabled", "adaptive"):
            raise ApiError(400, "'thinking.type' must be enabled, disabled or adaptive", param="thinking.type")
        say("off", "thinking.type", kind == "disabled")
    budget("thinking.budget_tokens", thinking.get("budget_tokens"))
    kwargs = _object(body, "chat_template_kwargs")
    if "enable_thinking" in kwargs:
        say("off", "chat_template_kwargs.enable_thinking",
            not _flag(kwargs, "enable_thinking", True, "chat_template_kwargs.enable_thinking"))
    off = bool(said.get("off", ("", False))[1])
    cap = said.get("cap", ("", None))[1]
    if off and cap:
        raise ApiError(400, f"'{said['off'][0]}' turns thinking off and '{said['cap'][0]}' gives it a budget: "
                            "give one of them", param=said["cap"][0])
    tier = said.get("tier", ("", None))[1] or ("instant" if off else "auto")
    return ThinkingAsk(str(tier), off, cap if isinstance(cap, int) else None, exclude)


def _object(body: Json, name: str) -> Json:
    value = body.get(name)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ApiError(400, f"'{name}' must be an object", param=name)
    return value


def _checked_int(value: object, name: str, low: int, high: int) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, f"'{name}' must be an integer", param=name)
    if not low <= value <= high:
        raise ApiError(400, f"'{name}' must be between {low} and {high}", param=name)
    return value


def _flag(body: Json, name: str, default: bool, shown: str | None = None) -> bool:
    value = body.get(name, default)
    if not isinstance(value, bool):
        raise ApiError(400, f"'{shown or name}' must be true or false", param=shown or name)
    return value


def _cap_completion(plan: Plan, max_tokens: int) -> Plan:
    """max_tokens caps thinking + answer + forced text together: the scheduler splits it (run.fit),
    for it alone knows how many tokens the model's forced budget end takes."""
    if plan.probe is not None and plan.probe.escalation is not None:  # the plan it may escalate to, too
        plan = replace(plan, probe=replace(plan.probe, escalation=_cap_completion(plan.probe.escalation, max_tokens)))
    return replace(plan, budget=replace(plan.budget, max_total=max_tokens))


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


def failure_error(event: Failed) -> ApiError:
    """A task's failure as the client sees it, by its kind (never by its words)."""
    if event.kind == "cancelled":  # queued when the server began to shut down, never started
        return ApiError(503, "the server shut down before this request ran", kind="server_error",
                        code="shutting_down", headers={"Retry-After": "5"})
    message = event.error.split("; raise n_ctx")[0]  # the CLI's hint (flags, variables) means nothing to a client
    if event.kind == "context":
        return ApiError(400, message, kind="invalid_request_error")
    return ApiError(500, message, kind="server_error")


def _available(runtime: Runtime, alias: str) -> bool:
    return is_available(alias, runtime.registry, runtime.paths)
