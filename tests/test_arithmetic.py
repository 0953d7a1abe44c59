"""The tiny reasoner's problems: right answers, traces that work the problem, the eval set's mix."""

from __future__ import annotations

import re

from thinkcli.frontends.eval.arithmetic import (
    KINDS,
    add_problem,
    count_problem,
    digitsum_problem,
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


def test_every_problem_is_right_and_its_trace_checks_the_answer_after_finding_it():
    import random

    rng = random.Random(3)
    for _ in range(500):
        for kind in KINDS:
            p = draw(rng, kind)
            assert _solve(p.question) == p.answer, p.question
            lines = p.trace.splitlines()
            found = lines.index(f"so {p.answer}")
            assert lines[found + 1].startswith("check") and lines[-1].endswith(f"{p.answer} ok")
            # the overthinking a policy can save: the check is about as long as the work before it
            assert 0.5 * found <= len(lines) - found - 2 <= found + 1, p.trace


def test_a_check_works_the_problem_back():
    """A sum is checked by subtracting back, a difference by adding back: the check ends on the operand."""
    add = add_problem(48213, 9977).trace.splitlines()
    assert add[5:8] == ["so 58190", "check 58190-9977", "c1 0-7-0+10=3 b1 r3"]
    assert add[-2:] == ["c5 5-0-1=4 b0 r48213", "48213+9977=58190 ok"]
    assert sub_problem(100, 1).trace.splitlines()[3:] == ["so 99", "check 99+1", "c1 9+1+0=10 r0", "c2 9+0+1=10 r00",
                                                          "c3 0+0+1=1 r100", "100-1=99 ok"]
    assert digitsum_problem(4821).trace.splitlines()[4:7] == ["so 15", "check", "+1=1"]


def test_column_traces_carry_borrow_and_collect_the_digits():
    trace = add_problem(48213, 9977).trace.splitlines()
    assert trace[0] == "d1 3+7+0=10 r0" and trace[1] == "d2 1+7+1=9 r90" and trace[4] == "d5 4+0+1=5 r58190"
    assert sub_problem(100, 1).trace.splitlines()[:3] == ["d1 0-1-0+10=9 b1 r9", "d2 0-0-1+10=9 b1 r99",
                                                          "d3 1-0-1=0 b0 r099"]
    assert mul_problem(95, 9).trace.splitlines()[:3] == ["d1 5*9+0=45 r5", "d2 9*9+4=85 r55", "d3 8 r855"]
    count = count_problem("r", "strawberry")
    assert count.answer == 3 and count.trace.splitlines()[:4] == ["s r no 0", "st r no 0", "str r yes 1", "tra r no 1"]


def test_the_eval_set_is_fresh_and_mostly_easy():
    items = load_set("reasoner")
    hard = [i for i in items if i.level == 2]
    assert len(items) == 200 and 0.3 < len(hard) / len(items) < 0.5
    assert {i.kind for i in items} == set(KINDS) and all(i.checker == "number" for i in items)
    assert all(i.level == 2 for i in load_set("reasoner:hard")) and all(i.level == 1 for i in load_set("reasoner:easy"))
    assert [i.prompt for i in load_set("reasoner")] == [i.prompt for i in items]  # reproducible
    training = {p.question for p in problems(20261202, 2000)}
    assert sum(i.prompt in training for i in hard) == 0  # hard problems are never ones it was trained on


def _training_script():  # type: ignore[no-untyped-def]
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "training" / "train_tiny_reasoner.py"
    spec = importlib.util.spec_from_file_location("train_tiny_reasoner", path)
    assert spec is not None and spec.loader is not None
    training = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(training)  # torch is imported only inside main()
    return training


def test_training_draws_balanced_letter_counts_whose_answers_are_right():
    """The training script's even counts (--balanced-counts): answers 0-3 alike, each count right."""
    import random
    from collections import Counter

    training = _training_script()
    rng = random.Random(5)
    answers: Counter[int] = Counter()
    for _ in range(2000):
        problem = training._balanced_count(rng, False)
        letter, word = re.search(r"letter '(.)' appear in '(\w+)'", problem.question).groups()
        assert 3 <= len(word) <= 6 and problem.answer == word.count(letter)
        answers[problem.answer] += 1
    assert set(answers) == {0, 1, 2, 3} and min(answers.values()) > 400


def test_direct_kind_weights_shape_the_direct_answers_alone():
    """--direct-kinds sub=3: three times the direct subtractions, the traces' kinds untouched."""
    import random
    from collections import Counter

    import pytest

    training = _training_script()
    weights = training.parse_kind_weights("sub=3,count=0.5")
    assert weights == {"add": 1.0, "sub": 3.0, "mul": 1.0, "digitsum": 1.0, "count": 0.5}
    rng = random.Random(3)
    direct = Counter(training._kind(rng, False, 1.0, weights) for _ in range(13000))
    traces = Counter(training._kind(rng, True, 1.0, weights) for _ in range(13000))
    assert 2.6 < direct["sub"] / direct["add"] < 3.4 and 0.4 < direct["count"] / direct["add"] < 0.6
    assert max(traces.values()) / min(traces.values()) < 1.15
    with pytest.raises(SystemExit, match="'division' is not one of"):
        training.parse_kind_weights("division=2")


def test_the_middle_band_lies_between_easy_and_hard():
    """`reasoner:middle`: 3-4 digits, 5-8-digit digit sums, 7-11-letter words; `wide` mixes all three."""
    from collections import Counter

    middle = load_set("reasoner:middle")
    assert len(middle) == 200 and all(i.id.split("-")[1] == "middle" and i.level is None for i in middle)
    for item in middle:
        if item.kind == "count":
            assert 7 <= len(re.search(r"in '(\w+)'", item.prompt).group(1)) <= 11
        else:
            longest = max(len(n) for n in re.findall(r"\d+", item.prompt))
            assert (5 <= longest <= 8) if item.kind == "digitsum" else (3 <= longest <= 4), item.prompt
    bands = Counter(i.id.split("-")[1] for i in load_set("reasoner:wide"))
    assert set(bands) == {"easy", "middle", "hard"} and bands["easy"] > bands["hard"] > bands["middle"] > 20
    # the bands drawn before the middle one existed draw the same problems (as printed before the change)
    assert [f"{i.id}|{i.prompt}" for i in load_set("reasoner")[:3]] == [
        "add-hard-1|What is 6320236 + 5914284?", "sub-easy-2|What is 7 - 2?", "mul-easy-3|What is 49 * 2?"]
    assert [i.prompt for i in load_set("reasoner:easy")[:2]] == ["What is 47 + 7?", "What is 49 - 8?"]
    assert load_set("reasoner:hard")[2].prompt == "What is 423313 * 2?"


def test_training_draws_middle_band_direct_answers_only_when_asked():
    """--mid-direct 0.25: a quarter of the direct answers from the middle band; traces any size; the
    roll is the one every earlier stage drew, so their recipes still draw the same problems."""
    import random
    from collections import Counter

    training = _training_script()
    rng = random.Random(9)
    direct = Counter(training._size_band(rng, False, 0.75, 0.25) for _ in range(8000))
    assert set(direct) == {(False, False), (None, True)} and 0.22 < direct[(None, True)] / 8000 < 0.28
    assert training._size_band(rng, True, 0.75, 0.25) == (None, False)
    old, new = random.Random(4), random.Random(4)
    for _ in range(100):
        expected = False if old.random() < 0.8 else None  # what stages 1-10 drew
        assert training._size_band(new, False, 0.8, 0.0) == (expected, False)
