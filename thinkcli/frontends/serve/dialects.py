"""Responses out, one builder per dialect: what a whole reply and a streamed chunk look like.

A dialect knows only shapes; what to say (answers, thinking, finish reasons, the `think` object)
comes from the outcomes. OpenAI chat and OpenAI text completions share everything but the choice.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field

from ...output.records import Outcome, outcome_record

# "cancelled" reaches a client only when the server cut it (shutdown): the reply is incomplete, so "length"
FINISH = {"stop": "stop", "length": "length", "context": "length", "stopped_early": "stop", "dropped": "stop",
          "cancelled": "length"}
THINK_KEYS = ("model", "family", "tier", "score", "reasons", "strategy", "budget", "finish_reason", "confidence",
              "probe", "events", "samples", "vote", "timings")

Body = dict[str, object]


def finish_of(outcome: Outcome) -> str:
    return FINISH.get(outcome.done.finish_reason, "stop")


def think_extension(outcome: Outcome) -> Body:
    """What the policy did for one choice (the response's `think`): the record without its texts."""
    record = outcome_record(outcome, keep_thinking=False)
    extension: Body = {key: record[key] for key in THINK_KEYS}
    if outcome.done.finish_reason == "cancelled":
        extension["interrupted"] = "the server shut down before this reply was complete"
    return extension


def usage_of(outcomes: list[Outcome]) -> Body:
    prompt = outcomes[0].done.usage.prompt_tokens if outcomes else 0
    cached = outcomes[0].done.usage.reused_tokens if outcomes else 0
    runs = [s for o in outcomes for s in (o.samples or (o.done,))]
    thinking = sum(s.usage.thinking_tokens + s.usage.forced_tokens for s in runs)
    answer = sum(s.usage.answer_tokens for s in runs)
    return {"prompt_tokens": prompt, "completion_tokens": thinking + answer, "total_tokens": prompt + thinking + answer,
            "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": thinking}}


def reasoning(thinking: str) -> Body:
    """The thinking under both names clients read: `reasoning_content` (llama-server, DeepSeek) and
    `reasoning` (OpenRouter, vLLM)."""
    return {"reasoning_content": thinking or None, "reasoning": thinking or None}


def sse(data: object) -> bytes:
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


@dataclass
class OpenAIChat:
    """POST /v1/chat/completions: `message` and `delta`, thinking in `reasoning_content`."""

    id: str
    model: str
    created: int = field(default_factory=lambda: int(time.time()))
    prefix = "chatcmpl-"
    object = "chat.completion"
    chunk_object = "chat.completion.chunk"

    @property
    def ident(self) -> str:
        return self.prefix + self.id

    def choice(self, index: int, answer: str, thinking: str, finish: str) -> Body:
        message = {"role": "assistant", "content": answer, **reasoning(thinking)}
        return {"index": index, "message": message, "finish_reason": finish, "logprobs": None}

    def delta(self, index: int, delta: dict[str, str], finish: str | None) -> Body:
        if "reasoning_content" in delta:
            delta = {**delta, "reasoning": delta["reasoning_content"]}
        return {"index": index, "delta": delta, "finish_reason": finish, "logprobs": None}

    def opening(self, n: int, extra: Body | None = None) -> bytes:
        """What a stream starts with: the assistant's role, once per choice (and `extra`: the plan)."""
        return b"".join(self.chunk(index, {"role": "assistant", "content": ""}, extra=extra) for index in range(n))

    def reply(self, outcomes: list[Outcome], exclude: bool = False) -> Body:
        choices = [self.choice(i, o.done.answer, "" if exclude else o.done.thinking, finish_of(o))
                   for i, o in enumerate(outcomes)]
        think = [think_extension(o) for o in outcomes] if len(outcomes) > 1 else think_extension(outcomes[0])
        return {"id": self.ident, "object": self.object, "created": self.created, "model": self.model,
                "choices": choices, "usage": usage_of(outcomes), "think": think}

    def chunk(self, index: int, delta: dict[str, str], finish: str | None = None, extra: Body | None = None) -> bytes:
        return sse({"id": self.ident, "object": self.chunk_object, "created": self.created, "model": self.model,
                    "choices": [self.delta(index, delta, finish)], **(extra or {})})

    def usage_chunk(self, outcomes: list[Outcome]) -> bytes:
        return sse({"id": self.ident, "object": self.chunk_object, "created": self.created, "model": self.model,
                    "choices": [], "usage": usage_of(outcomes)})


@dataclass
class OpenAIText(OpenAIChat):
    """POST /v1/completions: `text` in place of a message (and of a delta when streamed)."""

    prefix = "cmpl-"
    object = "text_completion"
    chunk_object = "text_completion"

    def choice(self, index: int, answer: str, thinking: str, finish: str) -> Body:
        return {"index": index, "text": answer, **reasoning(thinking), "finish_reason": finish, "logprobs": None}

    def delta(self, index: int, delta: dict[str, str], finish: str | None) -> Body:
        choice: Body = {"index": index, "text": delta.get("content", ""), "finish_reason": finish, "logprobs": None}
        if "reasoning_content" in delta:
            choice.update(reasoning(delta["reasoning_content"]))
        return choice

    def opening(self, n: int, extra: Body | None = None) -> bytes:
        return b""
