"""The token trace: kept by the policy, packed into the run log, drawn by `think logs show`."""

from __future__ import annotations

import json
import sqlite3

from test_budget import END, policy

from thinkcli.engine.events import Span
from thinkcli.output.trace import MAX_CHARS, Piece, encode, pieces, trace_record


def test_spans_add_up_to_the_stripped_texts_and_mark_the_budget_message():
    p = policy(max_thinking=4, max_answer=10)
    for token, piece, prob in ((1, "  Let", 0.9), (2, " me", 0.5), (3, " think", 0.1), (4, " <", 0.3)):
        p.decide(token, piece, prob)
    for token, piece in ((5, " Par"), (6, "is. "), (END, "")):
        p.decide(token, piece, 0.7)
    p.parser.flush()
    trace = p.token_trace()
    thinking, answer = "".join(p.parser.thinking_text).strip(), p.parser.answer
    assert sum(s.chars for s in trace.thinking) == len(thinking)
    assert sum(s.chars for s in trace.answer) == len(answer) == len("Paris.")
    parts = pieces(thinking, encode(trace.thinking))
    assert "".join(part.text for part in parts) == thinking
    assert parts[0] == Piece("Let", 0.9) and parts[1].prob == 0.5 and round(parts[2].prob, 2) == 0.1
    [forced] = [part for part in parts if part.mark]
    assert forced.mark == "cap" and "Time is up." in forced.text and "<" in forced.text  # the held-back "<" came out with it


def test_an_early_close_is_marked_where_wait_went_in():
    p = policy(min_thinking=4, max_thinking=50)
    p.decide(1, "x", 0.8)
    p.decide(2, " </th", 0.8)
    p.decide(3, "ink>", 0.8)  # before the minimum: rolled back, "Wait," instead
    for token in (4, 5, 6):
        p.decide(token, " y", 0.6)
    p.decide(7, "</think>", 0.9)
    p.decide(END, "")
    thinking = p.parser.thinking
    parts = pieces(thinking, encode(p.token_trace().thinking))
    assert "".join(part.text for part in parts) == thinking
    assert [part.mark for part in parts if part.mark] == ["wait"]
    assert next(part for part in parts if part.mark).text == "\nWait,"


def test_an_insertion_without_thinking_text_still_has_its_place():
    p = policy(max_thinking=50)
    p.decide(1, "abc", 0.9)
    p.decide(END, "")  # the model ends inside its thinking: only the close tag goes in
    marks = [s for s in p.token_trace().thinking if s.mark]
    assert marks == [Span(0, None, "eos")]
    assert [part.mark for part in pieces("abc", encode(p.token_trace().thinking))] == ["", "eos"]


def test_packing_is_two_bytes_a_span_and_survives_long_spans_and_bad_input():
    long = Span(MAX_CHARS * 2 + 3, 0.5)
    encoded = encode((Span(2, None), long, Span(1, 1.0)))
    text = "ab" + "x" * long.chars + "c"
    parts = pieces(text, encoded)
    assert "".join(p.text for p in parts) == text
    assert parts[0].prob is None and {p.prob for p in parts[1:-1]} == {0.5} and parts[-1].prob == 1.0
    assert pieces("plain", None) == [Piece("plain")]  # a run logged before traces
    assert pieces("plain", "not base64!") == [Piece("plain")]
    assert pieces("ab", encode((Span(5, 0.5),))) == [Piece("ab")]  # a trace of another text
    assert pieces("abcdef", encode((Span(2, 0.5),))) == [Piece("ab", 0.5), Piece("cdef")]
    assert trace_record(policy().token_trace()) is None


def test_logs_show_draws_a_real_trace(think, think_home):
    env = {"THINK_TOKEN_PROBS": "1"}
    r = think("ask", "-m", "tiny-reasoner", "--tier", "light", "--max-thinking", "12", "--temperature", "0",
              "What is 4721 + 389?", env=env)
    assert r.returncode == 0, r.stderr
    shown = think("logs", "show", "last")
    assert shown.returncode == 0, shown.stderr
    out = shown.stdout
    assert "tier light" in out and "What is 4721 + 389?" in out and "thinking · 12 tokens" in out
    assert "[budget cap: thinking closed]" in out and "token probability" not in out  # no legend without colour
    assert "\x1b[" not in out  # piped: plain text
    assert r.stdout.strip() in out  # the answer
    record = json.loads(think("logs", "show", "1", "--json").stdout)
    parts = pieces(record["thinking"], record["trace"]["thinking"])
    assert "".join(p.text for p in parts) == record["thinking"]
    assert sum(p.prob is not None for p in parts) >= 10 and [p.mark for p in parts if p.mark] == ["cap"]
    db = sqlite3.connect(think_home / "data" / "logs.db")
    size = db.execute("SELECT length(trace), length(thinking) FROM runs").fetchone()
    assert 0 < size[0] < 4 * size[1] + 200


def test_logs_show_a_vote_and_bad_ids(think):
    r = think("ask", "-m", "tiny-reasoner", "--tier", "standard", "-n", "3", "--temperature", "0.8", "What is 58 + 67?")
    assert r.returncode == 0, r.stderr
    out = think("logs", "show").stdout
    assert "3 samples" in out and out.count("sample ") >= 3 and "★ sample" in out and "winner: " in out
    for bad, message in (("999", "no run #999"), ("abc", "a run is its id")):
        failed = think("logs", "show", bad)
        assert failed.returncode != 0 and message in failed.stderr and "Traceback" not in failed.stderr
