"""The tiny reasoner's problems: right answers, traces that work the problem, the eval set's mix."""

from __future__ import annotations

import re

from thinkcli.frontends.eval.arithmetic import (
    KINDS,
    add_problem,
    count_problem,
    draw,
    mul_problem,
    problems,
    sub_problem,
)
from thinkcli.frontends.eval.sets import load_set


def _solve(question: str) -> int:
    """The answer recomputed from the question's own words (the phrasings users type)."""
    if m := re.fullmatch(r"What is (\d+) ([+*-]) (\d+)\?", question):
        a, op, b = int(m[1]), m[2], int(m[3])
        return a + b if op == "+" else a - b if op == "-" else a * b
    if m := re.fullmatch(r"What is the sum of the digits of (\d+)\?", question):
        return sum(int(d) for d in m[1])
    m = re.fullmatch(r"How many times does the letter '(\w)' appear in '(\w+)'\?", question)
    assert m, question
    return m[2].count(m[1])


def test_every_problem_is_right_and_its_trace_ends_with_the_answer_and_a_check():
    import random

    rng = random.Random(3)
    for _ in range(500):
        for kind in KINDS:
            p = draw(rng, kind)
            assert _solve(p.question) == p.answer, p.question
            lines = p.trace.splitlines()
            assert lines[-2] == f"so {p.answer}" and lines[-1].startswith("check ")


def test_column_traces_carry_borrow_and_collect_the_digits():
    trace = add_problem(48213, 9977).trace.splitlines()
    assert trace[0] == "d1 3+7+0=10 r0" and trace[1] == "d2 1+7+1=9 r90" and trace[-3] == "d5 4+0+1=5 r58190"
    assert sub_problem(100, 1).trace.splitlines()[:3] == ["d1 0-1-0+10=9 b1 r9", "d2 0-0-1+10=9 b1 r99",
                                                          "d3 1-0-1=0 b0 r099"]
    assert mul_problem(95, 9).trace.splitlines()[:3] == ["d1 5*9+0=45 r5", "d2 9*9+4=85 r55", "d3 8 r855"]
    assert count_problem("r", "strawberry").answer == 3


def test_the_eval_set_is_fresh_and_mostly_easy():
    items = load_set("reasoner")
    hard = [i for i in items if i.level == 2]
    assert len(items) == 200 and 0.3 < len(hard) / len(items) < 0.5
    assert {i.kind for i in items} == set(KINDS) and all(i.checker == "number" for i in items)
    assert all(i.level == 2 for i in load_set("reasoner:hard")) and all(i.level == 1 for i in load_set("reasoner:easy"))
    assert [i.prompt for i in load_set("reasoner")] == [i.prompt for i in items]  # reproducible
    training = {p.question for p in problems(20261202, 2000)}
    assert sum(i.prompt in training for i in hard) == 0  # hard problems are never ones it was trained on
