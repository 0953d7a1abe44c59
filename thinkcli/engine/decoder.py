"""THE decode loop: N sequences in one llama.cpp context, one llama_decode per step.

Modelled on llama.cpp's examples/batched and examples/parallel. Each slot is a llama.cpp
sequence id in a unified KV cache. A new request takes a free slot; its prompt reuses the
longest prefix already cached in any slot (seq_cp), so Best-of-N decodes a prompt once and chat
evaluates only the new turn. Every step samples one token per live slot, lets that slot's policy
accept, replace or extend it, and decodes all resulting tokens in a single batch.
"""

from __future__ import annotations

import codecs
import time
from collections import Counter
from collections.abc import Callable, Generator, Hashable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ContextOverflowError, GenerationError
from .budget import chunk_events, step_events
from .events import (
    EngineEvent,
    FinishReason,
    Progress,
    SequenceDone,
    Started,
    Usage,
)
from .model import Model
from .protocol import Pending, Request, Wait

SEED_LIMIT = 0xFFFFFFFF  # llama.cpp reads the seed 0xFFFFFFFF as "random": seeds wrap below it


@dataclass(eq=False)  # slots compare by identity: field-wise equality would walk token lists
class _Slot:
    seq_id: int
    cached: list[int] = field(default_factory=list)  # tokens of this seq now in the KV cache
    request: Request | None = None
    sampler: Any = None
    utf8: Any = None
    feed: list[int] = field(default_factory=list)  # tokens to decode at the next step
    logits_index: int = -1
    started_at: float = 0.0
    first_token_at: float | None = None
    reused: int = 0
    cancelled: FinishReason | None = None
    shares_feed_with: list[_Slot] = field(default_factory=list)  # group sharing one prompt tail
    # The answer a trial gave, to be given again token for token once that trial has ended the thinking:
    # decoded anew in another batch, a near tie (end, or the last digit once more) could go the other way
    scripted: list[int] = field(default_factory=list)


@dataclass
class DecoderStats:
    prompt_tokens_evaluated: int = 0
    tokens_generated: int = 0
    decode_calls: int = 0
    decode_seconds: float = 0.0
    # steps whose batch held a multi-sequence group (Best-of-N) together with other prompts
    shared_group_steps: int = 0
    max_step_sequences: int = 0  # the most sequences one llama_decode carried
    trials: int = 0  # trial answers tried in a fork (any rule that reads them: spec.trial_bar)
    trial_decodes: int = 0  # the llama_decode calls they took (their cost)
    trials_taken: int = 0  # trials sure enough to end the thinking
    trials_cut: int = 0  # trials stopped once no rule's bar was in reach


class Decoder:
    def __init__(self, model: Model, n_ctx: int = 4096, n_seq: int = 1, n_batch: int = 512,
                 seq_room: int | None = None):
        import llama_cpp
        import numpy  # here, not at import: `think models` and the like never need it (0.1 s)

        self._lib = llama_cpp
        self._np = numpy
        self.model = model
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = n_ctx
        # One step's batch holds a token per live sequence plus forced tokens and short prompts:
        # llama_decode asserts n_tokens <= n_batch, so the context's n_batch is that capacity.
        capacity = max(n_batch, 64 * n_seq)
        params.n_batch = capacity
        params.n_ubatch = n_batch
        params.n_seq_max = n_seq + 1  # the last sequence id is the fork of a trial answer
        params.kv_unified = True
        params.n_threads = model.threads
        params.n_threads_batch = model.threads
        params.no_perf = True
        ctx = llama_cpp.llama_init_from_model(model.ptr, params)
        if not ctx:
            raise GenerationError(f"llama.cpp could not create a context of {n_ctx} tokens")
        self.ctx = ctx
        self.n_ctx = llama_cpp.llama_n_ctx(ctx)
        self.n_seq = n_seq
        # Tokens one sequence may hold. The scheduler fits every plan to it, so that n_seq sequences
        # of this size always fit the unified KV cache together.
        self.seq_room = min(seq_room or self.n_ctx, self.n_ctx)
        self.n_batch = n_batch
        self.memory = llama_cpp.llama_get_memory(ctx)
        self.batch_capacity = capacity
        self.batch = llama_cpp.llama_batch_init(self.batch_capacity, 0, n_seq)
        self.slots = [_Slot(seq_id=i) for i in range(n_seq)]
        self.stats = DecoderStats()
        self._max_live = n_seq
        self._admit: Callable[[], bool] | None = None
        self._trials: list[_Slot] = []  # slots whose step ended a line of thinking: a trial answer, after the step

    # -- public ---------------------------------------------------------------------------
    def run(self, requests: Iterable[Pending], parallel: int | None = None,
            admit: Callable[[], bool] | None = None) -> Iterator[EngineEvent]:
        """Generate for every request, at most `parallel` (default n_seq) at a time; yields events.

        The source may yield WAIT for "nothing now": running sequences go on, and the source is
        asked again at the next step (when nothing runs, run() returns).

        `admit`, if given, is asked before each new request is taken: the scheduler uses it to
        limit the number of prompts in flight while a prompt's Best-of-N samples fill several slots."""
        self._max_live = min(parallel or self.n_seq, self.n_seq)
        self._admit = admit
        pending = iter(requests)
        exhausted = False
        completed = False
        try:
            while True:
                if not exhausted:
                    exhausted = yield from self._fill(pending)
                live = [s for s in self.slots if s.request is not None]
                if not live:
                    break
                for slot in self._decode_step(live):
                    if slot.request is not None:
                        yield from self._sample(slot)
                yield from self._run_trials()  # after every slot read its logits: a trial decodes anew
            completed = True
        finally:
            if not completed:
                # Interrupted (Ctrl-C, consumer closed). `cached` never claims a token that is not
                # in the KV cache, so cutting every sequence back to it keeps the cache usable:
                # the next turn of a chat still reuses what it can.
                for slot in self.slots:
                    self._lib.llama_memory_seq_rm(self.memory, slot.seq_id, len(slot.cached), -1)
                    self._release(slot)

    def cancel(self, key: Hashable, reason: FinishReason = "stopped_early") -> None:
        """Stop a live sequence at the next step (adaptive vote; a client that went away)."""
        for slot in self.slots:
            if slot.request is not None and slot.request.key == key:
                slot.cancelled = reason

    def close(self) -> None:
        for slot in self.slots:
            self._release(slot)
        if getattr(self, "ctx", None):
            self._lib.llama_batch_free(self.batch)
            self._lib.llama_free(self.ctx)
            self.ctx = None

    # -- filling slots ---------------------------------------------------------------------
    def _fill(self, pending: Iterator[Pending]) -> Generator[EngineEvent, None, bool]:
        """Give free slots new requests; prompts with equal tokens share one evaluation."""
        groups: dict[tuple[int, ...], list[_Slot]] = {}
        live = sum(slot.request is not None for slot in self.slots)
        for slot in self.slots:
            if slot.request is not None:
                continue
            if live >= self._max_live or (self._admit is not None and not self._admit()):
                break
            live += 1
            request = next(pending, None)
            if request is None:
                for group in groups.values():
                    yield from self._prefill(group)
                return True
            if isinstance(request, Wait):  # the source has nothing right now (a server between requests)
                break
            self._assign(slot, request)
            groups.setdefault(tuple(request.prompt), []).append(slot)
        for group in groups.values():
            yield from self._prefill(group)
        return False

    def _assign(self, slot: _Slot, request: Request) -> None:
        lib = self._lib
        if not request.prompt:
            raise GenerationError("empty prompt")
        if len(request.prompt) >= self.seq_room:
            raise ContextOverflowError(
                f"the prompt is {len(request.prompt)} tokens; the context holds {self.seq_room}"
            )
        slot.request = request
        slot.cancelled = None
        slot.started_at = time.perf_counter()
        slot.first_token_at = None
        slot.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        s = request.sampling
        chain = lib.llama_sampler_chain_init(lib.llama_sampler_chain_default_params())
        if s.repeat_penalty != 1.0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_penalties(self.model.n_vocab, 64, s.repeat_penalty, 0.0, 0.0))
        if s.temperature <= 0:
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_greedy())
        else:
            if s.top_k > 0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_k(s.top_k))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_top_p(s.top_p, 1))
            if s.min_p > 0:
                lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_min_p(s.min_p, 1))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_temp(s.temperature))
            lib.llama_sampler_chain_add(chain, lib.llama_sampler_init_dist(s.seed % SEED_LIMIT))
        slot.sampler = chain

    def _prefill(self, group: list[_Slot]) -> Iterator[EngineEvent]:
        lib = self._lib
        prompt = group[0].request.prompt  # type: ignore[union-attr]
        source, reuse = self._best_prefix(prompt, group)
        reuse = min(reuse, len(prompt) - 1)  # the last prompt token is decoded to get logits
        source_tokens = list(source.cached) if source is not None else []
        for slot in group:
            slot.cached = source_tokens[:reuse] if slot is source else []  # never more than the KV holds
        for slot in group:
            if slot is source:
                continue
            lib.llama_memory_seq_rm(self.memory, slot.seq_id, 0, -1)
            if source is not None and reuse > 0:
                lib.llama_memory_seq_cp(self.memory, source.seq_id, slot.seq_id, 0, reuse)
        if source is not None and source in group:
            lib.llama_memory_seq_rm(self.memory, source.seq_id, reuse, -1)
        seq_ids = [slot.seq_id for slot in group]
        rest = prompt[reuse:]
        if len(rest) > self.batch_capacity // 2:
            # A long prompt gets decodes of its own, in chunks; its last token joins the step batch.
            body = rest[:-1]
            for start in range(0, len(body), self.n_batch):
                chunk = body[start : start + self.n_batch]
                self._batch_clear()
                for offset, token in enumerate(chunk):
                    self._batch_add(token, reuse + start + offset, seq_ids, False)
                self._decode()
            cached, feed = list(prompt[:-1]), [prompt[-1]]
        else:
            # A short one rides in the next step's batch with the running sequences (as
            # llama.cpp's server does), so starting a sequence costs the others no extra decode.
            cached, feed = list(prompt[:reuse]), list(rest)
        self.stats.prompt_tokens_evaluated += len(rest)
        for slot in group:
            slot.cached = list(cached)
            slot.reused = reuse
            slot.feed = []
        # The prompt tail is shared by the whole group: only the leader feeds it.
        group[0].feed = feed
        group[0].shares_feed_with = group
        for slot in group:
            yield Started(slot.request.key, len(prompt), reuse)  # type: ignore[union-attr]

    def _best_prefix(self, prompt: list[int], group: list[_Slot]) -> tuple[_Slot | None, int]:
        best: _Slot | None = None
        best_len = 0
        for slot in self.slots:  # live slots too: positions below their end never change
            n = _common_prefix(slot.cached, prompt)
            if n > best_len:
                best, best_len = slot, n
        return best, best_len

    # -- one step ---------------------------------------------------------------------------
    def _decode_step(self, live: list[_Slot]) -> list[_Slot]:
        """Decode every live slot's pending tokens in one batch; returns the slots to sample.

        A slot whose forced tokens do not fit this step's batch waits for the next step."""
        self._batch_clear()
        owners: list[tuple[list[_Slot], int, list[int]]] = []
        for slot in live:
            if not slot.feed:
                continue
            if self.batch.n_tokens + len(slot.feed) > self.batch_capacity and self.batch.n_tokens:
                continue
            members = slot.shares_feed_with or [slot]
            seq_ids = [s.seq_id for s in members]
            pos = len(slot.cached)
            for i, token in enumerate(slot.feed):
                self._batch_add(token, pos + i, seq_ids, i == len(slot.feed) - 1)
            owners.append((members, self.batch.n_tokens - 1, slot.feed))
        if self.batch.n_tokens:
            self._decode()
            self._count_groups(owners)
        ready: list[_Slot] = []
        for members, index, feed in owners:  # only now are these tokens in the KV cache
            for member in members:
                member.cached.extend(feed)
                member.feed = []
                member.shares_feed_with = []
                member.logits_index = index
                ready.append(member)
        return [slot for slot in live if slot in ready]

    def _sample(self, slot: _Slot) -> Iterator[EngineEvent]:
        lib = self._lib
        request = slot.request
        assert request is not None
        policy = request.policy
        if slot.cancelled:
            yield from self._finish(slot, slot.cancelled)
            return
        if slot.scripted:  # the answer a trial gave (the sampler sees it as if it had chosen it)
            token = slot.scripted.pop(0)
            lib.llama_sampler_accept(slot.sampler, token)
        else:
            token = lib.llama_sampler_sample(slot.sampler, self.ctx, slot.logits_index)
        prob = self._token_prob(slot.logits_index, token) if request.score_tokens else None
        if slot.first_token_at is None:
            slot.first_token_at = time.perf_counter()
        self.stats.tokens_generated += 1
        piece = "" if self.model.is_end(token) else slot.utf8.decode(self.model.piece(token))
        step = policy.decide(token, piece, prob)
        if step.rollback:
            keep = len(slot.cached) - step.rollback
            lib.llama_memory_seq_rm(self.memory, slot.seq_id, keep, -1)
            del slot.cached[keep:]
        yield from step_events(request.key, policy, step)
        if step.finish:
            yield from self._finish(slot, step.finish)
            return
        if len(slot.cached) + len(step.tokens) >= self.seq_room:
            yield from self._finish(slot, "context")
            return
        for forced in step.tokens[1:]:
            lib.llama_sampler_accept(slot.sampler, forced)
        slot.feed = list(step.tokens)
        if step.trial and not step.forced_text:
            self._trials.append(slot)
        total = policy.thinking_total + policy.answer_tokens
        if total % 8 == 0:
            phase = policy.parser.phase
            yield Progress(request.key, phase, policy.thinking_total, policy.answer_tokens, policy.window_confidence)

    def _finish(self, slot: _Slot, reason: FinishReason) -> Iterator[EngineEvent]:
        request = slot.request
        assert request is not None
        policy = request.policy
        yield from chunk_events(request.key, policy, policy.parser.flush())
        now = time.perf_counter()
        usage = Usage(
            prompt_tokens=len(request.prompt),
            reused_tokens=slot.reused,
            thinking_tokens=policy.thinking_tokens,
            answer_tokens=policy.answer_tokens,
            forced_tokens=policy.forced_tokens,
        )
        first = slot.first_token_at - slot.started_at if slot.first_token_at else None
        if not request.keep_cache:
            keep = min(len(request.prompt), len(slot.cached))
            self._lib.llama_memory_seq_rm(self.memory, slot.seq_id, keep, -1)
            del slot.cached[keep:]
        self._release(slot)
        yield SequenceDone(
            seq=request.key,
            finish_reason=reason,
            thinking=policy.parser.thinking,
            answer=policy.parser.answer,
            usage=usage,
            confidence=policy.trace_confidence,
            first_token_s=first,
            elapsed_s=now - slot.started_at,
            events=tuple(policy.events),
            trace=policy.token_trace(),
        )

    def _release(self, slot: _Slot) -> None:
        if slot.sampler is not None:
            self._lib.llama_sampler_free(slot.sampler)
            slot.sampler = None
        slot.request = None
        slot.feed = []
        slot.shares_feed_with = []
        slot.scripted = []

    def _count_groups(self, owners: list[tuple[list[_Slot], int, list[int]]]) -> None:
        self.stats.max_step_sequences = max(self.stats.max_step_sequences, sum(len(m) for m, _, _ in owners))
        groups: Counter[Hashable] = Counter()
        for members, _, _ in owners:
            for member in members:
                request = member.request
                if request is not None:
                    groups[request.key if request.group is None else request.group] += 1
        if len(groups) > 1 and max(groups.values()) > 1:
            self.stats.shared_group_steps += 1

    # -- trial answers -----------------------------------------------------------------------
    def _run_trials(self) -> Iterator[EngineEvent]:
        """Each slot that ended a line of thinking this step answers in a fork; a sure answer closes its
        thinking (the close tag joins what the slot feeds next)."""
        trials, self._trials = self._trials, []
        for slot in trials:
            request = slot.request
            if request is None or slot.cancelled:
                continue
            policy = request.policy
            close = policy.forced.close[0]
            if len(slot.cached) + len(slot.feed) + len(close) + policy.spec.trial_tokens >= self.seq_room:
                continue
            confidence, answer, end = self._trial(slot, close, policy.spec.trial_tokens, policy.spec.trial_bar)
            # its text only for the rule that reads it (the line of thinking states it?)
            text = (b"".join(self.model.piece(token) for token in answer).decode("utf-8", "replace")
                    if policy.spec.trial_stated else "")
            step = policy.trial_verdict(confidence, answer, text)
            if step is None:
                continue
            self.stats.trials_taken += 1
            if step.event is not None and step.event.reason == "trial":  # the answer is the one the trial gave
                slot.scripted = [*answer, *([end] if end is not None else [])]
            for token in step.tokens:
                self._lib.llama_sampler_accept(slot.sampler, token)
            slot.feed.extend(step.tokens)
            yield from step_events(request.key, policy, step)

    def _trial(self, slot: _Slot, close: list[int], tokens: int,
               bar: float = 0.0) -> tuple[float | None, tuple[int, ...], int | None]:
        """Answer up to `tokens` tokens greedily in a fork of this sequence (its KV cells shared, not
        copied), then drop the fork: the answer's confidence — its tokens' geometric-mean probability, and
        no more than the end's (`70` where the end and a third digit are a coin toss is no sure answer, and
        the trial's answer is the one given; a sure end does not lift unsure digits) — None: no answer; its
        tokens (two trials in a row that agree say the answer is settled), and the end token that closed it
        (None: it ran to `tokens`). A trial that can no longer reach `bar` — its confidence could at best be
        the geometric mean of what it has read over all `tokens`, the rest certain — stops there and says
        that bound: no rule it could have met is met, with fewer forward passes."""
        import math

        lib, fork = self._lib, self.n_seq
        feed = [*slot.feed, *close]
        position = len(slot.cached)
        lib.llama_memory_seq_rm(self.memory, fork, 0, -1)
        lib.llama_memory_seq_cp(self.memory, slot.seq_id, fork, 0, position)
        self.stats.trials += 1
        logprob, count = 0.0, 0
        answer: list[int] = []
        end: int | None = None
        end_prob = 1.0  # how sure the model is that the answer ends where it does
        try:
            for _ in range(tokens):
                self._batch_clear()
                for offset, token in enumerate(feed):
                    self._batch_add(token, position + offset, [fork], offset == len(feed) - 1)
                self._decode()
                self.stats.trial_decodes += 1
                position += len(feed)
                token, prob = self._most_likely(self.batch.n_tokens - 1)
                if self.model.is_end(token):
                    end, end_prob = token, prob
                    break
                logprob += math.log(max(prob, 1e-12))
                count += 1
                answer.append(token)
                feed = [token]
                if bar and (best := math.exp(logprob / tokens)) < bar:  # out of reach, however it went on
                    self.stats.trials_cut += 1
                    return best, tuple(answer), None
        except (ContextOverflowError, GenerationError):
            return None, (), None  # no room for a fork now (or llama.cpp refused it): no trial
        finally:
            lib.llama_memory_seq_rm(self.memory, fork, 0, -1)
        return (min(math.exp(logprob / count), end_prob) if count else None), tuple(answer), end

    def _most_likely(self, index: int) -> tuple[int, float]:
        """The greedy token at batch row `index`, and its probability."""
        logits = self._logits(index)
        token = int(logits.argmax())
        return token, self._prob(logits, token)

    # -- llama.cpp plumbing -----------------------------------------------------------------
    def _token_prob(self, index: int, token: int) -> float:
        """Probability of `token` under the model's raw distribution at batch row `index`."""
        return self._prob(self._logits(index), token)

    def _logits(self, index: int) -> Any:
        return self._np.ctypeslib.as_array(self._lib.llama_get_logits_ith(self.ctx, index), shape=(self.model.n_vocab,))

    def _prob(self, logits: Any, token: int) -> float:
        np = self._np
        top = float(logits.max())
        log_z = top + float(np.log(np.exp(logits - top).sum()))
        return float(np.exp(float(logits[token]) - log_z))

    def _batch_clear(self) -> None:
        self.batch.n_tokens = 0

    def _batch_add(self, token: int, pos: int, seq_ids: list[int], logits: bool) -> None:
        b = self.batch
        i = b.n_tokens
        b.token[i] = token
        b.pos[i] = pos
        b.n_seq_id[i] = len(seq_ids)
        for k, seq in enumerate(seq_ids):
            b.seq_id[i][k] = seq
        b.logits[i] = logits
        b.n_tokens = i + 1

    def _decode(self) -> None:
        started = time.perf_counter()
        status = self._lib.llama_decode(self.ctx, self.batch)
        self.stats.decode_seconds += time.perf_counter() - started
        self.stats.decode_calls += 1
        if status == 1:
            raise ContextOverflowError(f"the context ({self.n_ctx} tokens) is full")
        if status != 0:
            raise GenerationError(f"llama_decode failed ({status})")


def _common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i
