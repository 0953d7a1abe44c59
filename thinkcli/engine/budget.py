"""Per-sequence thinking policy: cap, minimum, confidence stop, answer cap.

Pure logic over token ids and their text, so it is tested with scripted tokens. The decoder asks
`decide()` for every sampled token and carries out the returned Step: roll back `rollback` tokens
already in the KV cache, then feed `tokens` (the sampled one and/or forced ones).
"""

from __future__ import annotations

import math
import re
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field, replace

from .events import (
    Answer,
    BudgetForced,
    EngineEvent,
    Extended,
    FinishReason,
    ForcedEvent,
    ForcedKind,
    ForcedReason,
    Probed,
    Span,
    Thinking,
    TokenTrace,
)
from .thinking import ANSWER, DONE, THINKING, Chunk, ThinkingParser

SENTENCE_ENDS = (".", "!", "?", "\n")
LOOP_TOKENS = 64  # a repeated run this long (and at least two periods) is a loop
GIVE_UP_AFTER = 0.5  # of the cap: before this, a trial that is not yet sure is only a trace in progress
LINE_KEPT = 2048  # of a line of thinking, the characters a stated answer is looked for in (its end)
LOOP_GRAM = 12  # tokens compared at once: a step pattern (digits, letters that change) never repeats this long


def states(line: str, answer: str) -> bool:
    """Whether a line of thinking says `answer` word for word: a number where it stands as a result — after
    a space, `=`, `:`, a bracket or bold (`so 5110`, `=5110.`, `**5110**`), not as an operand (`9-5110`,
    `2*5110`), a label (`r5110`) or a part of another number (`15110`, `5110.5`); other text as whole words,
    case aside. The answer is read as a reader would (spaces, emphasis and a closing full stop aside)."""
    wanted = answer.strip().strip("*_`$\"' ").rstrip(".!").strip()
    if not wanted:
        return False
    if re.fullmatch(r"-?\d+(?:[.,]\d+)*", wanted):
        return re.search(rf"(?:^|(?<=[\s=:(\[$])|(?<=\*\*)){re.escape(wanted)}(?!\w|[.,]\d)", line) is not None
    return re.search(rf"(?<!\w){re.escape(wanted)}(?!\w)", line, re.IGNORECASE) is not None


class LoopDetector:
    """Finds thinking that repeats itself: the last LOOP_GRAM pieces seen again exactly `period`
    tokens back, at every token for `loop_tokens` tokens (and at least one whole period more). A
    healthy step-by-step trace repeats its *shape* (`d3 4+5+1=10 r…`) but its numbers change, so
    its 12-grams never recur at a fixed period for long; a model stuck in `<answer>…</answer>` does.
    (One step may honestly repeat when its input does: the tiny reasoner's "a no 0" for a word of a
    dozen identical letters would count as a loop; no generated problem has one.)"""

    def __init__(self, loop_tokens: int):
        self.loop_tokens = loop_tokens
        self.pieces: list[str] = []
        self.seen: dict[tuple[str, ...], int] = {}
        self.period = 0
        self.run = 0

    def add(self, piece: str) -> bool:
        """One thinking token's text; True once the thinking is looping."""
        self.pieces.append(piece)
        at = len(self.pieces)
        if at < LOOP_GRAM:
            return False
        gram = tuple(self.pieces[at - LOOP_GRAM:])
        before = self.seen.get(gram)
        self.seen[gram] = at
        if before is not None and at - before == self.period:
            self.run += 1
        else:
            self.period, self.run = (at - before, 1) if before is not None else (0, 0)
        return bool(self.period) and self.run >= max(self.loop_tokens, self.period)


@dataclass(frozen=True)
class BudgetSpec:
    thinking: bool = True
    min_thinking: int = 0
    max_thinking: int = 1024
    max_answer: int = 512
    grace: int = 0  # within the last `grace` tokens of the cap, close at a sentence end
    confidence: float = 0.0  # window mean token probability that ends thinking (0 = off)
    confidence_window: int = 64
    confidence_floor: float = 0.0  # window mean below which the sequence is dropped (0 = off)
    # The escalation probe (thinking off): after `probe_tokens` answer tokens (or an earlier end),
    # an answer whose geometric-mean token probability is below `probe_confidence` ends as
    # `escalated`, for the scheduler to run the prompt again with thinking. 0 = no probe.
    probe_tokens: int = 0
    probe_confidence: float = 0.0
    # Thinking + answer + forced text together at most (an API's max_tokens); 0 = no such cap. The
    # scheduler splits it (run.fit), since only it knows how long the forced text is for the model.
    max_total: int = 0
    # Loop breaker: thinking whose last `loop_tokens` tokens repeat one span over and over ends
    # gracefully, like the cap (reason "loop"); 0 = off.
    loop_tokens: int = LOOP_TOKENS
    # Trial answers (DEER, arXiv 2504.15895): at a line end of the thinking, the decoder answers
    # `trial_tokens` tokens in a fork of the sequence; at least this geometric-mean probability ends the
    # thinking there (reason "trial"); 0 = off.
    trial_confidence: float = 0.0
    trial_tokens: int = 8
    # Give up (the lower threshold of Conformal Thinking, arXiv 2602.03814): once GIVE_UP_AFTER of the cap
    # is thought, a sequence whose trial answers never reached this confidence ends its thinking as the cap
    # does, message and all (reason "give_up"): a prompt the model is not closing in on stops burning the
    # budget. Trials run for it even where trial_confidence is 0; 0 = off.
    give_up: float = 0.0
    # Trials that agree: two trial answers in a row, token for token the same and each at least this sure,
    # end the thinking too (reason "trial"): an answer the trace has settled on, where the model stays
    # below trial_confidence after its conclusion (it checks its work); 0 = off.
    trial_agree: float = 0.0
    # A stated answer: a trial answer that the line of thinking just ended states word for word (`so 5110`,
    # `the answer is Paris.`), at least this sure, ends the thinking too (reason "trial"): the trace has
    # reached its conclusion and the model would answer it, so what follows is checking; 0 = off.
    trial_stated: float = 0.0

    @property
    def trial_bar(self) -> float:
        """The lowest confidence a trial answer must reach to matter to any rule (0: trials off): below every
        bar, a trial ends nothing and is no nearer sure for the give-up floor."""
        return min((bar for bar in (self.trial_confidence, self.trial_agree, self.trial_stated, self.give_up) if bar),
                   default=0.0)

    @property
    def needs_confidence(self) -> bool:
        return self.confidence > 0 or self.confidence_floor > 0 or self.probe_tokens > 0


@dataclass(frozen=True)
class ForcedText:
    """Token ids (and their text) that the policy may insert, prepared once per model."""

    close: tuple[list[int], str]  # close tag (+ answer prefix): after a model-closed thinking
    budget: tuple[list[int], str]  # budget message + close tag + answer prefix
    wait: tuple[list[int], str]  # replaces an early close tag
    answer_prefix: tuple[list[int], str]
    message: str = ""  # the budget message alone (a server that keeps the budget is asked to insert it)


@dataclass
class Step:
    tokens: list[int] = field(default_factory=list)
    rollback: int = 0
    chunks: list[Chunk] = field(default_factory=list)
    event: ForcedEvent | None = None
    finish: FinishReason | None = None
    probe: ProbeVerdict | None = None
    accepted: bool = False  # the sampled token was kept (a remote engine appends its text)
    forced_text: str = ""  # the text of the forced tokens (a remote engine sends it back as prompt)
    trial: bool = False  # a line of thinking ended: the decoder may try an answer in a fork (trial_verdict)


@dataclass(frozen=True)
class ProbeVerdict:
    tokens: int
    confidence: float | None
    kept: bool


class SequencePolicy:
    def __init__(
        self,
        spec: BudgetSpec,
        parser: ThinkingParser,
        forced: ForcedText,
        is_end: Callable[[int], bool],
    ):
        self.spec = spec
        self.parser = parser
        self.forced = forced
        self.is_end = is_end
        self.thinking_tokens = 0
        self.answer_tokens = 0
        self.forced_tokens = 0
        self.wait_tokens = 0  # forced "Wait" tokens: part of the thinking, they count toward min and cap
        self.events: list[ForcedEvent] = []
        self._window: deque[float] = deque(maxlen=spec.confidence_window)
        self._window_sum = 0.0
        self._logprob_sum = 0.0
        self._scored = 0
        self._recent: deque[str] = deque(maxlen=64)  # text of committed tokens, for rollback
        self.probing = spec.probe_tokens > 0 and not spec.thinking  # the verdict is still to come
        self._loops = LoopDetector(spec.loop_tokens) if spec.loop_tokens and spec.thinking else None
        self._spans: dict[str, list[Span]] = {THINKING: [], ANSWER: []}  # the trace, step by step
        # A server that keeps the budget (remote.py): the cap, and maybe the early end, are its to carry out.
        # `awaiting` is why its budget message is due (the cap was reached, or the end was asked for).
        self.server_cap = False
        self.server_ends = False
        self.best_trial = 0.0  # the surest trial answer so far (give_up)
        self.last_trial: tuple[tuple[int, ...], float] | None = None  # the last trial's answer and confidence
        self._line = ""  # the line of thinking being written
        self.last_line = ""  # the last line of thinking that ended (not blank): what a trial may find stated
        # (kept only where trial_stated asks for it)
        self.awaiting: ForcedReason | None = None

    @property
    def thinking_total(self) -> int:
        return self.thinking_tokens + self.wait_tokens

    # -- confidence -----------------------------------------------------------------------
    @property
    def window_confidence(self) -> float | None:
        if len(self._window) < self._window.maxlen:  # type: ignore[operator]
            return None
        return self._window_sum / len(self._window)

    @property
    def trace_confidence(self) -> float | None:
        """Geometric-mean token probability over everything sampled (None if not measured)."""
        return math.exp(self._logprob_sum / self._scored) if self._scored else None

    def _score(self, prob: float | None) -> None:
        if prob is None:
            return
        self._logprob_sum += math.log(max(prob, 1e-12))
        self._scored += 1
        if len(self._window) == self._window.maxlen:
            self._window_sum -= self._window[0]
        self._window.append(prob)
        self._window_sum += prob

    # -- the decision ---------------------------------------------------------------------
    def decide(self, token: int, piece: str, prob: float | None = None) -> Step:
        phase = self.parser.phase
        if phase == THINKING:
            return self._thinking(token, piece, prob)
        if phase == ANSWER:
            return self._answer(token, piece, prob)
        return Step(finish="stop")

    def _thinking(self, token: int, piece: str, prob: float | None) -> Step:
        spec = self.spec
        ends = self.is_end(token)
        if ends or self.parser.would_close(piece):
            if self.thinking_total < spec.min_thinking:
                rollback = 0 if ends else self._pending_token_count()
                self.thinking_tokens -= rollback
                self.parser.drop_pending()
                for _ in range(rollback):
                    self._recent.pop()
                self.wait_tokens += len(self.forced.wait[0])
                return self._force(self.forced.wait, Step(rollback=rollback), "wait", "extended")
            if ends:  # the model stopped inside its thinking: close it so an answer follows
                return self._force(self.forced.close, Step(), "eos", "budget_forced")
            step = self._accept(token, piece, counted=False, prob=prob)
            if self.forced.answer_prefix[0]:
                self._force(self.forced.answer_prefix, step, None, None)
            return step

        step = self._accept(token, piece, counted=True, prob=prob)
        self._score(prob)
        if self.awaiting is not None:  # the server was told to end it: tokens on the way still count
            return step
        if self.thinking_total >= spec.max_thinking:
            if self.server_cap:
                self.awaiting = "cap"
                return step
            return self._force(self.forced.budget, step, "cap", "budget_forced")
        soft_zone = not self.server_cap and spec.grace and self.thinking_total >= spec.max_thinking - spec.grace
        if soft_zone and piece.rstrip(" ").endswith(SENTENCE_ENDS):
            return self._force(self.forced.budget, step, "cap", "budget_forced")
        if self._loops is not None and self._loops.add(piece) and self.thinking_total >= spec.min_thinking:
            return self._force(self.forced.budget, step, "loop", "budget_forced")
        if (spec.trial_confidence or spec.give_up or spec.trial_agree or spec.trial_stated) and piece.endswith("\n") \
                and self.thinking_total >= spec.min_thinking:
            step.trial = True
        window = self.window_confidence
        if window is not None and self.thinking_total >= spec.min_thinking:
            if spec.confidence and window >= spec.confidence:
                if self.server_ends:
                    self.awaiting = "confidence"  # the remote engine tells the server (reasoning_end)
                    return step
                return self._force(self.forced.budget, step, "confidence", "budget_forced")
            if spec.confidence_floor and window < spec.confidence_floor:
                step.finish = "dropped"
        return step

    def _answer(self, token: int, piece: str, prob: float | None) -> Step:
        if self.is_end(token):
            step = Step(finish="stop")
            return self._judge(step) if self.probing else step
        step = self._accept(token, piece, counted=True, prob=prob)
        self._score(prob)
        if self.parser.phase == DONE:
            step.finish = "stop"
        elif self.answer_tokens >= self.spec.max_answer:
            step.finish = "length"
        if self.probing and (step.finish or self.answer_tokens >= self.spec.probe_tokens):
            return self._judge(step)
        return step

    def accept_run(self, text: str, tokens: int) -> Step:
        """`tokens` tokens of text at once, in the phase they belong to: a server's whole reply, read where
        no rule had to see it token by token (no confidence stop, loop breaker, trial, probe or scores).
        Counted and parsed as if streamed; the cap is the server's (its message comes by server_forced)."""
        return Step(chunks=self._take(text, tokens, None), accepted=True)

    def trial_verdict(self, confidence: float | None, answer: tuple[int, ...] = (), text: str = "") -> Step | None:
        """What a fork's trial answer (its tokens, and their `text`) said, asked after a step with `trial`:
        sure enough, and a step that closes the thinking (no budget message: the model had what it needed)
        — so does an answer the last trial gave too, both at least `trial_agree` sure, or one the line just
        ended states, at least `trial_stated` sure; or, past GIVE_UP_AFTER of the cap with no trial ever
        near sure (`give_up`), a step that ends it as the cap would; else None."""
        if self.parser.phase != THINKING or confidence is None:
            return None
        self.best_trial = max(self.best_trial, confidence)
        spec = self.spec
        previous, self.last_trial = self.last_trial, (answer, confidence)
        agreed = (spec.trial_agree and answer and previous is not None and previous[0] == answer
                  and min(previous[1], confidence) >= spec.trial_agree)
        stated = spec.trial_stated and confidence >= spec.trial_stated and states(self.last_line, text)
        if (spec.trial_confidence and confidence >= spec.trial_confidence) or agreed or stated:
            return self._force(self.forced.close, Step(), "trial", "budget_forced")
        if spec.give_up and self.best_trial < spec.give_up and self.thinking_total >= GIVE_UP_AFTER * spec.max_thinking:
            return self._force(self.forced.budget, Step(), "give_up", "budget_forced")
        return None

    def server_forced(self, text: str, tokens: int) -> Step:
        """The server ended the thinking, as asked: its message `text` (`tokens` long; empty where the server
        inserts none) and the close tag, recorded as if this policy had put them in (the same event, the same
        trace mark)."""
        reason = self.awaiting or "cap"
        self.awaiting = None
        step = self._force(([], text + self.forced.close[1]), Step(), reason, "budget_forced")
        self.forced_tokens += tokens
        if step.event is not None:
            step.event = replace(step.event, forced_tokens=tokens)
            self.events[-1] = step.event
        return step

    def force_budget(self) -> Step:
        """The server did not keep the budget after all: end the thinking here, as without one."""
        reason = self.awaiting or "cap"
        self.awaiting = None
        return self._force(self.forced.budget, Step(), reason, "budget_forced")

    def _judge(self, step: Step) -> Step:
        """The probe's verdict: keep the answer (the sequence goes on as it is) or escalate."""
        self.probing = False
        confidence = self.trace_confidence
        kept = confidence is not None and self.answer_tokens > 0 and confidence >= self.spec.probe_confidence
        step.probe = ProbeVerdict(self.answer_tokens, confidence, kept)
        if not kept:
            step.finish = "escalated"
        return step

    # -- helpers --------------------------------------------------------------------------
    def _accept(self, token: int, piece: str, counted: bool, prob: float | None = None) -> Step:
        return Step(tokens=[token], chunks=self._take(piece, int(counted), prob), accepted=True)

    def _take(self, text: str, tokens: int, prob: float | None) -> list[Chunk]:
        """`tokens` tokens of `text` counted in the phase they belong to, parsed and traced."""
        if self.parser.phase == THINKING:
            self.thinking_tokens += tokens
            if self.spec.trial_stated:
                self._note_line(text)
        else:
            self.answer_tokens += tokens
        self._recent.append(text)
        chunks = self.parser.feed(text)
        self._trace(chunks, prob)
        return chunks

    def _note_line(self, text: str) -> None:
        """Keep the line of thinking being written, and the last one that ended (for a stated answer)."""
        self._line = (self._line + text)[-LINE_KEPT:]
        if "\n" in text:
            ended, _, self._line = self._line.rpartition("\n")
            line = next((part for part in reversed(ended.split("\n")) if part.strip()), "")
            if line:
                self.last_line = line

    def _trace(self, chunks: list[Chunk], prob: float | None, mark: str = "") -> None:
        for chunk in chunks:
            self._spans[chunk.kind].append(Span(len(chunk.text), prob, mark))
        if mark and mark != "scaffold" and not any(c.kind == THINKING for c in chunks):
            self._spans[THINKING].append(Span(0, None, mark))  # an insertion with no thinking text still marks its place

    def token_trace(self) -> TokenTrace:
        """The text token by token, fitted to the parser's final texts (asked once the sequence ended)."""
        return TokenTrace(_fit(self._spans[THINKING], "".join(self.parser.thinking_text)),
                          _fit(self._spans[ANSWER], "".join(self.parser.answer_text)))

    def _force(self, forced: tuple[list[int], str], step: Step, reason: ForcedReason | None,
               kind: ForcedKind | None) -> Step:
        tokens, text = forced
        step.tokens.extend(tokens)
        step.forced_text += text
        chunks = self.parser.feed(text)
        self._trace(chunks, None, reason or "scaffold")
        step.chunks.extend(chunks)
        self._recent.append(text)
        self.forced_tokens += len(tokens)
        if kind is not None and reason is not None:
            event = ForcedEvent(kind, self.thinking_tokens, len(tokens), reason)
            step.event = event
            self.events.append(event)
        return step

    def _pending_token_count(self) -> int:
        """How many committed tokens make up the parser's held-back text (a partial close tag)."""
        need = len(self.parser.pending)
        count = 0
        for piece in reversed(self._recent):
            if need <= 0:
                break
            need -= len(piece)
            count += 1
        return count


def _fit(spans: list[Span], raw: str) -> tuple[Span, ...]:
    """Spans cut to the stripped text (what SequenceDone keeps); text released only at the end (a held-back
    tail) is one span of its own, not measured."""
    total = sum(span.chars for span in spans)
    if total < len(raw):
        spans = [*spans, Span(len(raw) - total, None)]
    lead, keep = len(raw) - len(raw.lstrip()), len(raw.strip())
    fitted: list[Span] = []
    for span in spans:
        cut = min(lead, span.chars)
        lead -= cut
        chars = min(span.chars - cut, keep)
        keep -= chars
        if chars or span.mark not in ("", "scaffold"):  # a marked insertion keeps its place
            fitted.append(span if chars == span.chars else replace(span, chars=chars))
    return tuple(fitted)


def step_events(key: Hashable, policy: SequencePolicy, step: Step, text: bool = True) -> Iterator[EngineEvent]:
    """The engine events of one policy step: its text (where someone reads it as it comes: `text`), the
    probe's verdict, what was forced.

    One place for both decoders (local and remote), so a step reads the same wherever it ran."""
    if text:
        yield from chunk_events(key, policy, step.chunks)
    if step.probe is not None:
        verdict = step.probe
        yield Probed(key, verdict.tokens, verdict.confidence, policy.spec.probe_confidence, verdict.kept)
    if step.event is not None:
        event = step.event
        if event.type == "extended":
            yield Extended(key, event.at_thinking_tokens, event.forced_tokens)
        else:
            yield BudgetForced(key, event.reason, event.at_thinking_tokens, event.forced_tokens)


def chunk_events(key: Hashable, policy: SequencePolicy, chunks: list[Chunk]) -> Iterator[EngineEvent]:
    """Parsed text as Thinking or Answer events (a step's, or what the parser flushes at the end)."""
    for chunk in chunks:
        if chunk.kind == THINKING:
            yield Thinking(key, chunk.text, policy.thinking_total)
        else:
            yield Answer(key, chunk.text, policy.answer_tokens)
