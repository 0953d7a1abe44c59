"""`think eval`: does thinking pay? A labelled set run under several policies, side by side.

Each policy is a batch (batch.run_batch, through the one scheduler) into its own resumable JSONL
in the output directory; the answers are then checked against the set. A policy is `auto` (the
tiers, as `think ask` runs them), a fixed thinking cap (`0`, `256`, …: one sample, no early stop),
`voteN` or `voteN@CAP` (Best-of-N), a tier name (every prompt at that tier), or `auto-noprobe`
(the tiers without the escalation probe). What comes out:
accuracy, mean and p95 thinking tokens, time, accuracy per tier, the scaling curve (accuracy
against mean thinking tokens), and — with fixed caps — a calibration: for each tier the smallest
cap whose accuracy is within a tolerance of that tier's best.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, Union

from ...engine.vote import NUMBER, extract_answer
from ...errors import ThinkError, UsageError
from ...output.logs import spent_thinking_tokens
from ...policy.classify import classify
from ...policy.plan import Overrides
from ...policy.registry import Registry
from ...policy.tiers import TIER_NAMES, escalation_tier
from ...scheduler.runtime import Runtime
from ...text import Json
from ..batch import BatchDone, Item, OutputStore, RecordWritten, run_batch
from .sets import EvalItem

DEFAULT_POLICIES = "auto,0,256,1024"
CALIBRATION_CAPS = ("auto,auto-noprobe,light,0,64,256,1024,4096,conf0.9@256,conf0.95@256,conf0.99@256,"
                    "trial0.9@256,trial0.99@256,agree0.9@256,agree0.99@256,stated0.9@256,stated0.99@256,giveup0.2@256,"
                    "giveup0.5@256")


# -- policies -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Policy:
    name: str
    overrides: Overrides
    cap: int | None = None  # a fixed thinking cap (fixed and vote policies); None: the tiers decide

    @property
    def fixed(self) -> bool:
        """One sample at one cap for every prompt: the points a calibration compares."""
        return self.cap is not None and self.overrides.strategy == "single"


POLICY_PATTERN = re.compile(r"^(?:(?P<cap>\d+)|vote(?P<n>\d+)(?:@(?P<vcap>\d+))?|(?P<tier>auto|instant|light|standard|deep)"
                            r"|auto(?P<without>(?:-no(?:probe|conf|loop|trial|agree|stated))+)|(?P<rule>conf|trial|giveup|agree|stated)"
                            r"(?P<conf>\d*\.?\d+)@(?P<ccap>\d+))$")
# What each part of `auto` saves: a fixed cap, then the tiers alone, then each part added in turn.
ABLATION = ("512,auto-noprobe-noconf-noloop-notrial,auto-noconf-noloop-notrial,auto-noloop-notrial,auto-notrial,"
            "auto-noagree-nostated,auto-nostated,auto")


def parse_policies(text: str, base: Overrides, default_model: str) -> list[Policy]:
    """`auto,0,256,vote4@1024,deep` → policies on top of the user's other flags (model, answer cap…).

    Fixed caps and votes run on the evaluated model itself (no tier routing): they are its curve."""
    own = replace(base, model=base.model or default_model)
    policies: list[Policy] = []
    for raw in (part.strip() for part in text.split(",")):
        if not raw:
            continue
        match = POLICY_PATTERN.match(raw)
        if match is None:
            raise UsageError(f"unknown policy '{raw}' (use auto, a tier name, a thinking cap like 256, "
                             f"voteN / voteN@CAP, auto without parts: auto-noprobe, -noconf, -noloop, -notrial, -noagree, "
                             f"-nostated, or a confidence stop or trial answers, agreeing or stated trials or a give-up floor "
                             f"under a cap: conf0.9@256, trial0.9@256, agree0.9@256, stated0.9@256, giveup0.3@256)")
        if match["cap"] is not None:
            cap = int(match["cap"])
            # a point of the curve: the cap alone (no early stop of any kind: no confidence stop, no trials)
            overrides = replace(own, tier="standard", max_thinking=cap, min_thinking=0, strategy="single",
                                samples=None, confidence=0.0, trial=0.0, trial_agree=0.0, trial_stated=0.0, give_up=0.0,
                                no_think=cap == 0)
            policy = Policy(raw, overrides, cap)
        elif match["n"] is not None:
            samples = int(match["n"])
            if not 2 <= samples <= 64:
                raise UsageError(f"policy '{raw}': a vote needs 2 to 64 samples")
            vote_cap = int(match["vcap"]) if match["vcap"] is not None else None
            overrides = replace(own, tier="deep", strategy="vote", samples=samples, max_thinking=vote_cap,
                                min_thinking=0 if vote_cap is not None else None)
            policy = Policy(raw, overrides, vote_cap)
        elif match["conf"] is not None:  # a cap, and a confidence stop, trial answers or a give-up floor under it
            threshold, conf_cap, rule = float(match["conf"]), int(match["ccap"]), match["rule"]
            if not 0 < threshold < 1:
                raise UsageError(f"policy '{raw}': the confidence threshold must be between 0 and 1")
            # a give-up floor and agreeing trials run beside the tier's own trial answers (the policy they join)
            overrides = replace(own, tier="standard", max_thinking=conf_cap, min_thinking=0, strategy="single",
                                samples=None, confidence=threshold if rule == "conf" else 0.0,
                                trial={"trial": threshold, "conf": 0.0}.get(rule),
                                give_up=threshold if rule == "giveup" else 0.0,
                                trial_agree=threshold if rule == "agree" else 0.0,
                                trial_stated=threshold if rule == "stated" else 0.0, probe=False, no_think=False)
            policy = Policy(raw, overrides)
        elif match["without"] is not None:  # the tiers without some of their parts (an ablation)
            parts = set(match["without"].split("-no")[1:])
            policy = Policy(raw, replace(base, tier="auto", probe="probe" not in parts,
                                         confidence=0.0 if "conf" in parts else base.confidence,
                                         loop_breaker="loop" not in parts,
                                         # no trials: none of the rules that read them (agreement, a stated answer, give-up)
                                         trial=0.0 if "trial" in parts else base.trial,
                                         trial_agree=0.0 if parts & {"trial", "agree"} else base.trial_agree,
                                         trial_stated=0.0 if parts & {"trial", "stated"} else base.trial_stated,
                                         give_up=0.0 if "trial" in parts else base.give_up))
        else:
            policy = Policy(raw, replace(base, tier=match["tier"]))
        if any(p.name == policy.name for p in policies):
            raise UsageError(f"policy '{raw}' is given twice")
        policies.append(policy)
    if not policies:
        raise UsageError("no policies given (e.g. --policies auto,0,256,1024)")
    for policy in policies:
        policy.overrides.validate()
    return policies


# -- checking answers ---------------------------------------------------------------------------


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", text.strip().strip("*$`\"' ").rstrip(".!")).lower()


def _as_number(text: str) -> float | None:
    cleaned = text.strip().replace(",", "").rstrip(".")
    if re.fullmatch(r"-?\d+(?:\.\d+)?", cleaned):
        return float(cleaned)
    fraction = re.fullmatch(r"(-?\d+)/(\d+)", cleaned)
    if fraction and int(fraction[2]):
        return int(fraction[1]) / int(fraction[2])
    return None


def check_items(items: list[EvalItem]) -> None:
    """Every item's checker can judge its expected answer: refused before any work, naming the line
    (a `number` on "four", a bad regex, `math` without math-verify were found only after the run)."""
    for item in items:
        where = f"item {item.id} (line {item.line})"
        if item.checker == "number" and _as_number(item.answer) is None:
            raise UsageError(f"{where}: the checker 'number' needs a numeric answer, got '{item.answer[:40]}'")
        if item.checker == "regex":
            try:
                re.compile(item.answer)
            except re.error as exc:
                raise UsageError(f"{where}: bad regex '{item.answer[:40]}': {exc}") from None
        if item.checker == "math":
            try:
                import math_verify  # noqa: F401
            except ImportError:
                raise UsageError(f"{where}: the math checker needs math-verify: pip install 'thinkcli[eval]'") from None


def check(answer: str, expected: str, checker: str = "auto") -> tuple[bool, str | None]:
    """(correct?, what was taken from the answer). The answer is the final answer, never the thinking.

    auto: a numeric expectation is checked as `number`, anything else as a whole-word `contains`."""
    if checker == "auto":
        checker = "number" if _as_number(expected) is not None else "word"
    if checker == "number":
        want = _as_number(expected)
        if want is None:
            raise ThinkError(f"expected answer '{expected}' is not a number (checker number)")
        extracted = extract_answer(answer)
        got = _as_number(extracted) if extracted is not None else None
        if got is None:  # "the answer is 42 apples": the first number of the extracted phrase
            numbers = NUMBER.findall((extracted or "").replace(",", ""))
            got = _as_number(numbers[0]) if numbers else None
        return got is not None and math.isclose(got, want, rel_tol=1e-6, abs_tol=1e-9), extracted
    if checker == "exact":
        extracted = extract_answer(answer)
        return _plain(answer) == _plain(expected) or (extracted is not None and extracted == _plain(expected)), extracted
    if checker == "contains":
        return _plain(expected) in _plain(answer), None
    if checker == "word":
        pattern = r"(?<!\w)" + re.escape(_plain(expected)) + r"(?!\w)"
        return re.search(pattern, _plain(answer)) is not None, None
    if checker == "regex":
        try:
            return re.search(expected, answer, re.IGNORECASE) is not None, None
        except re.error as exc:
            raise ThinkError(f"bad regex '{expected}': {exc}") from None
    if checker == "math":
        try:
            from math_verify import parse, verify
        except ImportError:
            raise ThinkError("the math checker needs math-verify: pip install 'thinkcli[eval]'") from None
        gold = parse(expected if "$" in expected else f"${expected}$")
        return bool(gold) and bool(verify(gold, parse(answer))), None
    raise ThinkError(f"unknown checker '{checker}'")


# -- scores -------------------------------------------------------------------------------------


@dataclass
class TierScore:
    items: int = 0
    correct: int = 0
    thinking: int = 0

    @property
    def accuracy(self) -> float | None:
        return self.correct / self.items if self.items else None


@dataclass
class PolicyScore:
    policy: str
    cap: int | None
    fixed: bool
    items: int = 0  # items with a record (answered or failed)
    failed: int = 0
    correct: int = 0
    thinking: list[int] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    wall_s: float | None = None  # this run's wall time, when every item ran now (not resumed)
    by_tier: dict[str, TierScore] = field(default_factory=dict)
    rows: list[Json] = field(default_factory=list)  # a row per item (items.csv), checked once

    @property
    def accuracy(self) -> float:
        return self.correct / self.items if self.items else 0.0

    @property
    def mean_thinking(self) -> float:
        return sum(self.thinking) / len(self.thinking) if self.thinking else 0.0

    @property
    def p95_thinking(self) -> int:
        if not self.thinking:
            return 0
        ordered = sorted(self.thinking)
        return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]

    @property
    def mean_s(self) -> float:
        return sum(self.seconds) / len(self.seconds) if self.seconds else 0.0

    def as_dict(self) -> Json:
        return {
            "policy": self.policy, "cap": self.cap, "items": self.items, "failed": self.failed,
            "correct": self.correct, "accuracy": round(self.accuracy, 4),
            "mean_thinking_tokens": round(self.mean_thinking, 1), "p95_thinking_tokens": self.p95_thinking,
            "mean_s": round(self.mean_s, 3), "wall_s": None if self.wall_s is None else round(self.wall_s, 2),
            "by_tier": {name: {"items": t.items, "correct": t.correct,
                               "accuracy": None if t.accuracy is None else round(t.accuracy, 4),
                               "mean_thinking_tokens": round(t.thinking / t.items, 1) if t.items else None}
                        for name, t in self.by_tier.items()},
        }


def item_tiers(items: list[EvalItem]) -> dict[str, str]:
    """Each item's tier for "by tier": the set's label, else the classifier's verdict."""
    return {item.id: item.tier or classify(item.prompt).tier for item in items}


def score_policy(policy: Policy, items: list[EvalItem], records: dict[str, Json],
                 tiers: dict[str, str]) -> tuple[PolicyScore, list[Json]]:
    """Check every item's record; returns the score and one row per item (for items.csv)."""
    score = PolicyScore(policy.name, policy.cap, policy.fixed,
                        by_tier={name: TierScore() for name in TIER_NAMES})
    rows: list[Json] = []
    for item in items:
        record = records.get(item.id)
        if record is None:
            continue
        tier = tiers[item.id]
        score.items += 1
        tier_score = score.by_tier[tier]
        tier_score.items += 1
        if record.get("error"):
            score.failed += 1
            rows.append({"policy": policy.name, "id": item.id, "tier": tier, "correct": False, "extracted": None,
                         "thinking_tokens": None, "error": record["error"]})
            continue
        correct, extracted = check(record.get("answer") or "", item.answer, item.checker)
        thinking = spent_thinking_tokens(record)
        score.correct += correct
        tier_score.correct += correct
        tier_score.thinking += thinking
        score.thinking.append(thinking)
        score.seconds.append(float((record.get("timings") or {}).get("total_s") or 0.0))
        rows.append({"policy": policy.name, "id": item.id, "tier": tier, "correct": correct, "extracted": extracted,
                     "thinking_tokens": thinking, "error": None})
    score.by_tier = {name: t for name, t in score.by_tier.items() if t.items}
    score.rows = rows
    return score, rows


def read_records(path: Path) -> dict[str, Json]:
    records: dict[str, Json] = {}
    if not path.exists():
        return records
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            try:
                record = json.loads(line)
            except (json.JSONDecodeError, RecursionError):
                continue
            if isinstance(record, dict) and "id" in record:
                records[str(record["id"])] = record
    return records


# -- calibration --------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeCalibration:
    """The probe threshold that thinks least while the answers it loses stay within the tolerance with
    90 % confidence — the risk bound the stops are weighed by: a kept answer that is wrong where thinking
    would have been right is a loss, and a handful of sure-but-wrong answers among many items must not
    pass because the loss *seen* is small (at 0.8, the tiny reasoner's probe kept `148` for 6784 + 781).

    Measured on the probe's band: each item's probe confidence (policy `auto`), its answer without
    thinking (policy `0`, the same sequence the probe would keep) and with thinking (`auto-noprobe`; for
    an instant prompt, which escalates to light, the policy `light`)."""

    threshold: float  # keep the probe's answer at or above this (1.0: keep only certain answers)
    items: int
    kept: int  # items answered without thinking at this threshold
    accuracy: float
    best_accuracy: float
    thinking_tokens: int  # spent at this threshold
    thinking_tokens_never_kept: int  # spent if the probe never kept an answer
    losses: int = 0  # kept and wrong where thinking was right, at this threshold
    loss_bound: float = 0.0  # the 90 % upper bound on the loss rate
    lost_by_tier: tuple[tuple[str, int], ...] = ()  # where the losses fell, by the classifier's tier


StopRule = Literal["conf", "trial", "giveup", "agree", "stated"]


@dataclass(frozen=True)
class StopCalibration:
    """A threshold that ends thinking early — the confidence stop's (`conf`), trial answers' (`trial`) or the
    give-up floor's, agreeing trials' or stated trial answers' (`giveup`, `agree`, `stated`: beside the tier's
    trial answers) —
    chosen with a risk bound: of the calibration items the cap alone answers right, the share the rule
    loses must stay within the tolerance with 90 % confidence (a Clopper-Pearson upper bound on the loss,
    not the loss seen), and among those it thinks least. 0.0: no threshold weighed passes, so the rule is
    switched off."""

    rule: StopRule
    threshold: float
    cap: int
    items: int
    losses: int  # items the cap got right and the rule got wrong, at this threshold
    loss_bound: float  # the 90 % upper bound on the loss rate
    thinking_mean: float  # at this threshold (the cap's own where 0.0)
    cap_thinking_mean: float
    weighed: tuple[tuple[float, int, float, float], ...] = ()  # (threshold, losses, bound, thinking mean)
    fired: int = -1  # a give-up floor: items it ended at the chosen floor (0: it never fired, so it stays off)


def loss_bound(losses: int, items: int, delta: float = 0.1) -> float:
    """One-sided Clopper-Pearson: the largest loss rate p with P(X <= losses | items, p) >= delta."""
    from math import comb

    if items <= 0:
        return 1.0
    if losses >= items:
        return 1.0

    def cdf(p: float) -> float:
        return sum(comb(items, k) * p**k * (1 - p) ** (items - k) for k in range(losses + 1))

    low, high = losses / items, 1.0
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (middle, high) if cdf(middle) > delta else (low, middle)
    return high


def calibrate_stop(rule: StopRule, items: list[EvalItem], records: dict[str, dict[str, Json]],
                   policies: list[Policy], tolerance: float) -> StopCalibration | None:
    """None unless some `{rule}T@CAP` policies ran beside the fixed cap CAP (each gives one threshold)."""
    def threshold_of(policy: Policy) -> float:
        overrides = policy.overrides
        return {"conf": overrides.confidence, "trial": overrides.trial, "giveup": overrides.give_up,
                "agree": overrides.trial_agree, "stated": overrides.trial_stated}[rule] or 0.0

    by_cap: dict[int, list[Policy]] = {}
    for policy in policies:
        cap = policy.overrides.max_thinking or 0
        if policy.name.startswith(rule) and threshold_of(policy) and str(cap) in records:
            by_cap.setdefault(cap, []).append(policy)
    if not by_cap:
        return None
    cap, chosen = max(by_cap.items(), key=lambda kv: (len(kv[1]), kv[0]))
    baseline = records[str(cap)]

    def right(record: Json | None, item: EvalItem) -> bool:
        return bool(record) and not record.get("error") and check(record.get("answer") or "", item.answer,  # type: ignore[union-attr]
                                                                  item.checker)[0]

    scored = [item for item in items if baseline.get(item.id) and not baseline[item.id].get("error")]
    if not scored:
        return None
    cap_mean = sum(spent_thinking_tokens(baseline[i.id]) for i in scored) / len(scored)
    weighed = []
    for policy in sorted(chosen, key=threshold_of):
        run = records[policy.name]
        losses = sum(right(baseline[i.id], i) and not right(run.get(i.id), i) for i in scored)
        mean = sum(spent_thinking_tokens(run[i.id]) if run.get(i.id) else cap for i in scored) / len(scored)
        weighed.append((threshold_of(policy), losses, loss_bound(losses, len(scored)), mean))
    passing = [w for w in weighed if w[2] <= tolerance + 1e-12]
    fired = -1
    if passing:  # the least thinking; on a tie the gentlest: a stop's highest threshold, a give-up's lowest floor
        gentle = 1 if rule == "giveup" else -1
        threshold, losses, bound, mean = min(passing, key=lambda w: (w[3], gentle * w[0]))
        if rule == "giveup":  # a floor that never ended a trace saves nothing: it stays off
            run = records[next(p.name for p in chosen if threshold_of(p) == threshold)]
            fired = sum(any(e.get("reason") == "give_up" for e in (run.get(i.id) or {}).get("events") or [])
                        for i in scored)
            if not fired:
                threshold, losses, bound, mean = 0.0, 0, 0.0, cap_mean
    else:
        threshold, losses, bound, mean = 0.0, 0, 0.0, cap_mean
    return StopCalibration(rule, threshold, cap, len(scored), losses, round(bound, 4), round(mean, 1),
                           round(cap_mean, 1), tuple((t, n, round(b, 4), round(m, 1)) for t, n, b, m in weighed),
                           fired)


@dataclass(frozen=True)
class Calibration:
    """Per tier: the cap chosen, the best accuracy seen, and the accuracy at each cap compared."""

    model: str
    tolerance: float
    chosen: dict[str, int]
    best: dict[str, float]
    curve: dict[str, dict[int, float]]
    probe: ProbeCalibration | None = None
    skipped: tuple[str, ...] = ()  # tiers no cap got any item right: left as they are
    confidence: StopCalibration | None = None  # the confidence stop (written to the standard tier)
    trial: StopCalibration | None = None  # trial answers (written to every tier that thinks)
    give_up: StopCalibration | None = None  # the give-up floor (likewise)
    agree: StopCalibration | None = None  # agreeing trials (likewise)
    stated: StopCalibration | None = None  # stated trial answers (likewise)

    def tiers_override(self, registry: Registry) -> dict[str, dict[str, int | float]]:
        """The `tiers:` mapping for the model's entry; min_thinking is lowered where it would exceed."""
        current = registry.tiers_for(self.model)
        override: dict[str, dict[str, int | float]] = {}
        for tier, cap in self.chosen.items():
            fields: dict[str, int | float] = {"max_thinking": cap}
            if current[tier].min_thinking > cap:
                fields["min_thinking"] = cap
            override[tier] = fields
        if self.confidence is not None:
            override.setdefault("standard", {})["confidence"] = self.confidence.threshold
        for stop, field_name in ((self.trial, "trial_confidence"), (self.give_up, "give_up"),
                                 (self.agree, "trial_agree"), (self.stated, "trial_stated")):
            if stop is None:
                continue
            for tier, fields in override.items():
                if fields.get("max_thinking", current[tier].max_thinking):
                    fields[field_name] = stop.threshold
        return override


def calibrate_probe(items: list[EvalItem], records: dict[str, dict[str, Json]],
                    tolerance: float) -> ProbeCalibration | None:
    """None unless the policies auto, auto-noprobe and 0 all ran (each gives one side of the choice);
    `light` too, for what an instant prompt escalates to.

    One bar for every tier: fitted tier by tier, a few dozen items each, the bars chased the calibration
    set's own accidents (on the tiny reasoner, a standard-tier bar of 0.58 that kept letter counts which
    set seed 1 then lost). A tier's own bar (`probe_confidence`) is for a person to set from the losses
    by tier printed here."""
    auto, thinking, plain = records.get("auto"), records.get("auto-noprobe"), records.get("0")
    if not (auto and thinking and plain):
        return None
    rows: dict[str, list[tuple[float, bool, bool, int]]] = {}
    for item in items:
        probed, bare = auto.get(item.id), plain.get(item.id)
        # what an escalation runs: the tier itself, thinking — but an instant prompt goes to light, so
        # its answer with thinking is the light tier's (the policy `light`, where it ran), not its own
        tier = str((probed or {}).get("tier") or "")
        escalated = records.get(escalation_tier(tier)) if escalation_tier(tier) != tier else None
        thought = (escalated or thinking).get(item.id)
        if not (probed and thought and bare) or probed.get("error") or thought.get("error") or bare.get("error"):
            continue
        if not probed.get("probe"):
            continue  # outside the probe's band
        confidence = float(probed["probe"].get("confidence") or 0.0)
        rows.setdefault(tier, []).append(
            (confidence, check(bare.get("answer") or "", item.answer, item.checker)[0],
             check(thought.get("answer") or "", item.answer, item.checker)[0], spent_thinking_tokens(thought)))
    if not rows:
        return None
    everything = [row for tier_rows in rows.values() for row in tier_rows]
    outcomes = []
    for threshold in sorted({min(c, 1.0) for c, *_ in everything} | {1.0}):
        keep = [c >= threshold for c, *_ in everything]
        pairs = list(zip(keep, everything, strict=True))
        correct = sum(p if k else t for k, (_, p, t, _) in pairs)
        tokens = sum(0 if k else n for k, (*_, n) in pairs)
        losses = sum(k and t and not p for k, (_, p, t, _) in pairs)
        outcomes.append((threshold, correct / len(everything), tokens, sum(keep), losses,
                         loss_bound(losses, len(everything))))
    best = max(o[1] for o in outcomes)
    passing = [o for o in outcomes if o[5] <= tolerance + 1e-12] or [outcomes[-1]]  # none: only certain answers
    threshold, accuracy, tokens, kept, losses, bound = min(passing, key=lambda o: (o[2], -o[0]))
    lost_by_tier = tuple(sorted((tier, sum(c >= threshold and t and not p for c, p, t, _ in tier_rows))
                                for tier, tier_rows in rows.items()))
    return ProbeCalibration(round(threshold, 4), len(everything), kept, accuracy, best, tokens,
                            sum(n for *_, n in everything), losses, round(bound, 4), lost_by_tier)


def calibrate(scores: list[PolicyScore], model: str, tolerance: float) -> Calibration:
    """For each tier: the smallest fixed cap whose accuracy is within `tolerance` of the best cap's."""
    fixed = sorted((s for s in scores if s.fixed and s.cap is not None), key=lambda s: s.cap or 0)
    if len(fixed) < 2:
        raise UsageError("calibration compares fixed thinking caps: give at least two (e.g. --policies 0,256,1024)")
    chosen: dict[str, int] = {}
    best: dict[str, float] = {}
    curve: dict[str, dict[int, float]] = {}
    skipped: list[str] = []
    for tier in TIER_NAMES:
        points = {s.cap: s.by_tier[tier].accuracy for s in fixed if tier in s.by_tier}
        accuracies = {cap: acc for cap, acc in points.items() if cap is not None and acc is not None}
        if not accuracies:
            continue
        top = max(accuracies.values())
        curve[tier] = accuracies
        best[tier] = top
        if top <= 0:  # nothing right at any cap: a flat 0 % curve says nothing about the cap (never "0 tokens")
            skipped.append(tier)
            continue
        chosen[tier] = min(cap for cap, acc in accuracies.items() if acc >= top - tolerance - 1e-12)
    if not chosen:
        if skipped:
            raise UsageError(f"no cap got any {', '.join(skipped)} item right: nothing to calibrate from "
                             "(a larger model, more items, or larger caps)")
        raise UsageError("no item was scored under the fixed caps: nothing to calibrate")
    return Calibration(model, tolerance, chosen, best, curve, skipped=tuple(skipped))


def check_writable_models_file(path: Path) -> None:
    """`--write` will be able to replace the user's models.yaml: checked before any work."""
    try:
        import ruamel.yaml  # noqa: F401
    except ImportError:
        raise UsageError("--write edits models.yaml keeping its comments: pip install 'thinkcli[eval]' "
                         "(ruamel.yaml)") from None
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if path.is_dir():
        raise UsageError(f"--write: {path} is a directory, not a models.yaml")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"--write: {path} is not writable")
    if not os.access(folder, os.W_OK):
        raise UsageError(f"--write: {folder} is not writable (for {path})")


def write_calibration(path: Path, calibration: Calibration, registry: Registry) -> None:
    """Merge `models.<alias>.tiers` into the user's models.yaml, as an edit: its comments, anchors and
    order stay (ruamel.yaml round trip). Atomic, and re-validated before it replaces the file."""
    from io import StringIO

    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    from ...policy.registry import load_registry

    if calibration.model not in registry.models:
        raise UsageError(f"--write needs a model alias from models.yaml, not '{calibration.model}' "
                         "(add it under models: first)")
    yaml = YAML()  # round trip
    yaml.preserve_quotes = True
    old_text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        data = yaml.load(old_text) if old_text.strip() else None
    except YAMLError as exc:
        raise ThinkError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if data is None:
        from ruamel.yaml.comments import CommentedMap

        data = CommentedMap()
    if not isinstance(data, dict):
        raise ThinkError(f"{path}: top level must be a mapping")

    def section(parent: Any, key: str) -> Any:
        if not isinstance(parent.get(key), dict):
            parent[key] = {}
        return parent[key]

    entry = section(section(data, "models"), calibration.model)
    tiers = section(entry, "tiers")
    for tier, fields in calibration.tiers_override(registry).items():
        target = section(tiers, tier)
        for field_name, value in fields.items():
            target[field_name] = value
    if calibration.probe is not None:
        section(entry, "probe")["confidence"] = calibration.probe.threshold
    buffer = StringIO()
    yaml.dump(data, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(path.name + ".tmp")
    try:
        temp.write_text(buffer.getvalue(), encoding="utf-8")
        load_registry(temp)
        temp.replace(path)
    except OSError as exc:
        raise ThinkError(f"cannot write {path}: {exc.strerror}") from None
    finally:
        temp.unlink(missing_ok=True)


# -- running ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PolicyStarted:
    policy: Policy
    todo: int  # items still to run (the others are in the output already)


@dataclass(frozen=True)
class ItemDone:
    policy: Policy
    record: Json


@dataclass(frozen=True)
class PolicyScored:
    score: PolicyScore


@dataclass(frozen=True)
class EvalDone:
    scores: list[PolicyScore]
    directory: Path


EvalEvent = Union[PolicyStarted, ItemDone, PolicyScored, EvalDone]


def policy_file(directory: Path, policy: Policy) -> Path:
    return directory / f"{policy.name}.jsonl"


def check_directory(directory: Path, meta: Json) -> None:
    """One directory holds one experiment: refuse to resume into results of another model or set."""
    if directory.exists() and not directory.is_dir():
        raise UsageError(f"--output {directory} is a file: give a directory")
    meta_file = directory / "meta.json"
    if meta_file.exists():
        try:
            old = json.loads(meta_file.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            old = None
        if isinstance(old, dict):
            for key, value in meta.items():
                if key in old and old[key] != value:
                    raise UsageError(f"{directory} holds results for {key} {old[key]!r}, not {value!r}: "
                                     "choose another --output directory")
    directory.mkdir(parents=True, exist_ok=True)
    meta_file.write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def run_eval(runtime: Runtime, items: list[EvalItem], policies: list[Policy], directory: Path,
             parallel: int = 1) -> Iterator[EvalEvent]:
    """Run every policy over the set (resumable: items already in a policy's file are kept)."""
    tiers = item_tiers(items)
    scores: list[PolicyScore] = []
    for policy in policies:
        path = policy_file(directory, policy)
        with OutputStore(path) as store:
            todo = [item for item in items if item.id not in store.done_ids]
            yield PolicyStarted(policy, len(todo))
            wall: float | None = None
            if todo:
                batch_items = (Item(item.id, item.line, item.prompt) for item in todo)
                for event in run_batch(runtime, batch_items, store, policy.overrides, parallel=parallel,
                                       source=f"eval {policy.name}"):
                    match event:
                        case RecordWritten():
                            yield ItemDone(policy, event.record)
                        case BatchDone():
                            if len(todo) == len(items):
                                wall = event.summary.as_dict()["elapsed_s"]
        score, _ = score_policy(policy, items, read_records(path), tiers)
        score.wall_s = wall
        scores.append(score)
        yield PolicyScored(score)
    yield EvalDone(scores, directory)


def save_results(directory: Path, scores: list[PolicyScore], extra: Json) -> tuple[Path, Path]:
    """results.json (everything), results.csv (a row per policy) and items.csv (a row per item and policy)."""
    rows = [row for score in scores for row in score.rows]
    summary = {**extra, "policies": [s.as_dict() for s in scores]}
    json_path = directory / "results.json"
    json_path.write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    csv_path = directory / "results.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["policy", "cap", "items", "failed", "correct", "accuracy", "mean_thinking_tokens",
                         "p95_thinking_tokens", "mean_s", "wall_s",
                         *(f"accuracy_{tier}" for tier in TIER_NAMES)])
        for s in scores:
            d = s.as_dict()
            writer.writerow([d["policy"], d["cap"], d["items"], d["failed"], d["correct"], d["accuracy"],
                             d["mean_thinking_tokens"], d["p95_thinking_tokens"], d["mean_s"], d["wall_s"],
                             *((d["by_tier"].get(t) or {}).get("accuracy") for t in TIER_NAMES)])
    with open(directory / "items.csv", "w", newline="", encoding="utf-8") as handle:
        item_writer = csv.DictWriter(handle, fieldnames=["policy", "id", "tier", "correct", "extracted",
                                                         "thinking_tokens", "error"])
        item_writer.writeheader()
        item_writer.writerows(rows)
    return json_path, csv_path


def calibration_dict(calibration: Calibration) -> Json:
    data = asdict(calibration)
    data["curve"] = {tier: {str(cap): round(acc, 4) for cap, acc in points.items()}
                     for tier, points in calibration.curve.items()}
    return data
