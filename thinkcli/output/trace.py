"""A run's text token by token: how the run log keeps it (two bytes a step) and how a view reads it.

The engine's TokenTrace says, for each step, how many characters of the thinking (or answer) it
produced and the sampled token's probability, or which insertion of the policy it was (the budget
message, "Wait", a loop break). Kept in the record as base64 of (characters, code) byte pairs:
a probability in 1/240ths, or one of MARKS. `pieces()` turns a record's text and its trace back
into shaded pieces with markers, for `think logs show` and the web page alike.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from ..engine.events import Span, TokenTrace

PROB_STEPS = 240  # a probability kept to 1/240: finer than any shading shows
UNMEASURED = 241  # sampled, but its probability was not computed
MARKS = ("scaffold", "cap", "confidence", "eos", "wait", "loop", "trial", "give_up")  # codes 242.. (append only)
MAX_CHARS = 255  # a longer span is kept as several


def encode(spans: tuple[Span, ...]) -> str:
    """Spans as base64 of (characters, code) byte pairs."""
    data = bytearray()
    for span in spans:
        code = _code(span)
        chars = span.chars
        while True:
            data += bytes((min(chars, MAX_CHARS), code))
            chars -= MAX_CHARS
            if chars <= 0:
                break
    return base64.b64encode(bytes(data)).decode("ascii")


def _code(span: Span) -> int:
    if span.mark:
        return PROB_STEPS + 2 + (MARKS.index(span.mark) if span.mark in MARKS else 0)
    if span.prob is None:
        return UNMEASURED
    return max(0, min(PROB_STEPS, round(span.prob * PROB_STEPS)))


def trace_record(trace: TokenTrace) -> dict[str, str] | None:
    """The record's `trace` (null when the run produced no text)."""
    if not trace.thinking and not trace.answer:
        return None
    return {"thinking": encode(trace.thinking), "answer": encode(trace.answer)}


@dataclass(frozen=True)
class Piece:
    """A run of text to draw one way: a sampled token (shaded by `prob`) or an insertion (`mark`)."""

    text: str
    prob: float | None = None
    mark: str = ""


def pieces(text: str | None, encoded: str | None) -> list[Piece]:
    """A record's text split as its trace says; text the trace does not cover is one plain piece (a run
    logged before traces were kept, or a damaged one)."""
    text = text or ""
    out: list[Piece] = []
    at = 0
    for chars, code in _pairs(encoded):
        if code > UNMEASURED:
            mark = MARKS[code - PROB_STEPS - 2] if code - PROB_STEPS - 2 < len(MARKS) else "scaffold"
            if out and out[-1].mark == mark and chars and out[-1].text:  # one insertion, kept as several spans
                out[-1] = Piece(out[-1].text + text[at: at + chars], None, mark)
            else:
                out.append(Piece(text[at: at + chars], None, mark))
        elif chars:
            out.append(Piece(text[at: at + chars], None if code == UNMEASURED else code / PROB_STEPS))
        at += chars
        if at > len(text):  # a trace longer than its text: not this text's trace
            return [Piece(text)] if text else []
    if at < len(text):
        out.append(Piece(text[at:]))
    return out


def _pairs(encoded: str | None) -> list[tuple[int, int]]:
    if not encoded:
        return []
    try:
        data = base64.b64decode(encoded, validate=True)
    except ValueError:
        return []
    return [(data[i], data[i + 1]) for i in range(0, len(data) - 1, 2)]


MARK_LABELS = {
    "cap": "budget cap: thinking closed",
    "confidence": "confident: thinking stopped",
    "eos": "the model ended inside its thinking: closed",
    "wait": "too early: \"Wait\" inserted",
    "loop": "loop broken: thinking closed",
    "trial": "a trial answer was sure: thinking closed",
    "give_up": "no trial answer came near sure by half the cap: given up",
}
