"""What crosses out of the scheduler: tasks in; Planned, Failed, engine events and Outcomes out.

Typed, so a front end decides by kind, never by reading an error's words: the server answers a
`context` failure with 400 and a `cancelled` one with 503 because the scheduler said which it was.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Union

from ..engine.events import EngineEvent
from ..errors import ContextOverflowError, ThinkError
from ..output.records import Note, Outcome
from ..policy.plan import Plan

FailureKind = Literal["context", "model", "cancelled", "remote", "internal"]


@dataclass(frozen=True)
class Task:
    key: str
    prompt: str  # the user's text (what was classified)
    plan: Plan
    messages: tuple[dict[str, str], ...]  # the conversation to render (ends with the prompt)
    keep_cache: bool = False  # chat: the reply stays in the KV cache for the next turn
    drop_history: bool = False  # chat: drop the oldest exchanges to fit, instead of failing
    raw: bool = False  # the prompt is the model's text as it is (/v1/completions): no chat template
    stop: tuple[str, ...] = ()  # the answer ends before the first of these (a server request's `stop`)


@dataclass(frozen=True)
class Planned:
    """A task is about to run: its plan as fitted, the model it runs on."""

    key: str
    plan: Plan
    model: str
    family: str
    load_s: float
    dropped_messages: int = 0  # chat: oldest messages left out to fit the context
    notes: tuple[Note, ...] = ()


@dataclass(frozen=True)
class Failed:
    """A task that could not run (model missing, prompt too long); the others go on."""

    key: str
    plan: Plan | None
    error: str
    prompt: str | None = None
    kind: FailureKind = "internal"


RunEvent = Union[EngineEvent, Planned, Failed, Outcome]


def failure_kind(exc: BaseException) -> FailureKind:
    if isinstance(exc, ContextOverflowError):
        return "context"
    return "model" if isinstance(exc, ThinkError) else "internal"


def failure_message(exc: BaseException) -> str:
    """One task's failure as its record says it: a ThinkError's own words, else what broke."""
    if isinstance(exc, ThinkError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {str(exc)[:200]}"


def failed(task: Task, exc: BaseException) -> Failed:
    return Failed(task.key, task.plan, failure_message(exc), task.prompt, failure_kind(exc))


def messages_for(prompt: str, system: str | None = None) -> tuple[dict[str, str], ...]:
    system_message = ({"role": "system", "content": system},) if system else ()
    return (*system_message, {"role": "user", "content": prompt})
