"""THE scheduler: tasks (a prompt and its plan) in, typed events and one Outcome per task out.

Every front end comes through here: `ask` is one task, a `chat` turn is one task whose history
may be shortened to fit, `batch` is a stream of tasks. What they share lives here, once:
- **one context-fit rule** (`fit`): the prompt plus its budget must fit one sequence's room;
  a budget that does not fit is lowered (thinking first) and says so; a prompt that leaves no
  room for an answer is refused in one line;
- **Best-of-N** as N decoder requests of one task (seq keys `(task, i)`), tallied here and
  cancelled once the leader cannot be overtaken, sharing the decode steps of everything else;
- **tier→model routing**: tasks run on their plan's model; each model's tasks are decoded
  together, the first model's as they come, the others' after it (both models stay loaded).
Nothing here prints.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Union, cast

from .engine.budget import BudgetSpec
from .engine.decoder import WAIT, Decoder, Request
from .engine.events import Answer, EngineEvent, Probed, SequenceDone, SequenceFailed, Usage
from .engine.remote import RemoteDecoder
from .engine.session import Job, Loaded
from .engine.vote import cannot_be_overtaken, extract_answer, tally
from .errors import ContextOverflowError, ThinkError
from .plan import Plan
from .records import Outcome, error_record, outcome_record
from .runtime import Runtime

MIN_ANSWER = 16  # a prompt that leaves less than this for an answer is refused


@dataclass(frozen=True)
class Task:
    key: str
    prompt: str  # the user's text (what was classified)
    plan: Plan
    messages: tuple[dict[str, str], ...]  # the conversation to render (ends with the prompt)
    keep_cache: bool = False  # chat: the reply stays in the KV cache for the next turn
    drop_history: bool = False  # chat: drop the oldest exchanges to fit, instead of failing
    raw: bool = False  # the prompt is the model's text as it is (/v1/completions): no chat template


@dataclass(frozen=True)
class Planned:
    """A task is about to run: its plan as fitted, the model it runs on."""

    key: str
    plan: Plan
    model: str
    family: str
    load_s: float
    dropped_messages: int = 0  # chat: oldest messages left out to fit the context
    notes: tuple[dict[str, object], ...] = ()


@dataclass(frozen=True)
class Failed:
    """A task that could not run (model missing, prompt too long); the others go on."""

    key: str
    plan: Plan | None
    error: str
    prompt: str | None = None


RunEvent = Union[EngineEvent, Planned, Failed, Outcome]


@dataclass(frozen=True)
class Fitted:
    plan: Plan
    prompt_tokens: list[int]
    dropped_messages: int
    notes: tuple[dict[str, object], ...]
    text: str = ""  # the rendered prompt


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
    notes: tuple[dict[str, object], ...] = total_note
    if full > room:
        max_answer = min(budget.max_answer, left)
        max_thinking = max(0, min(budget.max_thinking, left - max_answer))
        notes = (*notes, {"type": "budget_lowered", "reason": "context", "context": room, "prompt_tokens": len(tokens),
                          "max_thinking": [budget.max_thinking, max_thinking],
                          "max_answer": [budget.max_answer, max_answer]})
        plan = replace(plan, budget=_lowered(budget, max_thinking, max_answer))
    return Fitted(plan, tokens, dropped, notes, rendered.text)


def _lowered(budget: BudgetSpec, max_thinking: int, max_answer: int, thinking: bool | None = None) -> BudgetSpec:
    """A budget with smaller caps; the minimum and the grace never exceed the new thinking cap."""
    return replace(budget, max_thinking=max_thinking, max_answer=max_answer,
                   thinking=budget.thinking if thinking is None else thinking,
                   min_thinking=min(budget.min_thinking, max_thinking), grace=min(budget.grace, max_thinking))


ANSWER_SHARE_MIN = 16  # of a total cap (max_tokens), what the answer keeps at least (or all of a smaller cap)


def _split_total(plan: Plan, forced: int) -> tuple[Plan, tuple[dict[str, object], ...]]:
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
    note: dict[str, object] = {"type": "budget_lowered", "reason": "max_tokens", "max_tokens": total,
                               "max_thinking": [budget.max_thinking, thinking], "max_answer": [budget.max_answer, answer]}
    if budget.thinking and not thinking_on:
        note["thinking"] = "off: max_tokens leaves no room for thinking and its graceful end"
    return replace(plan, budget=_lowered(budget, thinking, answer, thinking_on)), (note,)


@dataclass
class _Group:
    """The N samples of one task in flight; closes into an Outcome when all are accounted for."""

    task: Task
    fitted: Fitted
    loaded: Loaded
    started: float = field(default_factory=time.perf_counter)
    done: dict[int, SequenceDone] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    stopping: bool = False
    probing: bool = False  # the probe's answer is held back until its verdict
    held: list[EngineEvent] = field(default_factory=list)
    probe: dict[str, object] | None = None  # what the probe measured (the record's `probe`)

    @property
    def n(self) -> int:
        return self.fitted.plan.samples

    def outcome(self) -> Outcome:
        plan = self.fitted.plan
        total = time.perf_counter() - self.started
        common = dict(key=self.task.key, prompt=self.task.prompt, model=self.loaded.name,
                      family=self.loaded.family.name, plan=plan, probe=self.probe,
                      load_s=self.loaded.load_s, total_s=total, started_at=self.started, notes=self.fitted.notes)
        if self.n == 1:
            return Outcome(done=self.done[0], **common)  # type: ignore[arg-type]
        samples = tuple(self.done[i] for i in range(self.n))
        answers = [(s.vote_answer, s.confidence) for s in samples]
        vote = tally(answers)
        vote["answers"] = [a for a, _ in answers]
        winner = vote["winner"]
        chosen = [s for s in samples if winner is not None and s.vote_answer == winner]
        best = max(chosen or samples, key=lambda s: s.confidence or 0.0)
        vote["winner_sample"] = samples.index(best)
        return Outcome(done=best, samples=samples, vote=vote, **common)  # type: ignore[arg-type]


def _never_started(key: tuple[str, int]) -> SequenceDone:
    """A Best-of-N sample cancelled before it got a slot (the vote was already decided)."""
    return SequenceDone(key, "stopped_early", "", "", Usage(0, 0, 0, 0, 0), None, None, 0.0)


class Scheduler:
    """Runs tasks on the runtime's engine: `parallel` prompts in flight, Best-of-N inside them."""

    def __init__(self, runtime: Runtime, parallel: int = 1, max_samples: int = 1, source: str = "ask"):
        self.runtime = runtime
        self.source = source  # the front end, as the run log names it: ask, chat, batch, serve, eval …
        self.parallel = max(1, parallel)
        # Sequences decoded together (KV slots): `parallel`, or one prompt's samples if more. A
        # deep prompt's samples take several of them; memory is slots x n_ctx tokens of KV cache.
        self.slots = max(self.parallel, max_samples)
        self._decoder: Decoder | RemoteDecoder | None = None
        self._ready: Callable[[], bool] | None = None
        self._lock = threading.Lock()
        self._cancels: set[str] = set()

    @property
    def last_decoder_stats(self) -> dict[str, object]:
        """The step statistics of the decoder this scheduler last drove (live while it runs)."""
        return asdict(self._decoder.stats) if self._decoder is not None else {}

    def cancel(self, key: str) -> None:
        """Cancel a task from any thread (a client that went away); it ends as `cancelled`."""
        with self._lock:
            self._cancels.add(key)

    def run(self, tasks: Iterable[Task], ready: Callable[[], bool] | None = None) -> Iterator[RunEvent]:
        """Run tasks; with `ready` (a server's "is a task waiting?"), running tasks never wait on
        the source: it is asked for the next task only when one is there or nothing runs."""
        self._ready = ready
        deferred: dict[str, list[Task]] = {}
        source = iter(tasks)
        first = next(source, None)
        if first is None:
            return
        primary = first.plan.model

        def primary_tasks() -> Iterator[Task]:
            for task in itertools.chain((first,), source):
                if task.plan.model == primary:
                    yield task
                else:
                    deferred.setdefault(task.plan.model, []).append(task)

        yield from self._logged(self._run_model(primary, primary_tasks()))
        for model, waiting in deferred.items():
            yield from self._logged(self._run_model(model, iter(waiting)))

    def _logged(self, events: Iterator[RunEvent]) -> Iterator[RunEvent]:
        """Every task's end goes to the run log here, once, whichever front end runs it."""
        run_log = self.runtime.log
        for event in events:
            if run_log is not None:
                match event:
                    case Outcome():
                        run_log.write(outcome_record(event), self.source, event.key,
                                      self.runtime.registry.deep_budget(event.plan.model))
                    case Failed():
                        plan = event.plan
                        run_log.write(error_record(event.key, 0, event.prompt, event.error,
                                                   plan, plan.model if plan else None), self.source, event.key)
            yield event

    def _run_model(self, model: str, tasks: Iterator[Task]) -> Iterator[RunEvent]:
        try:
            loaded = self.runtime.load(model)
        except ThinkError as exc:
            for task in tasks:
                yield Failed(task.key, task.plan, str(exc), task.prompt)
            return
        room = seq_room(self.runtime, loaded)
        decoder = self.runtime.engine.decoder(loaded, self.slots, seq_room=room)
        side: deque[RunEvent] = deque()
        groups: dict[str, _Group] = {}
        pending_samples = 0  # samples of an admitted task not yet handed to the decoder
        escalations: deque[Request] = deque()  # requests of tasks whose probe was unsure

        def close(group: _Group) -> None:
            del groups[group.task.key]
            with self._lock:
                self._cancels.discard(group.task.key)  # a cancel that came too late
            side.append(group.outcome())

        def jobs(group: _Group) -> Iterator[Request]:
            """The decoder requests of a task's samples (all of them, or the one probe)."""
            nonlocal pending_samples
            task, plan = group.task, group.fitted.plan
            sampling = loaded.family.sampling_for(plan.temperature, plan.seed)
            pending_samples = group.n
            for i in range(group.n):
                pending_samples -= 1
                if group.stopping:
                    group.done[i] = _never_started((task.key, i))
                    if len(group.done) == group.n:
                        close(group)
                    continue
                job = Job((task.key, i), list(task.messages), plan.budget, replace(sampling, seed=sampling.seed + i),
                          keep_cache=task.keep_cache and group.n == 1,
                          score_tokens=plan.budget.needs_confidence or group.n > 1, group=task.key)
                yield self.runtime.engine.request(loaded, job, prompt=group.fitted.prompt_tokens,
                                                  text=group.fitted.text)

        def escalate(group: _Group, done: SequenceDone) -> None:
            """The probe was unsure: the same task again, planned to think (the prompt prefix stays cached)."""
            probe_plan = group.fitted.plan
            assert probe_plan.probe is not None and probe_plan.probe.escalation is not None
            try:
                fitted = fit(self.runtime, loaded, replace(group.task, plan=probe_plan.probe.escalation))
            except Exception as exc:
                del groups[group.task.key]
                side.append(Failed(group.task.key, group.task.plan, failure_message(exc), group.task.prompt))
                return
            group.probe = {**(group.probe or {}), "probe_s": round(done.elapsed_s, 4),
                           "escalated_to": fitted.plan.difficulty.tier}
            extra = max(0, fitted.dropped_messages - group.fitted.dropped_messages)
            group.fitted = replace(fitted, notes=(*group.fitted.notes, *fitted.notes))
            group.done.clear()
            group.counts.clear()
            plan = fitted.plan
            side.append(Planned(group.task.key, plan, loaded.name, loaded.family.name, loaded.load_s, extra,
                                ({"type": "probe", **group.probe},)))
            escalations.extend(jobs(group))

        def requests() -> Iterator[Request]:
            while True:
                if escalations:
                    yield escalations.popleft()
                    continue
                if self._ready is not None and (groups or side) and not self._ready():
                    yield WAIT  # nothing queued: the running tasks go on (or run() returns to flush)
                    continue
                task = next(tasks, None)
                if task is None:
                    if any(group.probing for group in groups.values()):
                        yield WAIT  # a probe still running may yet need its escalation run
                        continue
                    return
                if self._take_cancel(task.key):
                    side.append(Failed(task.key, task.plan, "cancelled", task.prompt))
                    continue
                try:
                    fitted = fit(self.runtime, loaded, task)
                except Exception as exc:  # this task fails, whatever it was; the others go on
                    side.append(Failed(task.key, task.plan, failure_message(exc), task.prompt))
                    continue
                group = _Group(task, fitted, loaded, probing=fitted.plan.probe is not None)
                groups[task.key] = group
                side.append(Planned(task.key, fitted.plan, loaded.name, loaded.family.name, loaded.load_s,
                                    fitted.dropped_messages, fitted.notes))
                yield from jobs(group)

        def admit() -> bool:  # a task's remaining samples (or its escalation) always join; a new task waits
            return pending_samples > 0 or bool(escalations) or len(groups) < self.parallel

        self._decoder = decoder
        for event in decoder.run(requests(), self.slots, admit):
            if self._cancels:
                self._apply_cancels(decoder, groups)
            while side:
                yield side.popleft()
            if cast(tuple[str, int], event.seq)[0] not in groups:
                continue  # the last words of a task that already failed
            if isinstance(event, (Answer, Probed)) or (isinstance(event, SequenceDone)
                                                        and event.finish_reason == "escalated"):
                key = cast(tuple[str, int], event.seq)[0]
                group = groups[key]
                if group.probing:
                    if isinstance(event, Answer):
                        group.held.append(event)  # not shown before the probe's verdict
                        continue
                    if isinstance(event, Probed):
                        group.probing = False
                        group.probe = {"tokens": event.tokens, "confidence": _rounded(event.confidence),
                                       "threshold": event.threshold, "kept": event.kept}
                        held, group.held = group.held, []
                        if event.kept:
                            yield from held
                        yield event
                        continue
                if isinstance(event, SequenceDone) and group.fitted.plan.probe is not None \
                        and group.fitted.plan.probe.escalation is not None:
                    escalate(group, event)
                    while side:
                        yield side.popleft()
                    continue
            if isinstance(event, SequenceFailed):  # a remote sample failed after its retries: the task fails
                key = cast(tuple[str, int], event.seq)[0]
                failed = groups.pop(key, None)
                if failed is not None:
                    failed.stopping = True
                    for other in range(failed.n):
                        if other not in failed.done:
                            decoder.cancel((key, other), "cancelled")
                    side.append(Failed(key, failed.fitted.plan, event.error, failed.task.prompt))
                while side:
                    yield side.popleft()
                continue
            if isinstance(event, SequenceDone):
                key, index = cast(tuple[str, int], event.seq)
                group = groups[key]
                if group.n > 1:
                    event = replace(event, vote_answer=_vote_answer(event))
                    if event.vote_answer is not None:
                        group.counts[event.vote_answer] += 1
                group.done[index] = event
                yield event
                running = group.n - len(group.done)
                if running and not group.stopping and cannot_be_overtaken(group.counts, running):
                    group.stopping = True
                    for other in range(group.n):
                        if other not in group.done:
                            decoder.cancel((key, other))
                if len(group.done) == group.n:
                    close(group)
                while side:
                    yield side.popleft()
                continue
            yield event
        while side:
            yield side.popleft()

    def _take_cancel(self, key: str) -> bool:
        with self._lock:
            if key in self._cancels:
                self._cancels.discard(key)
                return True
        return False

    def _apply_cancels(self, decoder: Decoder | RemoteDecoder, groups: dict[str, _Group]) -> None:
        """Cancel the running tasks asked for (decoder calls stay on this, the decoding, thread)."""
        with self._lock:
            running = [key for key in self._cancels if key in groups]
            self._cancels.difference_update(running)
        for key in running:
            group = groups[key]
            group.stopping = True
            for index in range(group.n):
                if index not in group.done:
                    decoder.cancel((key, index), "cancelled")


def failure_message(exc: BaseException) -> str:
    """One task's failure as its record says it: a ThinkError's own words, else what broke."""
    if isinstance(exc, ThinkError):
        return str(exc)
    return f"internal error: {type(exc).__name__}: {str(exc)[:200]}"


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def _vote_answer(done: SequenceDone) -> str | None:
    """The answer a finished sample votes for; dropped or stopped samples do not vote."""
    if done.finish_reason in ("dropped", "stopped_early", "cancelled"):
        return None
    return extract_answer(done.answer)


def messages_for(prompt: str, system: str | None = None) -> tuple[dict[str, str], ...]:
    system_message = ({"role": "system", "content": system},) if system else ()
    return (*system_message, {"role": "user", "content": prompt})
