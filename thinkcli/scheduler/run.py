"""THE scheduler: tasks (a prompt and its plan) in, typed events and one Outcome per task out.

Every front end comes through here: `ask` is one task, a `chat` turn is one task whose history
may be shortened to fit, `batch` is a stream of tasks. What they share lives here, once:
- **one context-fit rule** (`fit.fit`);
- **Best-of-N** as N decoder requests of one task (seq keys `(task, i)`), tallied here and
  cancelled once the leader cannot be overtaken, sharing the decode steps of everything else;
- **the escalation probe**: a task first runs without thinking; its answer is held back until the
  probe's verdict, then shown (kept) or dropped for a run that thinks (escalated);
- **tier→model routing**: tasks run on their plan's model; each model's tasks are decoded
  together, the first model's as they come, the others' after it (both models stay loaded).
Each task is a small state machine (`TaskState`: probing → running → closed), pure and tested on
its own; `_ModelRun` feeds it the decoder's events. Nothing here prints.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace

from ..engine.events import Answer, EngineEvent, Probed, SequenceDone, SequenceFailed, Usage
from ..engine.protocol import WAIT, Pending, SequenceDecoder
from ..engine.session import Job, Loaded
from ..engine.vote import WINDOW, cannot_be_overtaken, extract_answer, leader_is_safe, tally
from ..errors import ThinkError
from ..output.records import Outcome, ProbeReport, error_record, outcome_record
from ..policy.plan import Plan
from .fit import Fitted, fit, seq_room
from .results import Failed, Planned, RunEvent, Task, failed, failure_kind
from .runtime import Runtime


def _seq(event: EngineEvent) -> tuple[str, int]:
    key = event.seq
    assert isinstance(key, tuple)
    return key[0], key[1]


@dataclass
class TaskState:
    """One task's samples in flight: what has finished, the vote so far, the probe's held answer."""

    task: Task
    fitted: Fitted
    model: str
    family: str
    load_s: float
    started: float = field(default_factory=time.perf_counter)
    done: dict[int, SequenceDone] = field(default_factory=dict)
    counts: Counter[str] = field(default_factory=Counter)
    stopping: bool = False  # the vote is decided (or the task cancelled): no more samples start
    probing: bool = False  # the probe's answer is held back until its verdict
    held: list[EngineEvent] = field(default_factory=list)
    probe: ProbeReport | None = None
    launched: int = 0  # samples handed to the decoder (a vote starts them a window at a time)
    stopped: str | None = None  # why a vote stopped early: "safe" or "decided"

    @property
    def n(self) -> int:
        return self.fitted.plan.samples

    @property
    def escalation(self) -> Plan | None:
        probe = self.fitted.plan.probe
        return probe.escalation if probe is not None else None

    @property
    def more_to_start(self) -> bool:
        """A vote still open with samples not yet started (the next window comes when this one ends)."""
        return not self.stopping and self.launched < self.n

    @property
    def complete(self) -> bool:
        return len(self.done) == self.n

    def verdict(self, event: Probed) -> list[EngineEvent]:
        """The probe decided: the held answer is released if it was kept (then the verdict itself)."""
        self.probing = False
        self.probe = ProbeReport(event.tokens, _rounded(event.confidence), event.threshold, event.kept)
        held, self.held = self.held, []
        return [*held, event] if event.kept else [event]

    def escalated(self, fitted: Fitted, probe_s: float) -> Planned:
        """The probe was unsure: the task starts over with the escalation's fitted plan."""
        report = self.probe or ProbeReport(0, None, self.fitted.plan.budget.probe_confidence, False)
        self.probe = replace(report, probe_s=round(probe_s, 4), escalated_to=fitted.plan.difficulty.tier)
        extra = max(0, fitted.dropped_messages - self.fitted.dropped_messages)
        self.fitted = replace(fitted, notes=(*self.fitted.notes, *fitted.notes))
        self.done.clear()
        self.counts.clear()
        self.launched = 0
        return Planned(self.task.key, fitted.plan, self.model, self.family, self.load_s, extra, (self.probe,))

    def next_window(self) -> list[int]:
        """The samples to start now: all of a single run; a vote's next window (none once decided,
        or while a window still runs)."""
        if self.stopping or self.launched >= self.n or self.launched > len(self.done):
            return []
        size = self.n if self.n == 1 else WINDOW
        window = list(range(self.launched, min(self.n, self.launched + size)))
        self.launched += len(window)
        return window

    def finished(self, index: int, done: SequenceDone) -> tuple[SequenceDone, list[int]]:
        """A sample ended: it votes (under Best-of-N); returns it and the samples to cancel now that
        the vote is decided (the leader cannot be overtaken, or its posterior says it is safe)."""
        if self.n > 1:
            done = replace(done, vote_answer=_vote_answer(done))
            if done.vote_answer is not None:
                self.counts[done.vote_answer] += 1
        self.done[index] = done
        left = self.n - len(self.done)
        if left and not self.stopping:
            if cannot_be_overtaken(self.counts, left):
                self.stopped = "decided"
                return done, self.stop()
            if leader_is_safe(self.counts):
                self.stopped = "safe"
                return done, self.stop()
        return done, []

    def stop(self) -> list[int]:
        """No more samples: those never started end now (stopped early); those running, to cancel."""
        self.stopping = True
        for i in range(self.launched, self.n):
            self.done[i] = _never_started((self.task.key, i))
        return [i for i in range(self.n) if i not in self.done]

    def outcome(self) -> Outcome:
        plan = self.fitted.plan
        common = dict(key=self.task.key, prompt=self.task.prompt, model=self.model, family=self.family, plan=plan,
                      probe=self.probe, load_s=self.load_s, total_s=time.perf_counter() - self.started,
                      started_at=self.started, notes=self.fitted.notes)
        if self.n == 1:
            return Outcome(done=self.done[0], **common)  # type: ignore[arg-type]
        samples = tuple(self.done[i] for i in range(self.n))
        vote = tally([(s.vote_answer, s.confidence) for s in samples])
        chosen = [s for s in samples if vote.winner is not None and s.vote_answer == vote.winner]
        best = max(chosen or samples, key=lambda s: s.confidence or 0.0)
        vote = vote.with_samples(tuple(s.vote_answer for s in samples), samples.index(best), self.launched,
                                 self.stopped)
        return Outcome(done=best, samples=samples, vote=vote, **common)  # type: ignore[arg-type]


def _never_started(key: tuple[str, int]) -> SequenceDone:
    """A Best-of-N sample cancelled before it got a slot (the vote was already decided)."""
    return SequenceDone(key, "stopped_early", "", "", Usage(0, 0, 0, 0, 0), None, None, 0.0)


class Scheduler:
    """Runs tasks on the runtime's engine: `parallel` prompts in flight, Best-of-N inside them."""

    def __init__(self, runtime: Runtime, parallel: int = 1, max_samples: int = 1, source: str = "ask",
                 streamed: bool = True):
        self.runtime = runtime
        self.streamed = streamed  # False: no one reads the text as it comes (batch, eval): see Request.streamed
        self.source = source  # the front end, as the run log names it: ask, chat, batch, serve, eval …
        self.parallel = max(1, parallel)
        # Sequences decoded together (KV slots): `parallel`, or one prompt's samples if more. A
        # deep prompt's samples take several of them; memory is slots x n_ctx tokens of KV cache.
        self.slots = max(self.parallel, max_samples)
        self._decoder: SequenceDecoder | None = None
        self.ready: Callable[[], bool] | None = None  # run()'s: is a task waiting at the source?
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
        self.ready = ready
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
                        run_log.write(outcome_record(event, keep_trace=True), self.source, event.key,
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
                yield Failed(task.key, task.plan, str(exc), task.prompt, failure_kind(exc))
            return
        decoder = self.runtime.engine.decoder(loaded, self.slots, seq_room=seq_room(self.runtime, loaded))
        self._decoder = decoder
        yield from _ModelRun(self, loaded, decoder, tasks).events()

    @property
    def cancels_asked(self) -> bool:
        return bool(self._cancels)

    def take_cancel(self, key: str) -> bool:
        with self._lock:
            if key in self._cancels:
                self._cancels.discard(key)
                return True
        return False

    def take_running_cancels(self, running: Iterable[str]) -> list[str]:
        """The cancels asked for tasks now running (the decoder is told on its own thread)."""
        with self._lock:
            taken = [key for key in self._cancels if key in running]
            self._cancels.difference_update(taken)
        return taken

    def forget_cancel(self, key: str) -> None:
        with self._lock:
            self._cancels.discard(key)  # a cancel that came too late


class _ModelRun:
    """One model's tasks through one decoder: admits tasks, starts their samples, routes events
    to each task's state, and queues what the front end sees (`side`) in order."""

    def __init__(self, scheduler: Scheduler, loaded: Loaded, decoder: SequenceDecoder, tasks: Iterator[Task]):
        self.scheduler, self.runtime, self.loaded, self.decoder = scheduler, scheduler.runtime, loaded, decoder
        self.tasks = tasks
        self.states: dict[str, TaskState] = {}
        self.side: deque[RunEvent] = deque()
        self.pending_samples = 0  # samples of an admitted task not yet handed to the decoder
        self.escalations: deque[Pending] = deque()  # requests of tasks whose probe was unsure

    def events(self) -> Iterator[RunEvent]:
        for event in self.decoder.run(self._requests(), self.scheduler.slots, self._admit):
            if self.scheduler.cancels_asked:
                self._apply_cancels()
            yield from self._flush()
            yield from self._route(event)
            yield from self._flush()
        yield from self._flush()

    def _flush(self) -> Iterator[RunEvent]:
        while self.side:
            yield self.side.popleft()

    def _route(self, event: EngineEvent) -> Iterator[RunEvent]:
        key, index = _seq(event)
        state = self.states.get(key)
        if state is None:
            return  # the last words of a task that already failed
        if state.probing and isinstance(event, Answer):
            state.held.append(event)  # not shown before the probe's verdict
        elif state.probing and isinstance(event, Probed):
            yield from state.verdict(event)
        elif isinstance(event, SequenceDone) and event.finish_reason == "escalated" and state.escalation is not None:
            self._escalate(state, state.escalation, event)
        elif isinstance(event, SequenceFailed):  # a remote sample failed after its retries: the task fails
            del self.states[key]
            for other in state.stop():
                self.decoder.cancel((key, other), "cancelled")
            self.side.append(Failed(key, state.fitted.plan, event.error, state.task.prompt, "remote"))
        elif isinstance(event, SequenceDone):
            done, to_cancel = state.finished(index, event)
            yield done
            for other in to_cancel:
                self.decoder.cancel((key, other))
            if state.complete:
                self._close(state)
            else:
                self.escalations.extend(self._samples(state, state.next_window()))  # the vote is still open
        else:
            yield event

    def _requests(self) -> Iterator[Pending]:
        while True:
            if self.escalations:
                yield self.escalations.popleft()
                continue
            ready = self.scheduler.ready
            if ready is not None and (self.states or self.side) and not ready():
                yield WAIT  # nothing queued: the running tasks go on (or run() returns to flush)
                continue
            task = next(self.tasks, None)
            if task is None:
                if any(state.probing or state.more_to_start for state in self.states.values()):
                    yield WAIT  # a probe may yet need its escalation run, a vote its next window
                    continue
                return
            if self.scheduler.take_cancel(task.key):
                self.side.append(Failed(task.key, task.plan, "cancelled", task.prompt, "cancelled"))
                continue
            try:
                fitted = fit(self.runtime, self.loaded, task)
            except Exception as exc:  # this task fails, whatever it was; the others go on
                self.side.append(failed(task, exc))
                continue
            loaded = self.loaded
            state = TaskState(task, fitted, loaded.name, loaded.family.name, loaded.load_s,
                              probing=fitted.plan.probe is not None)
            self.states[task.key] = state
            self.side.append(Planned(task.key, fitted.plan, loaded.name, loaded.family.name, loaded.load_s,
                                     fitted.dropped_messages, fitted.notes))
            yield from self._samples(state, state.next_window())

    def _samples(self, state: TaskState, indices: list[int]) -> Iterator[Pending]:
        """The decoder requests of some of a task's samples (a window of a vote, the one probe)."""
        task, plan = state.task, state.fitted.plan
        sampling = self.loaded.family.sampling_for(plan.temperature, plan.seed)
        self.pending_samples = len(indices)
        for i in indices:
            self.pending_samples -= 1
            if state.stopping:
                state.done[i] = _never_started((task.key, i))
                if state.complete:
                    self._close(state)
                continue
            job = Job((task.key, i), list(state.fitted.messages or task.messages), plan.budget,
                      replace(sampling, seed=sampling.seed + i),
                      keep_cache=task.keep_cache and state.n == 1,
                      score_tokens=plan.budget.needs_confidence or state.n > 1 or self.runtime.settings.token_probs,
                      group=task.key, stop=task.stop, raw=task.raw, streamed=self.scheduler.streamed)
            yield self.runtime.engine.request(self.loaded, job, prompt=state.fitted.prompt_tokens,
                                              text=state.fitted.text)

    def _admit(self) -> bool:
        """A task's remaining samples (or its escalation) always join; a new task waits for room."""
        return self.pending_samples > 0 or bool(self.escalations) or len(self.states) < self.scheduler.parallel

    def _escalate(self, state: TaskState, escalation: Plan, done: SequenceDone) -> None:
        """The probe was unsure: the same task again, planned to think (the prompt prefix stays cached)."""
        try:
            fitted = fit(self.runtime, self.loaded, replace(state.task, plan=escalation))
        except Exception as exc:
            del self.states[state.task.key]
            self.side.append(failed(state.task, exc))
            return
        self.side.append(state.escalated(fitted, done.elapsed_s))
        self.escalations.extend(self._samples(state, state.next_window()))

    def _close(self, state: TaskState) -> None:
        del self.states[state.task.key]
        self.scheduler.forget_cancel(state.task.key)
        self.side.append(state.outcome())

    def _apply_cancels(self) -> None:
        """Cancel the running tasks asked for (decoder calls stay on this, the decoding, thread)."""
        for key in self.scheduler.take_running_cancels(self.states):
            for index in self.states[key].stop():
                self.decoder.cancel((key, index), "cancelled")


def _rounded(value: float | None) -> float | None:
    return round(value, 4) if value is not None else None


def _vote_answer(done: SequenceDone) -> str | None:
    """The answer a finished sample votes for; dropped or stopped samples do not vote."""
    if done.finish_reason in ("dropped", "stopped_early", "cancelled"):
        return None
    return extract_answer(done.answer)

