"""The decode loop on real llama.cpp with tiny random-weight models."""

from __future__ import annotations

from pathlib import Path

import pytest

from thinkcli.engine.budget import BudgetSpec
from thinkcli.engine.events import BudgetForced, Extended, SequenceDone, Started, Thinking
from thinkcli.engine.session import Engine, Job
from thinkcli.errors import ContextOverflowError
from thinkcli.policy.registry import load_registry

REG = load_registry(None)


@pytest.fixture
def engine():
    eng = Engine(threads=1, n_ctx=2048)
    yield eng
    eng.close()


def load(engine: Engine, path: Path):
    return engine.load(path.name, path, REG.families["qwen3"], REG.families)


def job(key="a", budget=None, seed=0, prompt="hello", **kw) -> Job:
    budget = budget or BudgetSpec(max_thinking=40, max_answer=10)
    return Job(key, [{"role": "user", "content": prompt}], budget, REG.families["qwen3"].sampling_for(0.8, seed), **kw)


def run(engine, loaded, jobs, parallel=1):
    return list(engine.generate(loaded, jobs, parallel=parallel))


def done_events(events):
    return [e for e in events if isinstance(e, SequenceDone)]


@pytest.fixture
def reasoner():
    """The shipped tiny reasoner on one engine of its own: ask(budget) answers `What is 4721 + 389?` greedily,
    run to its end (the decoder's own cleanup), with the decoder's counters so far."""
    from thinkcli.engine.family import Sampling
    from thinkcli.models.hub import packaged_path

    engine = Engine(n_ctx=1024)
    loaded = engine.load("tiny-reasoner", packaged_path("tiny-reasoner.gguf"), None, REG.families)

    def ask(budget: BudgetSpec) -> tuple[SequenceDone, dict]:
        job = Job("t", [{"role": "user", "content": "What is 4721 + 389?"}], budget, Sampling(temperature=0.0))
        done = next(e for e in list(engine.generate(loaded, [job])) if isinstance(e, SequenceDone))
        return done, dict(vars(engine._decoders[str(loaded.model.path)].stats))

    yield ask
    engine.close()


def test_cap_is_exact_on_a_model_that_never_closes_its_thinking(engine, tiny):
    loaded = load(engine, tiny("tame"))
    events = run(engine, loaded, [job(budget=BudgetSpec(max_thinking=37, max_answer=9))])
    done = done_events(events)[0]
    assert done.usage.thinking_tokens == 37
    assert done.usage.answer_tokens == 9 and done.finish_reason == "length"
    assert done.answer  # an answer follows the forced close
    forced = [e for e in events if isinstance(e, BudgetForced)]
    assert len(forced) == 1 and forced[0].reason == "cap" and forced[0].at_tokens == 37
    # event order: Started, thinking..., BudgetForced, answer..., SequenceDone
    kinds = [type(e).__name__ for e in events if type(e).__name__ != "Progress"]
    assert kinds[0] == "Started" and kinds[-1] == "SequenceDone"
    first_answer = kinds.index("Answer")
    assert kinds.index("BudgetForced") < first_answer
    assert "Thinking" not in kinds[first_answer:]


def test_wait_extends_thinking_of_a_model_that_closes_at_once(engine, tiny):
    loaded = load(engine, tiny("closer"))
    events = run(engine, loaded, [job(budget=BudgetSpec(min_thinking=12, max_thinking=60, max_answer=5))])
    extended = [e for e in events if isinstance(e, Extended)]
    assert extended, "the early close tag must be replaced by Wait"
    done = done_events(events)[0]
    assert "Wait" in done.thinking
    assert done.usage.thinking_tokens + sum(e.forced_tokens for e in extended) >= 12
    no_min = run(engine, loaded, [job(budget=BudgetSpec(min_thinking=0, max_thinking=60, max_answer=5))])
    assert not [e for e in no_min if isinstance(e, Extended)]
    assert done_events(no_min)[0].usage.thinking_tokens < 12


def test_thinking_disabled_goes_straight_to_the_answer(engine, tiny):
    loaded = load(engine, tiny("tame"))
    events = run(engine, loaded, [job(budget=BudgetSpec(thinking=False, max_thinking=0, max_answer=8))])
    assert not [e for e in events if isinstance(e, Thinking)]
    done = done_events(events)[0]
    assert done.usage.thinking_tokens == 0 and done.usage.answer_tokens == 8
    rendered = engine.render(loaded, [{"role": "user", "content": "x"}], thinking=False).text
    assert rendered.endswith("<think>\n\n</think>\n\n")


def test_model_ending_inside_thinking_still_answers(engine, tiny):
    loaded = load(engine, tiny("ender"))
    events = run(engine, loaded, [job()])
    assert any(isinstance(e, BudgetForced) and e.reason == "eos" for e in events)


def test_best_of_n_evaluates_the_prompt_once_and_samples_differ_by_seed(engine, tiny):
    loaded = load(engine, tiny("tame"))
    jobs = [job(key=i, seed=i, budget=BudgetSpec(max_thinking=20, max_answer=4)) for i in range(4)]
    decoder = engine.decoder(loaded, 4)
    before = decoder.stats.prompt_tokens_evaluated
    events = run(engine, loaded, jobs, parallel=4)
    started = [e for e in events if isinstance(e, Started)]
    evaluated = decoder.stats.prompt_tokens_evaluated - before
    assert evaluated <= started[0].prompt_tokens  # once for all four (less if cached)
    done = done_events(events)
    assert len(done) == 4 and len({d.thinking for d in done}) == 4
    assert all(d.usage.thinking_tokens == 20 for d in done)


def test_same_seed_same_output_and_prefix_reuse(engine, tiny):
    loaded = load(engine, tiny("tame"))
    first = done_events(run(engine, loaded, [job(seed=7)]))[0]
    second_events = run(engine, loaded, [job(seed=7)])
    second = done_events(second_events)[0]
    assert first.thinking == second.thinking
    started = next(e for e in second_events if isinstance(e, Started))
    assert started.reused_tokens == started.prompt_tokens - 1  # the cached prompt was reused


def test_continuous_batching_runs_more_jobs_than_slots(engine, tiny):
    loaded = load(engine, tiny("tame"))
    jobs = [job(key=i, seed=i, prompt=f"prompt {i}", budget=BudgetSpec(max_thinking=5 + i, max_answer=3)) for i in range(7)]
    done = done_events(run(engine, loaded, jobs, parallel=3))
    assert sorted(d.seq for d in done) == list(range(7))
    assert {d.seq: d.usage.thinking_tokens for d in done} == {i: 5 + i for i in range(7)}


def test_cancel_stops_a_sequence(engine, tiny):
    loaded = load(engine, tiny("tame"))
    decoder = engine.decoder(loaded, 2)
    jobs = [job(key=i, seed=i, budget=BudgetSpec(max_thinking=500, max_answer=5)) for i in range(2)]
    results = {}
    for event in decoder.run(engine.request(loaded, j) for j in jobs):
        if isinstance(event, Thinking) and event.seq == 1 and event.tokens > 10:
            decoder.cancel(1)
        if isinstance(event, SequenceDone):
            results[event.seq] = event
    assert results[1].finish_reason == "stopped_early" and results[1].usage.thinking_tokens < 100
    assert results[0].usage.thinking_tokens == 500


def test_prompt_longer_than_context(engine, tiny):
    loaded = load(engine, tiny("tame"))
    with pytest.raises(ContextOverflowError):
        run(engine, loaded, [job(prompt="x " * 3000)])


def test_confidence_stop_on_a_confident_model(engine, tiny):
    loaded = load(engine, tiny("confident"))
    spec = BudgetSpec(min_thinking=20, max_thinking=300, max_answer=4, confidence=0.9, confidence_window=8)
    events = run(engine, loaded, [job(budget=spec, score_tokens=True)])
    forced = [e for e in events if isinstance(e, BudgetForced)]
    assert forced and forced[0].reason == "confidence" and forced[0].at_tokens == 20
    tame = load(engine, tiny("tame"))
    events = run(engine, tame, [job(budget=spec, score_tokens=True)])
    assert [e.reason for e in events if isinstance(e, BudgetForced)] == ["cap"]


def test_parallel_limit_is_honoured_on_a_wider_context(engine, tiny):
    loaded = load(engine, tiny("tame"))
    engine.decoder(loaded, 4)  # a 4-slot context exists already
    jobs = [job(key=i, seed=i, budget=BudgetSpec(max_thinking=5, max_answer=2)) for i in range(3)]
    order = [(type(e).__name__, e.seq) for e in run(engine, loaded, jobs, parallel=1)
             if isinstance(e, (Started, SequenceDone))]
    assert order == [("Started", 0), ("SequenceDone", 0), ("Started", 1), ("SequenceDone", 1),
                     ("Started", 2), ("SequenceDone", 2)]


def test_forced_tokens_of_many_slots_never_overflow_the_batch(engine, tiny):
    loaded = load(engine, tiny("tame"))
    decoder = engine.decoder(loaded, 8)
    # 8 slots hit their cap on the same step: 8 budget messages (~100 tokens each on this
    # char-level vocabulary) exceed the batch; the overflow waits one step instead.
    jobs = [job(key=i, seed=i, budget=BudgetSpec(max_thinking=10, max_answer=3)) for i in range(8)]
    done = done_events(run(engine, loaded, jobs, parallel=8))
    assert decoder.batch_capacity < 8 * 100
    assert len(done) == 8 and all(d.usage.thinking_tokens == 10 and d.usage.answer_tokens == 3 for d in done)


def test_trial_answers_fork_the_sequence_and_a_sure_one_ends_the_thinking(reasoner):
    """The shipped reasoner at a low trial threshold: the first line's trial is sure, so the thinking ends
    there (reason "trial", no budget message) and the answer follows in the same sequence; a threshold
    above 1 never ends it, and the fork leaves the trace as it was."""
    from thinkcli.engine.budget import states

    def run(trial: float, give_up: float = 0.0, cap: int = 256, agree: float = 0.0,
            stated: float = 0.0) -> tuple[SequenceDone, dict]:
        return reasoner(BudgetSpec(max_thinking=cap, max_answer=16, trial_confidence=trial, give_up=give_up,
                                   trial_agree=agree, trial_stated=stated))

    plain, _ = run(0.0)
    tried, stats = run(0.5)
    assert [e.reason for e in tried.events] == ["trial"] and tried.usage.thinking_tokens < plain.usage.thinking_tokens
    assert stats["trials"] >= 1 and stats["trials_taken"] == 1 and stats["trial_decodes"] >= 1
    assert "Considering the limited time" not in tried.thinking and tried.answer  # closed, not cut
    assert [m.mark for m in tried.trace.thinking if m.mark] == ["trial"]
    never, stats = run(0.999999)
    assert never.thinking == plain.thinking and never.answer == plain.answer  # forks change nothing
    assert stats["trials"] > 1 and stats["trials_taken"] == 1  # the counter is per decoder: still one
    assert stats["trials_cut"] >= 1  # out of reach of 0.999999 at once: stopped early, the trace as it was
    # agreement: two trials in a row answer the same, each at least this sure (a low bar here: it ends
    # early, but only once two trials name the same answer, and with the close tag alone)
    agreed, _ = run(0.999999, agree=0.3)
    assert [e.reason for e in agreed.events] == ["trial"] and agreed.usage.thinking_tokens < plain.usage.thinking_tokens
    assert "Considering the limited time" not in agreed.thinking and agreed.answer
    # a stated answer: the trial names what the line just ended gives as its result (`so 5110`)
    told, _ = run(0.999999, stated=0.5)
    assert [e.reason for e in told.events] == ["trial"] and told.usage.thinking_tokens < plain.usage.thinking_tokens
    assert told.answer.strip() == plain.answer.strip() == "5110"
    assert states(told.thinking.strip().splitlines()[-1], told.answer)
    # a floor no trial reaches: at the first line end past half the cap (32 of 64), the cap's own end
    given_up, _ = run(0.0, give_up=0.999999, cap=64)
    assert [e.reason for e in given_up.events] == ["give_up"] and 32 <= given_up.usage.thinking_tokens < 64
    assert "Considering the limited time" in given_up.thinking and given_up.answer
    assert [m.mark for m in given_up.trace.thinking if m.mark] == ["give_up"]


def test_the_answer_after_a_sure_trial_is_the_trial_answer(reasoner, monkeypatch):
    """Decoded anew in the sequence's own batch, the answer could tip a near tie the other way (`50490`
    where the trial said `504900`); the answer given is the one whose confidence ended the thinking. Here
    the fork's answer is swapped for one the model would never give: that is what comes out, token for
    token, with the model's own end."""
    from thinkcli.engine.decoder import Decoder

    real_trial = Decoder._trial

    def swapped(self, slot, close, tokens, bar=0.0):  # type: ignore[no-untyped-def]
        _, answer, end = real_trial(self, slot, close, tokens)  # not cut short: the whole answer and its end
        return 1.0, (*answer[:1], *self.model.tokenize("4242", special=False)), end

    monkeypatch.setattr(Decoder, "_trial", swapped)
    done, _ = reasoner(BudgetSpec(max_thinking=256, max_answer=16, trial_confidence=0.5))
    assert [e.reason for e in done.events] == ["trial"] and done.answer.strip() == "4242"
    assert done.finish_reason == "stop" and done.usage.answer_tokens == 5


def test_a_trial_is_no_surer_than_its_end(reasoner, monkeypatch):
    """A trial's confidence is its tokens' geometric mean, capped by the end's probability: `70` where
    the end and a third digit are a coin toss is no sure answer (and a sure trial's answer is the one
    given). Here every end the fork reads is made a coin toss: no trial ends the thinking any more."""
    from thinkcli.engine.decoder import Decoder

    budget = BudgetSpec(max_thinking=256, max_answer=16, trial_confidence=0.9)
    sure, _ = reasoner(budget)
    real = Decoder._most_likely

    def unsure_end(self, index):  # type: ignore[no-untyped-def]
        token, prob = real(self, index)
        return token, (0.5 if self.model.is_end(token) else prob)

    monkeypatch.setattr(Decoder, "_most_likely", unsure_end)
    unsure, _ = reasoner(budget)
    assert [e.reason for e in sure.events] == ["trial"]
    assert unsure.events == () and unsure.usage.thinking_tokens > sure.usage.thinking_tokens
    assert unsure.answer.strip() == sure.answer.strip() == "5110"
