"""prompt → classify → plan → engine → events: the flow every command shares.

The CLI builds a Runtime once per process and calls `ask_events`; what comes back is a stream
of engine events framed by a `Planned` (before generation) and an `Outcome` (after it).
Nothing here prints.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator

from .config import Paths, Settings
from .engine.events import SequenceDone
from .engine.session import Engine, Job, Loaded, sampling_for
from .errors import ThinkError
from .hub import resolve
from .plan import Overrides, Plan, make_plan
from .registry import Registry, load_registry


@dataclass
class Runtime:
    """Per-process state: paths, settings, the registry and the (lazy) engine."""

    paths: Paths
    settings: Settings
    registry: Registry
    engine: Engine

    @classmethod
    def create(cls, gpu_layers: int | None = None, threads: int | None = None) -> "Runtime":
        paths = Paths.resolve()
        settings = Settings.load(paths)
        registry = load_registry(paths.models_file)
        engine = Engine(
            gpu_layers=settings.gpu_layers if gpu_layers is None else gpu_layers,
            threads=settings.threads if threads is None else threads,
            n_ctx=settings.n_ctx,
        )
        return cls(paths, settings, registry, engine)

    @property
    def default_model(self) -> str:
        return self.settings.default_model or self.registry.default_model

    def load(self, ref: str) -> Loaded:
        resolved = resolve(ref, self.registry, self.paths)
        return self.engine.load(resolved.name, resolved.path, resolved.family, self.registry.families)


@dataclass(frozen=True)
class Planned:
    plan: Plan
    model: str
    load_s: float


@dataclass(frozen=True)
class Outcome:
    prompt: str
    model: str
    plan: Plan
    done: SequenceDone
    load_s: float
    total_s: float
    samples: tuple[SequenceDone, ...] = ()
    vote: dict[str, Any] | None = None

    @property
    def tokens_per_second(self) -> float | None:
        generated = self.done.usage.thinking_tokens + self.done.usage.answer_tokens + self.done.usage.forced_tokens
        span = self.done.elapsed_s - (self.done.first_token_s or 0.0)
        if self.samples:
            generated = sum(s.usage.thinking_tokens + s.usage.answer_tokens + s.usage.forced_tokens for s in self.samples)
            span = max(s.elapsed_s for s in self.samples) - min(s.first_token_s or 0 for s in self.samples)
        return generated / span if span > 0 and generated > 1 else None

    def as_dict(self) -> dict[str, Any]:
        plan, done = self.plan, self.done
        data: dict[str, Any] = {
            "prompt": self.prompt,
            "model": self.model,
            "tier": plan.difficulty.tier,
            "score": round(plan.difficulty.score, 3),
            "reasons": list(plan.difficulty.reasons),
            "strategy": plan.strategy,
            "budget": {
                "min_thinking": plan.budget.min_thinking,
                "max_thinking": plan.budget.max_thinking,
                "max_answer": plan.budget.max_answer,
            },
            "thinking": done.thinking,
            "answer": done.answer,
            "finish_reason": done.finish_reason,
            "usage": done.usage.as_dict(),
            "timings": {
                "load_s": round(self.load_s, 4),
                "first_token_s": round(done.first_token_s, 4) if done.first_token_s is not None else None,
                "tokens_per_second": round(self.tokens_per_second, 2) if self.tokens_per_second else None,
                "total_s": round(self.total_s, 4),
            },
            "events": list(done.events),
        }
        if done.confidence is not None:
            data["confidence"] = round(done.confidence, 4)
        if self.samples:
            data["samples"] = [
                {
                    "answer": s.answer,
                    "confidence": round(s.confidence, 4) if s.confidence is not None else None,
                    "tokens": s.usage.thinking_tokens + s.usage.answer_tokens,
                    "stopped_early": s.finish_reason in ("stopped_early", "dropped"),
                    "finish_reason": s.finish_reason,
                }
                for s in self.samples
            ]
            data["vote"] = self.vote
        return data


def build_messages(prompt: str, system: str | None = None) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system}] if system else []
    return [*messages, {"role": "user", "content": prompt}]


def ask_events(runtime: Runtime, prompt: str, overrides: Overrides, system: str | None = None,
               messages: list[dict[str, str]] | None = None, keep_cache: bool = False) -> Iterator[Any]:
    """Plan and generate one answer (single or Best-of-N); yields Planned, events, Outcome."""
    if not prompt.strip():
        raise ThinkError("empty prompt: give a prompt as an argument or on stdin")
    started = time.perf_counter()
    plan = make_plan(prompt, runtime.registry, overrides, runtime.default_model)
    loaded = runtime.load(plan.model)
    yield Planned(plan, loaded.name, loaded.load_s)
    conversation = messages if messages is not None else build_messages(prompt, system)
    sampling = sampling_for(loaded.family, plan.temperature, plan.seed)
    if plan.strategy == "vote" and plan.samples > 1:
        from .engine.vote import run_vote

        done, samples, vote = yield from run_vote(runtime.engine, loaded, conversation, plan, sampling)
        yield Outcome(prompt, loaded.name, plan, done, loaded.load_s, time.perf_counter() - started, samples, vote)
        return
    job = Job("answer", conversation, plan.budget, sampling, keep_cache=keep_cache,
              score_tokens=plan.budget.needs_confidence)
    done_event: SequenceDone | None = None
    for event in runtime.engine.generate(loaded, [job]):
        if isinstance(event, SequenceDone):
            done_event = event
        yield event
    assert done_event is not None
    yield Outcome(prompt, loaded.name, plan, done_event, loaded.load_s, time.perf_counter() - started)
