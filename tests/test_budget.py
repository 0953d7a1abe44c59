"""The per-sequence policy on scripted tokens (no model): caps, Wait, confidence, answer cap."""

import pytest

from thinkcli.engine.budget import BudgetSpec, ForcedText, SequencePolicy
from thinkcli.engine.events import ForcedEvent
from thinkcli.engine.thinking import ANSWER, ThinkingParser

END = 99
CLOSE = ([50, 51], "</think>")
FORCED = ForcedText(
    close=([50, 51, 60], "</think>\n"),
    budget=([70, 50, 51, 60], "Time is up.</think>\n"),
    wait=([80, 81], "\nWait,"),
    answer_prefix=([], ""),
)


def policy(**spec) -> SequencePolicy:
    return SequencePolicy(BudgetSpec(**spec), ThinkingParser("</think>", spec.get("thinking", True)), FORCED,
                          lambda t: t == END)


def test_cap_is_exact_and_forces_the_graceful_close():
    p = policy(max_thinking=5, max_answer=10)
    steps = [p.decide(1, "a") for _ in range(5)]
    assert all(s.tokens == [1] for s in steps[:4])
    assert steps[4].tokens == [1, 70, 50, 51, 60]
    assert steps[4].event == ForcedEvent("budget_forced", 5, 4, "cap")
    assert p.thinking_tokens == 5 and p.parser.phase == ANSWER
    step = p.decide(2, "B")
    assert step.tokens == [2] and p.answer_tokens == 1


def test_early_close_becomes_wait_and_rolls_back_the_partial_tag():
    p = policy(min_thinking=4, max_thinking=50)
    p.decide(1, "x")
    p.decide(2, " </th")  # first half of the tag: committed, held back by the parser
    step = p.decide(3, "ink>")  # completes the tag before the minimum
    assert step.rollback == 1
    assert step.tokens == [80, 81]
    assert step.event.type == "extended"
    assert p.parser.phase != ANSWER
    assert p.thinking_tokens == 1 and p.thinking_total == 3


def test_close_after_minimum_is_accepted():
    p = policy(min_thinking=1, max_thinking=50)
    p.decide(1, "x")
    step = p.decide(6, "</think>")
    assert step.tokens == [6] and step.event is None and p.parser.phase == ANSWER


def test_end_of_generation_inside_thinking_closes_it_so_an_answer_follows():
    p = policy(max_thinking=50)
    p.decide(1, "x")
    step = p.decide(END, "")
    assert step.tokens == [50, 51, 60] and step.event.reason == "eos"
    assert p.parser.phase == ANSWER


def test_confidence_stop_fires_only_after_the_minimum():
    p = policy(min_thinking=6, max_thinking=100, confidence=0.9, confidence_window=3)
    reasons = []
    for i in range(10):
        step = p.decide(1, "a", prob=0.99)
        if step.event:
            reasons.append((i + 1, step.event.reason))
            break
    assert reasons == [(6, "confidence")]


def test_low_confidence_drops_the_sequence_when_a_floor_is_set():
    p = policy(max_thinking=100, confidence_floor=0.5, confidence_window=2)
    assert p.decide(1, "a", prob=0.1).finish is None
    assert p.decide(1, "a", prob=0.1).finish == "dropped"


def test_answer_cap_and_end_token():
    p = policy(thinking=False, max_answer=2)
    assert p.decide(1, "a").finish is None
    assert p.decide(1, "b").finish == "length"
    q = policy(thinking=False, max_answer=5)
    assert q.decide(END, "").finish == "stop"


def test_trace_confidence_is_geometric_mean():
    p = policy(thinking=False, max_answer=10)
    p.decide(1, "a", prob=0.25)
    p.decide(1, "a", prob=1.0)
    assert abs(p.trace_confidence - 0.5) < 1e-9


def test_a_loop_in_the_thinking_ends_it_gracefully_with_reason_loop():
    p = policy(max_thinking=1000, max_answer=10)
    block = ["<", "answer", ">", "\n", "<", "conclusion", ">", "\n"]  # a span repeated over and over
    steps = [p.decide(i % 7 + 1, block[i % len(block)]) for i in range(200)]
    forced = [s for s in steps if s.event is not None]
    assert forced and forced[0].event.reason == "loop" and forced[0].tokens[-4:] == [70, 50, 51, 60]
    assert p.parser.phase == ANSWER and 64 < forced[0].event.at_thinking_tokens < 100


def test_a_trace_that_repeats_its_shape_is_not_a_loop_and_the_breaker_can_be_turned_off():
    from thinkcli.engine.budget import LoopDetector
    from thinkcli.frontends.eval.arithmetic import problems

    for problem in problems(123, 3000):  # every kind, 1-12 digits: lines of one shape, numbers that change
        detector = LoopDetector(64)
        assert not any(detector.add(ch) for ch in problem.trace), problem.question
    off = policy(max_thinking=300, loop_tokens=0)
    assert all(off.decide(1, "again ").event is None for _ in range(299))


def test_two_trials_in_a_row_that_agree_and_are_sure_enough_close_the_thinking():
    p = policy(max_thinking=50, trial_confidence=0.999, trial_agree=0.9)
    assert p.decide(1, "a\n", 0.9).trial  # agreement alone asks for trials too
    assert p.trial_verdict(0.95, (7, 8)) is None  # the first: nothing to agree with yet
    assert p.trial_verdict(0.95, (7, 9)) is None  # another answer: not settled
    assert p.trial_verdict(0.85, (7, 9)) is None  # the same answer, but one of the two is below 0.9
    assert p.trial_verdict(0.92, (7, 9)) is None  # agrees with the last (0.85): still below
    step = p.trial_verdict(0.93, (7, 9))  # two in a row, both sure enough: closed as a sure trial is
    assert step is not None and step.tokens == [50, 51, 60] and step.event.reason == "trial"
    off = policy(max_thinking=50, trial_confidence=0.999)
    off.trial_verdict(0.95, (7, 9))
    assert off.trial_verdict(0.95, (7, 9)) is None  # agreement off: only trial_confidence ends it
    empty = policy(max_thinking=50, trial_agree=0.5)
    empty.trial_verdict(0.9, ())
    assert empty.trial_verdict(0.9, ()) is None  # no answer at all agrees with nothing


@pytest.mark.parametrize("line, answer, stated", [
    ("so 58190", "58190", True),
    ("d5 4+0+1=5 r58190", "58190", False),  # a label's digits are not a result
    ("d1 6-4-0=2 b0 r2", "4", False),  # an operand is not a result either
    ("d1 6-4-0=2 b0 r2", "2", True),  # after `=` it is
    ("check 129412+724514", "129412", True),
    ("so 158190", "58190", False),  # part of another number
    ("It is 5110.5 then", "5110", False),
    ("The answer is **5110**.", " 5110\n", True),  # the answer read as a reader would
    ("So the capital is Paris.", "**Paris**", True),
    ("Parisian food", "Paris", False),
    ("so 7", "", False),  # no answer states nothing
])
def test_a_line_states_an_answer_only_where_it_stands_as_a_result(line, answer, stated):
    from thinkcli.engine.budget import states

    assert states(line, answer) is stated


def test_a_trial_answer_the_line_just_ended_states_closes_the_thinking():
    p = policy(max_thinking=100, trial_stated=0.9)
    for piece in ("d1 ", "3+7+0=10", " r0\n"):
        step = p.decide(1, piece, 0.9)
    assert step.trial and p.last_line == "d1 3+7+0=10 r0"  # stated trials alone ask for trials
    assert p.trial_verdict(0.99, (5,), "0") is None  # `r0` is a label, not a result
    for piece in ("so 5819", "0\n"):
        p.decide(1, piece, 0.9)
    assert p.last_line == "so 58190"
    assert p.trial_verdict(0.85, (5,), "58190") is None  # stated, but below the bar
    assert p.trial_verdict(0.99, (5,), "5819") is None  # sure, but not what the line says
    step = p.trial_verdict(0.95, (5,), "\n58190")
    assert step is not None and step.tokens == [50, 51, 60] and step.event.reason == "trial"
    off = policy(max_thinking=100)
    off.decide(1, "so 7\n", 0.9)
    assert off.trial_verdict(0.99, (5,), "7") is None  # off: only the other rules end it


def test_a_trial_matters_from_the_lowest_bar_of_any_rule_that_reads_it():
    assert BudgetSpec().trial_bar == 0.0  # no trials
    assert BudgetSpec(trial_confidence=0.999, trial_agree=0.98, trial_stated=0.95).trial_bar == 0.95
    assert BudgetSpec(trial_confidence=0.999, give_up=0.3).trial_bar == 0.3


def test_a_sequence_whose_trials_never_come_near_sure_gives_up_past_half_its_cap():
    p = policy(max_thinking=40, give_up=0.5)  # no trial stop: trials run for the floor alone
    assert p.decide(1, "a\n", 0.9).trial
    assert p.trial_verdict(0.99) is None  # sure, but trial_confidence is off: only the floor acts
    fresh = policy(max_thinking=40, give_up=0.5)
    for _ in range(19):
        fresh.decide(1, "a\n", 0.9)
    assert fresh.trial_verdict(0.2) is None  # 19 of 40: too early to give up
    fresh.decide(1, "a\n", 0.9)
    step = fresh.trial_verdict(0.3)  # half the cap, and no trial ever reached 0.5: the cap's graceful end
    assert step is not None and step.tokens == [70, 50, 51, 60]
    assert step.event == ForcedEvent("budget_forced", 20, 4, "give_up") and fresh.parser.phase == ANSWER
    climbing = policy(max_thinking=40, give_up=0.5)
    climbing.decide(1, "a\n", 0.9)
    assert climbing.trial_verdict(0.6) is None  # once near sure: the model is closing in, never given up
    for _ in range(30):
        climbing.decide(1, "a\n", 0.9)
    assert climbing.trial_verdict(0.1) is None and climbing.parser.phase != ANSWER


def test_a_line_end_asks_for_a_trial_and_a_sure_one_closes_the_thinking():
    p = policy(max_thinking=50, trial_confidence=0.9)
    assert not p.decide(1, "a", 0.9).trial  # mid-line: no trial
    assert p.decide(2, "b\n", 0.9).trial  # a line ended: the decoder may try an answer
    assert p.trial_verdict(0.5) is None and p.trial_verdict(None) is None  # unsure, or no answer: go on
    step = p.trial_verdict(0.95)
    assert step is not None and step.tokens == [50, 51, 60] and step.event == ForcedEvent("budget_forced", 2, 3, "trial")
    assert p.parser.phase == ANSWER and p.trial_verdict(0.99) is None  # thinking is over: nothing to close
    assert not policy(max_thinking=50).decide(2, "b\n", 0.9).trial  # off unless asked for
