"""Typed events: the only thing the engine hands to the outside world.

Every event names the sequence it belongs to (`seq`: the caller's key), so one stream can carry
a single answer, N Best-of-N samples, or many batch prompts. Renderers pattern-match on type.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Literal, Union

FinishReason = Literal["stop", "length", "stopped_early", "dropped", "context", "cancelled", "escalated"]
ForcedKind = Literal["budget_forced", "extended"]
ForcedReason = Literal["cap", "confidence", "eos", "wait", "loop", "trial", "give_up"]


@dataclass(frozen=True)
class ForcedEvent:
    """What a sequence's policy inserted: kept in the sequence's record (`events` in --json)."""

    type: ForcedKind
    at_thinking_tokens: int
    forced_tokens: int
    reason: ForcedReason

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"type": self.type, "at_thinking_tokens": self.at_thinking_tokens,
                                   "forced_tokens": self.forced_tokens}
        if self.type == "budget_forced":
            data["reason"] = self.reason
        return data


@dataclass(frozen=True)
class Started:
    """A sequence got a slot; its prompt is in the KV cache."""

    seq: Hashable
    prompt_tokens: int
    reused_tokens: int  # prompt tokens found already in the cache (prefix reuse)


@dataclass(frozen=True)
class Thinking:
    seq: Hashable
    text: str
    tokens: int  # thinking tokens so far in this sequence


@dataclass(frozen=True)
class Answer:
    seq: Hashable
    text: str
    tokens: int  # answer tokens so far


@dataclass(frozen=True)
class BudgetForced:
    """Thinking was ended by us, gracefully: budget message + close tag were inserted."""

    seq: Hashable
    reason: ForcedReason
    at_tokens: int
    forced_tokens: int


@dataclass(frozen=True)
class Extended:
    """A close tag before the minimum was replaced by the wait word."""

    seq: Hashable
    at_tokens: int
    forced_tokens: int


@dataclass(frozen=True)
class Probed:
    """The escalation probe decided: its answer is kept (it goes on), or it ends as `escalated`."""

    seq: Hashable
    tokens: int  # answer tokens the verdict was taken on
    confidence: float | None  # their geometric-mean token probability (None: nothing was sampled)
    threshold: float
    kept: bool


@dataclass(frozen=True)
class Progress:
    """Per-step heartbeat of a sequence (for live counters); sent at most every few tokens."""

    seq: Hashable
    phase: str
    thinking_tokens: int
    answer_tokens: int
    confidence: float | None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    reused_tokens: int
    thinking_tokens: int
    answer_tokens: int
    forced_tokens: int

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "cached_prompt_tokens": self.reused_tokens,
            "thinking_tokens": self.thinking_tokens,
            "answer_tokens": self.answer_tokens,
            "forced_tokens": self.forced_tokens,
        }


@dataclass(frozen=True)
class Span:
    """Characters of the thinking (or answer) text that one step produced, and how sure the model was."""

    chars: int
    prob: float | None  # the sampled token's probability; None: not measured, or not sampled
    # "": sampled. Else inserted by the policy: why (a ForcedReason: the budget message, "Wait"), or
    # "scaffold" (an answer prefix). A forced insertion that shows no text is a span of 0 characters.
    mark: str = ""


@dataclass(frozen=True)
class TokenTrace:
    """A sequence's text token by token, for a trace view (`think logs show`): the spans of each part
    add up to exactly its text in SequenceDone (thinking and answer, stripped)."""

    thinking: tuple[Span, ...] = ()
    answer: tuple[Span, ...] = ()


@dataclass(frozen=True)
class SequenceDone:
    seq: Hashable
    finish_reason: FinishReason
    thinking: str
    answer: str
    usage: Usage
    confidence: float | None  # mean token probability over the whole trace, if measured
    first_token_s: float | None
    elapsed_s: float
    events: tuple[ForcedEvent, ...] = field(default_factory=tuple)
    vote_answer: str | None = None  # under Best-of-N: the answer this sample votes for
    trace: TokenTrace = field(default_factory=TokenTrace)


@dataclass(frozen=True)
class SequenceFailed:
    """A sequence that could not go on (a remote server failed after its retries); the others go on."""

    seq: Hashable
    error: str


EngineEvent = Union[Started, Thinking, Answer, BudgetForced, Extended, Probed, Progress, SequenceDone, SequenceFailed]
