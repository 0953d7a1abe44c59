"""The one context rule: a task's prompt plus its budget must fit one sequence's room.

A budget that does not fit is lowered (thinking first) and says so in a note; a prompt that
leaves no room for an answer is refused in one line; a total cap (max_tokens) is split between
thinking, its graceful end and the answer. Pure apart from tokenizing through the engine.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..engine.budget import BudgetSpec
from ..engine.session import Loaded
from ..errors import ContextOverflowError
from ..output.records import BudgetLowered
from ..policy.plan import Plan
from .results import Task
from .runtime import Runtime

MIN_ANSWER = 16  # a prompt that leaves less than this for an answer is refused


@dataclass(frozen=True)
class Fitted:
    plan: Plan
    prompt_tokens: list[int]  # empty where a served model's prompt provably fits (its engine asks for ids if need be)
    dropped_messages: int
    notes: tuple[BudgetLowered, ...]
    text: str = ""  # the rendered prompt
    messages: tuple[dict[str, str], ...] = ()  # what it was rendered from (the oldest exchanges left out to fit)


def seq_room(runtime: Runtime, loaded: Loaded) -> int:
    """Tokens one sequence may hold: the configured context, within what the model was trained on."""
    return max(256, min(runtime.settings.n_ctx, loaded.model.info.n_ctx_train or runtime.settings.n_ctx))


def fit(runtime: Runtime, loaded: Loaded, task: Task) -> Fitted:
    """The one context rule: prompt + thinking + answer + forced tokens ≤ one sequence's room."""
    room = seq_room(runtime, loaded)
    forced = runtime.engine.forced(loaded)  # what a graceful end inserts must fit too
    margin = len(forced.budget[0]) + len(forced.wait[0]) + 8
    plan, total_note = _split_total(task.plan, len(forced.budget[0]))
    budget = plan.budget
    messages = list(task.messages)
    first = 1 if messages and messages[0]["role"] == "system" else 0
    dropped = 0
    hint = "raise n_ctx (THINK_N_CTX or n_ctx in config.yaml)"
    if len(task.prompt) > room * 64:  # no tokenizer packs 64 characters a token: refuse before tokenizing
        raise ContextOverflowError(f"the prompt ({len(task.prompt)} characters) cannot fit the context of {room} "
                                   f"tokens; {hint}")
    while True:
        rendered = runtime.engine.render(loaded, messages, budget.thinking, raw=task.raw)
        bound = loaded.model.prompt_bound(rendered.text)
        if bound is not None and bound + budget.max_thinking + budget.max_answer + margin <= room:
            return Fitted(plan, [], dropped, total_note, rendered.text, tuple(messages))  # fits: no round trip
        tokens = loaded.model.prompt_tokens(rendered.text)
        full = len(tokens) + budget.max_thinking + budget.max_answer + margin
        if full <= room or not task.drop_history or len(messages) - first <= 1:
            break
        del messages[first:first + 2]  # the oldest exchange: a user message and its reply
        dropped += 2
    left = room - len(tokens) - margin
    if left < MIN_ANSWER:
        raise ContextOverflowError(f"the prompt is {len(tokens)} tokens; the context holds {room} with room for "
                                   f"an answer; {hint}")
    notes = total_note
    if full > room:
        max_answer = min(budget.max_answer, left)
        max_thinking = max(0, min(budget.max_thinking, left - max_answer))
        notes = (*notes, BudgetLowered("context", (budget.max_thinking, max_thinking), (budget.max_answer, max_answer),
                                       context=room, prompt_tokens=len(tokens)))
        plan = replace(plan, budget=_lowered(budget, max_thinking, max_answer))
    return Fitted(plan, tokens, dropped, notes, rendered.text, tuple(messages))


def _lowered(budget: BudgetSpec, max_thinking: int, max_answer: int, thinking: bool | None = None) -> BudgetSpec:
    """A budget with smaller caps; the minimum and the grace never exceed the new thinking cap."""
    return replace(budget, max_thinking=max_thinking, max_answer=max_answer,
                   thinking=budget.thinking if thinking is None else thinking,
                   min_thinking=min(budget.min_thinking, max_thinking), grace=min(budget.grace, max_thinking))


ANSWER_SHARE_MIN = 16  # of a total cap (max_tokens), what the answer keeps at least (or all of a smaller cap)


def _split_total(plan: Plan, forced: int) -> tuple[Plan, tuple[BudgetLowered, ...]]:
    """A total cap (max_tokens) split into thinking and answer so that thinking + the forced end
    (`forced` tokens: budget message and close tag) + answer never exceed it: the answer keeps a
    quarter (at least 16), thinking the rest; thinking that cannot fit its forced end is off. What
    was lowered is said in a note, never silently."""
    budget = plan.budget
    total = budget.max_total
    if not total:
        return plan, ()
    thinking_on, thinking, answer = budget.thinking, budget.max_thinking, budget.max_answer
    if not budget.thinking or budget.max_thinking == 0:
        answer = min(budget.max_answer, total)
    elif budget.max_thinking + forced + budget.max_answer > total:
        answer = min(budget.max_answer, max(total // 4, min(ANSWER_SHARE_MIN, total)))
        thinking = min(budget.max_thinking, total - answer - forced)
        if thinking <= 0:  # no room for thinking and its graceful end: answer at once
            thinking_on, thinking, answer = False, 0, min(budget.max_answer, total)
        else:
            answer = min(budget.max_answer, total - thinking - forced)
    if (thinking, answer, thinking_on) == (budget.max_thinking, budget.max_answer, budget.thinking):
        return plan, ()
    off = "off: max_tokens leaves no room for thinking and its graceful end" if budget.thinking and not thinking_on else None
    note = BudgetLowered("max_tokens", (budget.max_thinking, thinking), (budget.max_answer, answer), max_tokens=total,
                         thinking_off=off)
    return replace(plan, budget=_lowered(budget, thinking, answer, thinking_on)), (note,)


