"""Outcome: the one result of one prompt, and its one JSON schema.

`think ask --json` prints `outcome_record(...)`; a `think batch` line is the same record with the
item's `id`, `line` and `error` (a failed item has every other key, set to null). The run log and
the server to come read the same record. The README documents these keys once.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from ..engine.events import SequenceDone
from ..engine.vote import Vote
from ..policy.plan import Plan
from ..text import Json
from .trace import trace_record

Record = Json  # the record: built here, the one owner of its keys
"""A JSON record as written (--json, a JSONL line, a log row) or read back from disk: built only here."""

# Every key of a record, in order. A failed batch item carries them all (null where unknown).
RECORD_KEYS = (
    "id", "line", "prompt", "model", "family", "tier", "score", "reasons", "strategy", "budget", "thinking", "answer",
    "finish_reason", "confidence", "probe", "usage", "timings", "events", "samples", "vote", "error",
)


@dataclass(frozen=True)
class BudgetLowered:
    """The scheduler lowered a budget to fit the context, or a request's total cap (max_tokens)."""

    reason: Literal["context", "max_tokens"]
    max_thinking: tuple[int, int]  # (asked, given)
    max_answer: tuple[int, int]
    context: int = 0  # reason "context": the room and the prompt it had to hold
    prompt_tokens: int = 0
    max_tokens: int = 0  # reason "max_tokens": the cap
    thinking_off: str | None = None  # why thinking is off, where the cap left no room for it

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"type": "budget_lowered", "reason": self.reason}
        if self.reason == "context":
            data.update(context=self.context, prompt_tokens=self.prompt_tokens)
        else:
            data["max_tokens"] = self.max_tokens
        data.update(max_thinking=list(self.max_thinking), max_answer=list(self.max_answer))
        if self.thinking_off:
            data["thinking"] = self.thinking_off
        return data


@dataclass(frozen=True)
class ProbeReport:
    """What the escalation probe measured, and what came of it (the record's `probe`)."""

    tokens: int
    confidence: float | None  # None: no token probabilities to judge by
    threshold: float
    kept: bool
    probe_s: float | None = None  # set when it escalated
    escalated_to: str | None = None

    def as_dict(self) -> dict[str, object]:
        data: dict[str, object] = {"tokens": self.tokens, "confidence": self.confidence,
                                   "threshold": self.threshold, "kept": self.kept}
        if self.escalated_to is not None:
            data.update(probe_s=self.probe_s, escalated_to=self.escalated_to)
        return data


Note = Union[BudgetLowered, ProbeReport]


@dataclass(frozen=True)
class Outcome:
    """What the scheduler hands back for one task: the chosen sequence and how it came about."""

    key: str
    prompt: str
    model: str
    family: str  # the model family (detected from the chat template for a bare .gguf)
    plan: Plan  # as run: after fitting the context (the budget may have been lowered)
    done: SequenceDone  # the answer (the vote's winner under Best-of-N)
    load_s: float
    total_s: float
    started_at: float  # perf_counter() when the task got its first slot
    samples: tuple[SequenceDone, ...] = ()
    vote: Vote | None = None
    notes: tuple[BudgetLowered, ...] = ()  # budgets lowered to fit the context or max_tokens
    probe: ProbeReport | None = None  # the escalation probe: what it measured, kept or escalated

    @property
    def tokens_per_second(self) -> float | None:
        runs = self.samples or (self.done,)
        generated = sum(s.usage.thinking_tokens + s.usage.answer_tokens + s.usage.forced_tokens for s in runs)
        span = max(s.elapsed_s for s in runs) - min(s.first_token_s or 0.0 for s in runs)
        return generated / span if span > 0 and generated > 1 else None


def _round(value: float | None, digits: int = 4) -> float | None:
    return round(value, digits) if value is not None else None


def outcome_record(outcome: Outcome, keep_thinking: bool = True, keep_trace: bool = False) -> Record:
    """The JSON record of a finished prompt (ask --json, batch lines); the run log's keeps the trace too
    (the text token by token, output/trace.py), which no other reader needs."""
    plan, done = outcome.plan, outcome.done
    record: Record = {
        "prompt": outcome.prompt,
        "model": outcome.model,
        "family": outcome.family,
        "tier": plan.difficulty.tier,
        "score": round(plan.difficulty.score, 3),
        "reasons": list(plan.difficulty.reasons),
        "strategy": plan.strategy,
        "budget": {
            "min_thinking": plan.budget.min_thinking,
            "max_thinking": plan.budget.max_thinking,
            "max_answer": plan.budget.max_answer,
            "samples": plan.samples,
        },
        "thinking": done.thinking,
        "answer": done.answer,
        "finish_reason": done.finish_reason,
        "confidence": _round(done.confidence),
        "probe": outcome.probe.as_dict() if outcome.probe else None,
        "usage": done.usage.as_dict(),
        "timings": {
            "load_s": round(outcome.load_s, 4),
            "first_token_s": _round(done.first_token_s),
            "tokens_per_second": _round(outcome.tokens_per_second, 2),
            "total_s": round(outcome.total_s, 4),
        },
        "events": [*(note.as_dict() for note in outcome.notes), *(event.as_dict() for event in done.events)],
        "samples": None,
        "vote": outcome.vote.as_dict() if outcome.vote else None,
    }
    if keep_trace:
        record["trace"] = trace_record(done.trace)
    if not keep_thinking:
        del record["thinking"]
    if outcome.samples:
        record["samples"] = [
            {
                "answer": s.vote_answer,
                "confidence": _round(s.confidence),
                "tokens": s.usage.thinking_tokens + s.usage.answer_tokens,
                "thinking_tokens": s.usage.thinking_tokens,
                "stopped_early": s.finish_reason in ("stopped_early", "dropped"),
                "finish_reason": s.finish_reason,
            }
            for s in outcome.samples
        ]
    return record


def batch_record(item_id: str, line: int, record: Record) -> Record:
    """A batch line: the id and input line first, then the outcome record, then `error: null`."""
    return {"id": item_id, "line": line, **record, "error": None}


def error_record(item_id: str, line: int, prompt: str | None, error: str, plan: Plan | None = None,
                 model: str | None = None, keep_thinking: bool = True) -> Record:
    """A failed item: every key of a record (as `outcome_record` keeps them), null where unknown."""
    record: Record = dict.fromkeys(RECORD_KEYS)
    if not keep_thinking:
        del record["thinking"]
    record.update(id=item_id, line=line, prompt=prompt, model=model, error=error)
    if plan is not None:
        record.update(tier=plan.difficulty.tier, score=round(plan.difficulty.score, 3),
                      reasons=list(plan.difficulty.reasons), strategy=plan.strategy)
    return record
