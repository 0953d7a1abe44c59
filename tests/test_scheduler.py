"""scheduler.run.TaskState: one task's state machine (probe hold, escalation, vote, early stop), pure.

No model, no decoder: events are built by hand and fed in the order a decoder sends them. The
end-to-end behaviour (real llama.cpp) is tested through `think` in test_batch, test_probe, test_cli_ask.
"""

from __future__ import annotations

from dataclasses import replace

from thinkcli.engine.events import Answer, Probed, SequenceDone, Usage
from thinkcli.output.records import BudgetLowered, ProbeReport
from thinkcli.policy.plan import Overrides, make_plan
from thinkcli.policy.registry import load_registry
from thinkcli.scheduler.fit import Fitted
from thinkcli.scheduler.results import Task, messages_for
from thinkcli.scheduler.run import TaskState

REG = load_registry()


def state(samples: int = 1, prompt: str = "What is 2 + 3?", **overrides) -> TaskState:
    plan = make_plan(prompt, REG, Overrides(**overrides), "tiny-reasoner")
    if samples > 1:
        plan = replace(plan, samples=samples, strategy="vote")
    task = Task("t", prompt, plan, messages_for(prompt))
    return TaskState(task, Fitted(plan, [1, 2, 3], 0, ()), "tiny-reasoner", "qwen3", 0.0,
                     probing=plan.probe is not None)


def done(index: int, answer: str, reason: str = "stop", confidence: float | None = 0.9, thinking: int = 5) -> SequenceDone:
    return SequenceDone(("t", index), reason, "…", answer, Usage(3, 0, thinking, 1, 0), confidence, 0.01, 0.1)  # type: ignore[arg-type]


def test_a_single_sample_closes_on_its_end_and_its_outcome_is_that_sample():
    s = state()
    finished, cancel = s.finished(0, done(0, "5"))
    assert cancel == [] and s.complete and finished.vote_answer is None  # one sample does not vote
    outcome = s.outcome()
    assert outcome.done.answer == "5" and outcome.vote is None and outcome.samples == ()


def test_the_vote_starts_a_window_at_a_time_and_stops_once_the_leader_cannot_be_overtaken():
    s = state(samples=5)
    assert s.next_window() == [0, 1] and s.next_window() == []  # the next window waits for this one
    assert s.finished(0, done(0, "5"))[1] == [] and s.finished(1, done(1, "6"))[1] == []
    assert s.next_window() == [2, 3]
    s.finished(2, done(2, "5"))
    finished, cancel = s.finished(3, done(3, "5"))  # 3 against 1, one left: no catching up
    assert finished.vote_answer == "5" and cancel == [] and s.stopping and s.complete  # sample 4 never started
    outcome = s.outcome()
    assert outcome.vote is not None and outcome.vote.winner == "5" and outcome.vote.stopped == "decided"
    assert outcome.vote.answers == ("5", "6", "5", "5", None) and outcome.vote.samples_run == 4
    assert outcome.samples[4].finish_reason == "stopped_early"


def test_an_eight_sample_vote_on_an_easy_item_stops_when_the_leader_is_safe():
    s = state(samples=8)
    ran = 0
    while not s.stopping:
        for index in s.next_window():
            ran += 1
            s.finished(index, done(index, "5"))
    outcome = s.outcome()
    assert ran == 4 and outcome.vote is not None and outcome.vote.stopped == "safe"  # P(leader > 1/2) = 0.97
    assert outcome.vote.samples_run == 4 and s.complete and len(outcome.samples) == 8


def test_a_split_vote_goes_on_and_the_most_confident_of_the_winners_is_shown():
    s = state(samples=3)
    assert s.next_window() == [0, 1]
    s.finished(0, done(0, "5", confidence=0.5))
    assert s.finished(1, done(1, "6"))[1] == []  # 1 to 1 with one to come: not decided
    assert s.next_window() == [2]
    s.finished(2, done(2, "5", confidence=0.8))
    outcome = s.outcome()
    assert outcome.vote is not None and outcome.vote.counts == {"5": 2, "6": 1}
    assert outcome.vote.winner_sample == 2 and outcome.done.confidence == 0.8


def test_the_probe_holds_the_answer_until_its_verdict_and_a_kept_answer_is_released():
    s = state(prompt="hi")  # the instant tier: auto probes it
    assert s.probing and s.escalation is not None and s.escalation.difficulty.tier == "light"
    held = Answer(("t", 0), "hello", 1)
    s.held.append(held)
    released = s.verdict(Probed(("t", 0), 1, 0.97, 0.5, kept=True))
    assert released[0] is held and isinstance(released[1], Probed) and not s.probing
    assert s.probe == ProbeReport(1, 0.97, 0.5, True)


def test_an_unsure_probe_drops_its_answer_and_escalates_with_a_note():
    s = state(prompt="hi")
    s.held.append(Answer(("t", 0), "hmm", 1))
    assert [type(e) for e in s.verdict(Probed(("t", 0), 1, 0.1, 0.5, kept=False))] == [Probed]
    escalation = s.escalation
    assert escalation is not None
    lowered = BudgetLowered("context", (256, 100), (64, 64), context=512, prompt_tokens=300)
    planned = s.escalated(Fitted(escalation, [1, 2, 3], 0, (lowered,)), probe_s=0.123456)
    assert planned.plan is escalation and planned.notes == (s.probe,)
    assert s.probe == ProbeReport(1, 0.1, 0.5, False, 0.1235, "light")
    assert s.escalation is None and s.fitted.notes == (lowered,) and s.done == {}  # the thinking run starts clean
    s.finished(0, done(0, "hi there"))
    outcome = s.outcome()
    assert outcome.probe is not None and outcome.probe.escalated_to == "light" and outcome.notes == (lowered,)


def test_stop_cancels_only_the_samples_still_running_and_ends_those_never_started():
    s = state(samples=4)
    assert s.next_window() == [0, 1]
    s.finished(1, done(1, "5"))
    assert s.stop() == [0] and s.stopping and s.done[2].finish_reason == s.done[3].finish_reason == "stopped_early"
