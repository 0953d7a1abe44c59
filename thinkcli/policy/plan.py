"""Plan: what to spend on one prompt, from its tier, models.yaml and the user's flags."""

from __future__ import annotations

from dataclasses import dataclass, replace

from ..engine.budget import BudgetSpec
from ..errors import UsageError
from .classify import Difficulty, classify
from .registry import STRATEGIES, Registry, Tier
from .tiers import TIER_NAMES, escalation_tier

DEFAULT_VOTE_SAMPLES = 4
MAX_SEED = 2**32 - 2  # llama.cpp takes 32-bit seeds, and 2**32 - 1 means "random"
MAX_TEMPERATURE = 5.0  # the CLI's and the server's limit alike


@dataclass(frozen=True)
class Overrides:
    """Command-line (or REPL) choices; None means 'the tier decides'."""

    tier: str = "auto"
    model: str | None = None
    max_thinking: int | None = None
    min_thinking: int | None = None
    max_answer: int | None = None
    no_think: bool = False
    samples: int | None = None
    strategy: str | None = None
    temperature: float | None = None
    seed: int | None = None
    confidence: float | None = None  # 0 turns the confidence stop off (eval's fixed-budget policies)
    probe: bool = True  # the escalation probe, where models.yaml enables it (--no-probe: off)
    loop_breaker: bool = True  # False: thinking loops run to the cap (eval's ablation)
    trial: float | None = None  # trial answers' confidence (0: off; None: the tier's)
    give_up: float | None = None  # the give-up floor (0: off; None: the tier's)
    trial_agree: float | None = None  # two agreeing trials' confidence (0: off; None: the tier's)
    trial_stated: float | None = None  # a stated trial answer's confidence (0: off; None: the tier's)

    def validate(self) -> Overrides:
        if self.tier not in ("auto", *TIER_NAMES):
            raise UsageError(f"unknown tier '{self.tier}' (choose auto, {', '.join(TIER_NAMES)})")
        for name in ("max_thinking", "min_thinking"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise UsageError(f"--{name.replace('_', '-')} must be >= 0, got {value}")
        if self.max_answer is not None and self.max_answer < 1:
            raise UsageError(f"--max-answer must be >= 1, got {self.max_answer}")
        if self.samples is not None and not 1 <= self.samples <= 64:
            raise UsageError(f"--samples must be between 1 and 64, got {self.samples}")
        if self.strategy is not None and self.strategy not in STRATEGIES:
            raise UsageError(f"unknown strategy '{self.strategy}' (choose {', '.join(STRATEGIES)})")
        if self.seed is not None and not 0 <= self.seed <= MAX_SEED:
            raise UsageError(f"--seed must be between 0 and {MAX_SEED}, got {self.seed}")
        if self.temperature is not None and not 0 <= self.temperature <= MAX_TEMPERATURE:
            raise UsageError(f"--temperature must be between 0 and {MAX_TEMPERATURE:g}, got {self.temperature}")
        if (self.min_thinking is not None and self.max_thinking is not None
                and self.min_thinking > self.max_thinking):
            raise UsageError("--min-thinking must not exceed --max-thinking")
        return self


@dataclass(frozen=True)
class Probe:
    """Run first with thinking off; if the answer's first `tokens` are unsure, run `escalation`."""

    tokens: int
    confidence: float
    escalation: Plan | None  # None: only measure (`think classify --probe`)


@dataclass(frozen=True)
class Plan:
    difficulty: Difficulty
    tier: Tier
    model: str  # alias or path
    budget: BudgetSpec
    strategy: str
    samples: int
    temperature: float | None
    seed: int
    probe: Probe | None = None


def reseeded(plan: Plan, seed: int) -> Plan:
    """The same plan drawn with another seed (its escalation too, so a probed draw stays distinct)."""
    probe = plan.probe
    if probe is not None and probe.escalation is not None:
        probe = replace(probe, escalation=replace(probe.escalation, seed=seed))
    return replace(plan, seed=seed, probe=probe)


def make_plan(prompt: str, registry: Registry, overrides: Overrides, default_model: str) -> Plan:
    overrides.validate()
    plan = _tier_plan(classify(prompt), registry, overrides, default_model)
    return _with_probe(plan, registry, overrides, default_model) or plan


def probe_only_plan(prompt: str, registry: Registry, overrides: Overrides, default_model: str) -> Plan:
    """`think classify --probe`: the probe alone, whatever the tier, stopping at its verdict."""
    plan = _tier_plan(classify(prompt), registry, replace(overrides, tier="auto"), default_model)
    probed = _with_probe(plan, registry, replace(overrides, tier="auto"), default_model, measure_only=True)
    assert probed is not None
    return probed


def probe_blocked(plan: Plan, registry: Registry, overrides: Overrides) -> str | None:
    """Why `auto` would not probe this prompt (None: it would, unless its escalation tier runs on another model)."""
    settings = registry.probe_for(plan.model)
    explicit = (overrides.max_thinking, overrides.min_thinking, overrides.samples, overrides.strategy)
    if overrides.tier != "auto":
        return f"the tier is chosen ({overrides.tier}), not auto"
    if not overrides.probe or overrides.no_think:
        return "--no-probe or --no-think is given"
    if any(v is not None for v in explicit):
        return "a budget or strategy is given explicitly"
    if not settings.enabled:
        return f"the probe is off for {plan.model} (models.yaml probe: enabled: false)"
    if plan.difficulty.tier not in settings.tiers:
        return f"auto probes only {', '.join(settings.tiers)} prompts, and this one is {plan.difficulty.tier}"
    return None


def _with_probe(plan: Plan, registry: Registry, overrides: Overrides, default_model: str,
                measure_only: bool = False) -> Plan | None:
    """The probe plan for an auto-tier prompt in the probe's band: thinking off, the tier's answer
    cap, and the thinking plan to escalate to (the tier itself; instant escalates to light)."""
    settings = registry.probe_for(plan.model, plan.difficulty.tier)
    if measure_only:
        budget = BudgetSpec(thinking=False, min_thinking=0, max_thinking=0, max_answer=settings.tokens,
                            probe_tokens=settings.tokens, probe_confidence=settings.confidence)
        return replace(plan, budget=budget, strategy="single", samples=1,
                       probe=Probe(settings.tokens, settings.confidence, None))
    if probe_blocked(plan, registry, overrides) is not None:
        return None
    target = escalation_tier(plan.difficulty.tier)
    escalation = _tier_plan(replace(plan.difficulty, tier=target), registry, overrides, default_model)
    if escalation.model != plan.model:  # a tier routed to another model: no probe (one KV cache)
        return None
    reason = f"escalated to {target} after the probe" if target != plan.difficulty.tier else "escalated after the probe"
    escalation = replace(escalation, difficulty=replace(escalation.difficulty,
                                                        reasons=(*escalation.difficulty.reasons, reason)))
    budget = BudgetSpec(thinking=False, min_thinking=0, max_thinking=0, max_answer=plan.budget.max_answer,
                        probe_tokens=settings.tokens, probe_confidence=settings.confidence)
    return replace(plan, budget=budget, strategy="single", samples=1,
                   probe=Probe(settings.tokens, settings.confidence, escalation))


def _tier_plan(difficulty: Difficulty, registry: Registry, overrides: Overrides, default_model: str) -> Plan:
    tier_name = difficulty.tier if overrides.tier == "auto" else overrides.tier
    if overrides.tier != "auto":
        difficulty = replace(difficulty, tier=tier_name, reasons=(*difficulty.reasons, f"tier forced to {tier_name}"))
    routed = registry.tiers[tier_name]
    model = overrides.model or routed.model or default_model
    tier = registry.tiers_for(model)[tier_name]  # the model's own budgets, where it has them
    max_thinking = tier.max_thinking if overrides.max_thinking is None else overrides.max_thinking
    min_thinking = tier.min_thinking if overrides.min_thinking is None else overrides.min_thinking
    if overrides.no_think:
        max_thinking = min_thinking = 0
    if overrides.max_thinking is not None and overrides.min_thinking is None:
        min_thinking = min(min_thinking, max_thinking)
    if min_thinking > max_thinking:
        raise UsageError(f"--min-thinking {min_thinking} exceeds the thinking budget {max_thinking}")
    budget = BudgetSpec(
        thinking=max_thinking > 0,
        min_thinking=min_thinking,
        max_thinking=max_thinking,
        max_answer=overrides.max_answer or tier.max_answer,
        grace=tier.grace if overrides.max_thinking is None else 0,
        confidence=tier.confidence if overrides.confidence is None else overrides.confidence,
        confidence_window=tier.confidence_window,
        confidence_floor=tier.confidence_floor,
        loop_tokens=tier.loop_tokens if overrides.loop_breaker else 0,
        trial_confidence=tier.trial_confidence if overrides.trial is None else overrides.trial,
        trial_tokens=tier.trial_tokens,
        give_up=tier.give_up if overrides.give_up is None else overrides.give_up,
        trial_agree=tier.trial_agree if overrides.trial_agree is None else overrides.trial_agree,
        trial_stated=tier.trial_stated if overrides.trial_stated is None else overrides.trial_stated,
    )
    strategy = overrides.strategy or tier.strategy
    if overrides.samples and overrides.samples > 1 and not overrides.strategy:
        strategy = "vote"
    if strategy == "vote":  # a vote needs voters: the tier's samples, else the deep tier's
        samples = overrides.samples or (tier.samples if tier.samples > 1 else registry.tiers_for(model)["deep"].samples)
        if samples < 2:
            samples = DEFAULT_VOTE_SAMPLES
    else:
        samples = 1
    return Plan(
        difficulty=difficulty,
        tier=tier,
        model=model,
        budget=budget,
        strategy=strategy,
        samples=samples,
        temperature=overrides.temperature,
        seed=overrides.seed if overrides.seed is not None else 0,
    )
