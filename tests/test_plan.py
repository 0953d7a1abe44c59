"""plan.make_plan: how a tier, models.yaml and the user's flags become one plan."""

from __future__ import annotations

import pytest

from thinkcli.errors import UsageError
from thinkcli.policy.plan import Overrides, make_plan
from thinkcli.policy.registry import load_registry

REG = load_registry()
HARD = "Prove that there are infinitely many primes."


def plan(prompt: str = "hi", **overrides):
    return make_plan(prompt, REG, Overrides(**overrides), "gemma3-270m")


def test_the_tier_sets_budget_strategy_and_samples():
    easy, hard = plan("hi"), plan(HARD)
    assert easy.difficulty.tier == "instant" and not easy.budget.thinking and easy.samples == 1
    deep = REG.tiers["deep"]
    assert hard.difficulty.tier == "deep" and hard.strategy == "vote" and hard.samples == deep.samples
    assert hard.budget.max_thinking == deep.max_thinking and hard.budget.min_thinking == deep.min_thinking
    assert hard.budget.needs_confidence


def test_a_forced_tier_keeps_the_reasons_and_says_so():
    p = plan("hi", tier="standard")
    assert p.difficulty.tier == "standard" and p.difficulty.reasons[-1] == "tier forced to standard"


def test_flags_override_the_tier():
    p = plan(HARD, max_thinking=100, max_answer=7)
    assert (p.budget.max_thinking, p.budget.max_answer) == (100, 7)
    assert p.budget.min_thinking == 100  # the deep minimum (256) is lowered to the cap
    assert p.budget.grace == 0  # an explicit cap is exact
    assert plan(HARD, no_think=True).budget.thinking is False


def test_samples_and_strategy_rules():
    assert plan("hi", samples=3).strategy == "vote" and plan("hi", samples=3).samples == 3
    assert plan("hi", strategy="vote").samples == REG.tiers["deep"].samples  # a vote needs voters
    single = plan(HARD, strategy="single")
    assert single.strategy == "single" and single.samples == 1
    assert plan("hi", samples=1).strategy == "single"


def test_model_choice_order():
    assert plan("hi").model == "gemma3-270m"
    assert plan("hi", model="qwen3-0.6b").model == "qwen3-0.6b"


@pytest.mark.parametrize("overrides, message", [
    ({"min_thinking": 50, "max_thinking": 10}, "--min-thinking must not exceed --max-thinking"),
    ({"tier": "light", "min_thinking": 500}, "exceeds the thinking budget 256"),
    ({"samples": 0}, "--samples must be between 1 and 64"),
    ({"temperature": 9.0}, "--temperature must be between 0 and 5"),
    ({"max_answer": 0}, "--max-answer must be >= 1"),
])
def test_contradictions_are_usage_errors(overrides, message):
    with pytest.raises(UsageError, match=message):
        plan("hi", **overrides)
