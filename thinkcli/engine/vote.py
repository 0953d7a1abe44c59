"""Best-of-N: sample N reasoning paths in one context, extract answers, vote, stop early.

Answer extraction follows common practice for self-consistency: \\boxed{}, "final answer:",
"the answer is", the last number, else the normalised short answer. The vote is by count,
ties broken by summed trace confidence. Adaptive stop (Adaptive-Consistency): once the leader
cannot be overtaken by the samples still running, they are cancelled. Samples whose windowed
confidence falls below the tier's floor are dropped as they go (DeepConf, online).
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, replace

BOXED = re.compile(r"\\boxed\{((?:[^{}]|\{[^{}]*\})*)\}")
FINAL = re.compile(r"(?:final answer|the answer is|answer)\s*[:=]?\s*(?:is\s*)?(.+)", re.IGNORECASE)
NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:/\d+)?")


def _normalise(text: str) -> str:
    text = text.strip().strip("*$ ").rstrip(".!")
    text = re.sub(r"\s+", " ", text)
    number = NUMBER.fullmatch(text.replace(",", ""))
    if number:
        value = text.replace(",", "")
        if re.fullmatch(r"-?\d+\.0+", value):
            value = value.split(".")[0]
        return value
    return text.lower()


def extract_answer(text: str) -> str | None:
    """The final answer of one sample, normalised so equal answers compare equal."""
    if not text or not text.strip():
        return None
    boxed = BOXED.findall(text)
    if boxed:
        return _normalise(boxed[-1])
    finals = FINAL.findall(text)
    if finals:
        candidate = finals[-1].strip().splitlines()[0] if finals[-1].strip() else ""
        numbers = NUMBER.findall(candidate.replace(",", ""))
        if numbers and len(candidate.split()) > 3:
            return _normalise(numbers[0])
        if candidate:
            return _normalise(candidate)
    numbers = NUMBER.findall(text.replace(",", ""))
    if numbers:
        return _normalise(numbers[-1])
    short = text.strip().splitlines()[0]
    return _normalise(short) if len(short.split()) <= 8 else None


@dataclass(frozen=True)
class Vote:
    """A Best-of-N tally: the winner, how it won, and (once the samples are known) who voted what."""

    winner: str | None
    counts: dict[str, int]
    weights: dict[str, float]
    method: str  # majority, confidence-tiebreak, none
    answers: tuple[str | None, ...] = ()
    winner_sample: int | None = None
    samples_run: int = 0  # samples that started (the rest were never needed)
    stopped: str | None = None  # why it stopped early: "safe" (the leader's posterior), "decided" (no catching up)

    def with_samples(self, answers: tuple[str | None, ...], winner_sample: int, samples_run: int = 0,
                     stopped: str | None = None) -> Vote:
        return replace(self, answers=answers, winner_sample=winner_sample, samples_run=samples_run or len(answers),
                       stopped=stopped)

    def as_dict(self) -> dict[str, object]:
        return {"winner": self.winner, "counts": self.counts, "weights": self.weights, "method": self.method,
                "answers": list(self.answers), "winner_sample": self.winner_sample, "samples_run": self.samples_run,
                "stopped": self.stopped}


def tally(answers: list[tuple[str | None, float | None]]) -> Vote:
    """Majority vote; ties broken by summed confidence. None answers do not vote."""
    counts: Counter[str] = Counter()
    weight: dict[str, float] = defaultdict(float)
    for answer, confidence in answers:
        if answer is None:
            continue
        counts[answer] += 1
        weight[answer] += confidence if confidence is not None else 1.0
    if not counts:
        return Vote(None, {}, {}, "none")
    ranked = sorted(counts, key=lambda a: (counts[a], weight[a]), reverse=True)
    top = ranked[0]
    tied = len(ranked) > 1 and counts[ranked[1]] == counts[top]
    return Vote(top, dict(counts), {a: round(w, 4) for a, w in weight.items()},
                "confidence-tiebreak" if tied else "majority")


SAFE = 0.95  # the posterior probability that the leader is the majority answer at which a vote stops
WINDOW = 2  # samples started at a time: the next window starts only while the vote is still open


def leader_share_above_half(leader: int, others: int) -> float:
    """P(the leader's true share > 1/2) under a uniform prior: Beta(leader + 1, others + 1), exactly
    (for integer counts it is a binomial tail: P(Bin(leader + others + 1, 1/2) <= leader))."""
    n = leader + others + 1
    return sum(math.comb(n, k) for k in range(leader + 1)) / 2**n


def leader_is_safe(counts: Counter[str], threshold: float = SAFE) -> bool:
    """Adaptive-Consistency's stop (arXiv 2305.11860), with a Beta posterior: the leader is the
    majority answer with probability >= threshold, so more samples would not change the winner."""
    if not counts:
        return False
    ordered = counts.most_common()
    leader = ordered[0][1]
    return leader_share_above_half(leader, sum(c for _, c in ordered[1:])) >= threshold


def cannot_be_overtaken(counts: Counter[str], running: int) -> bool:
    if not counts:
        return False
    ordered = counts.most_common(2)
    lead = ordered[0][1] - (ordered[1][1] if len(ordered) > 1 else 0)
    return lead > running
