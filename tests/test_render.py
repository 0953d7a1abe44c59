"""The terminal renderer, forced onto a terminal: what goes where, and NO_COLOR."""

from __future__ import annotations

import io
import re

from thinkcli.cli.render import StreamRenderer
from thinkcli.engine.budget import BudgetSpec
from thinkcli.engine.events import Answer, BudgetForced, ForcedEvent, Progress, SequenceDone, Started, Thinking, Usage
from thinkcli.engine.vote import Vote
from thinkcli.output.records import Outcome, outcome_record
from thinkcli.policy.classify import Difficulty
from thinkcli.policy.plan import Plan
from thinkcli.policy.registry import load_registry
from thinkcli.scheduler.results import Planned

REG = load_registry()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(events, **kwargs):
    out, err = io.StringIO(), Terminal()
    renderer = StreamRenderer(out=out, err=err, **kwargs)
    for event in events:
        renderer.handle(event)
    renderer.close()
    return out.getvalue(), err.getvalue()


def stream(samples: int = 1):
    plan = Plan(Difficulty("light", 0.3, ("short factual question",)), REG.tiers["light"], "tiny",
                BudgetSpec(max_thinking=4, max_answer=8), "vote" if samples > 1 else "single", samples, None, 0)
    done = SequenceDone(("t", 0), "stop", "abcd", "Paris.", Usage(9, 0, 4, 2, 3), 0.9, 0.01, 0.2,
                        (ForcedEvent("budget_forced", 4, 3, "cap"),), "paris" if samples > 1 else None)
    outcome = Outcome("t", "hi", "tiny", "qwen3", plan, done, 0.1, 0.3, 0.0,
                      samples=(done,) * samples if samples > 1 else (),
                      vote=Vote("paris", {"paris": samples}, {}, "majority") if samples > 1 else None)
    return [
        Planned("t", plan, "tiny", "qwen3", 0.1),
        Started(("t", 0), 9, 0),
        *[Thinking(("t", 0), c, i + 1) for i, c in enumerate("abcd")],
        Progress(("t", 0), "thinking", 4, 0, None),
        BudgetForced(("t", 0), "cap", 4, 3),
        Answer(("t", 0), "Paris", 1),
        Answer(("t", 0), ".", 2),
        done,
        outcome,
    ], outcome


def test_terminal_gets_header_thinking_counter_and_stats_stdout_only_the_answer(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    events, _ = stream()
    out, err = run(events)
    assert out == "Paris.\n"
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)
    assert "light · tiny (qwen3) · thinking ≤ 4" in plain
    assert "abcd" in plain and "thought for 4/4 tokens" in plain
    assert "light · tiny (qwen3) · 4 thinking + 2 answer tokens · 3 forced" in plain
    assert "\x1b[" in err  # colour on a terminal


def test_no_color_keeps_everything_but_colour(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    events, _ = stream()
    out, err = run(events)
    assert out == "Paris.\n"
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)  # bold and dim may stay: they are not colour
    assert "thought for 4/4 tokens" in plain and "light · tiny (qwen3) · thinking ≤ 4" in plain
    assert not re.search(r"\x1b\[[0-9;]*(3\d|38;)[0-9;]*m", err)


def test_vote_mode_shows_the_vote_and_the_winner(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    events, outcome = stream(samples=3)
    out, err = run(events)
    assert out == "Paris.\n" and "vote: paris (majority" in err
    record = outcome_record(outcome)
    assert [s["answer"] for s in record["samples"]] == ["paris"] * 3 and record["family"] == "qwen3"


def test_hidden_thinking_prints_nothing_but_the_answer(monkeypatch):
    events, _ = stream()
    out, err = run(events, show_thinking=False, stats_after=False)
    assert out == "Paris.\n" and "abcd" not in err
