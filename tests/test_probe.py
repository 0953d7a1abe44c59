"""The escalation probe: answer without thinking first, think only when that answer is unsure."""

from __future__ import annotations

import json
from pathlib import Path

from thinkcli.engine.budget import BudgetSpec, ForcedText, SequencePolicy
from thinkcli.engine.thinking import ThinkingParser
from thinkcli.policy.plan import Overrides, make_plan
from thinkcli.policy.registry import load_registry

END = 99
FORCED = ForcedText(close=([50], "</think>"), budget=([70, 50], "Up.</think>"), wait=([80], "Wait"),
                    answer_prefix=([], ""))


def probe_policy(tokens: int = 4, confidence: float = 0.8, max_answer: int = 10) -> SequencePolicy:
    spec = BudgetSpec(thinking=False, max_thinking=0, max_answer=max_answer, probe_tokens=tokens,
                      probe_confidence=confidence)
    return SequencePolicy(spec, ThinkingParser("</think>", False), FORCED, lambda t: t == END)


def test_a_confident_probe_is_kept_and_goes_on():
    p = probe_policy()
    steps = [p.decide(1, "a", 0.95) for _ in range(4)]
    assert [s.probe for s in steps[:3]] == [None, None, None]
    verdict = steps[3].probe
    assert verdict is not None and verdict.kept and verdict.tokens == 4 and abs(verdict.confidence - 0.95) < 1e-9
    assert steps[3].finish is None  # the same sequence simply continues
    assert p.decide(1, "a", 0.1).probe is None  # judged once


def test_an_unsure_probe_ends_as_escalated():
    p = probe_policy()
    for prob in (0.9, 0.5, 0.4):
        assert p.decide(1, "a", prob).finish is None
    step = p.decide(1, "a", 0.6)
    assert step.finish == "escalated" and step.probe is not None and not step.probe.kept


def test_an_answer_that_ends_before_the_probe_length_is_judged_then():
    sure = probe_policy(tokens=8)
    sure.decide(1, "a", 0.99)
    step = sure.decide(END, "", 0.99)
    assert step.finish == "stop" and step.probe is not None and step.probe.kept and step.probe.tokens == 1
    empty = probe_policy(tokens=8)
    step = empty.decide(END, "", 0.99)  # no answer at all: nothing to keep
    assert step.finish == "escalated" and step.probe is not None and step.probe.confidence is None


def config(home: Path, model: Path, probe: str = "") -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "models.yaml").write_text(
        f"default_model: tiny\nmodels:\n  tiny:\n    path: {model}\n    family: qwen3\n"
        "tiers:\n  light:\n    max_thinking: 24\n    max_answer: 12\n  standard:\n    max_thinking: 24\n"
        "    max_answer: 12\n  deep:\n    samples: 2\n    min_thinking: 0\n    max_thinking: 16\n    max_answer: 6\n"
        + probe)


def ask(think, *args: str) -> dict:
    r = think("ask", "--json", *args)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def test_a_confident_model_answers_without_thinking(think, tiny, think_home):
    config(think_home, tiny("confident"))
    record = ask(think, "Name a colour.")
    assert record["tier"] == "light" and record["probe"]["kept"] is True
    assert record["probe"]["confidence"] > 0.99 and record["probe"]["tokens"] == 12  # the default probe length
    assert record["usage"]["thinking_tokens"] == 0 and record["budget"]["max_thinking"] == 0
    # The kept probe is the plain no-thinking answer at the same seed: one sequence, never restarted.
    plain = ask(think, "--no-think", "--max-answer", "12", "Name a colour.")
    assert plain["probe"] is None and record["answer"] == plain["answer"] == "a" * 12


def test_an_unsure_model_escalates_and_the_kv_cache_stays_right(think, tiny, think_home):
    config(think_home, tiny("tame"))
    record = ask(think, "Name a colour.")
    probe = record["probe"]
    assert probe["kept"] is False and probe["confidence"] < 0.8 and probe["escalated_to"] == "light"
    assert record["tier"] == "light" and "escalated after the probe" in record["reasons"]
    assert record["usage"]["thinking_tokens"] == 24  # the light tier's cap here (the tame model never closes)
    assert record["usage"]["cached_prompt_tokens"] > 0  # the prompt's prefix came from the probe's cache
    without = ask(think, "--no-probe", "Name a colour.")
    assert without["probe"] is None
    assert (record["thinking"], record["answer"]) == (without["thinking"], without["answer"])
    # An instant prompt escalates to the light tier.
    hello = ask(think, "hello")
    assert hello["probe"]["escalated_to"] == "light" and hello["tier"] == "light"
    # stdout carries only the final answer: the probe's discarded answer never shows.
    shown = think("ask", "--hide-thinking", "Name a colour.")
    assert shown.stdout.strip() == record["answer"].strip()
    noted = think("ask", "Name a colour.")
    assert "[probe: confidence" in noted.stderr and "thinking at the light tier]" in noted.stderr


def test_the_probe_follows_the_band_the_flags_and_the_settings(think, tiny, think_home):
    config(think_home, tiny("tame"), "probe:\n  tiers: [light]\n  tokens: 3\n")
    assert ask(think, "Name a colour.")["probe"]["tokens"] == 3
    assert ask(think, "hello")["probe"] is None  # instant is outside this band
    assert ask(think, "--tier", "light", "Name a colour.")["probe"] is None  # a forced tier is not probed
    assert ask(think, "--max-thinking", "5", "Name a colour.")["probe"] is None
    registry = load_registry(think_home / "config" / "models.yaml")
    assert make_plan("Name a colour.", registry, Overrides(probe=False), "tiny").probe is None
    config(think_home, tiny("tame"), "probe:\n  enabled: false\n")
    assert ask(think, "Name a colour.")["probe"] is None
    bad = think_home / "config" / "models.yaml"
    bad.write_text(bad.read_text().replace("enabled: false", "tiers: [hard]"))
    r = think("ask", "hi")
    assert r.returncode == 1 and "probe.tiers: must be a list of tier names" in r.stderr


def test_a_model_can_carry_its_own_probe_settings(think, tiny, think_home):
    config(think_home, tiny("tame"), "probe:\n  tokens: 5\n")
    models = think_home / "config" / "models.yaml"
    models.write_text(models.read_text().replace("    family: qwen3\n", "    family: qwen3\n    probe:\n"
                                                 "      confidence: 0.0\n", 1))
    record = ask(think, "Name a colour.")  # a threshold of 0 keeps any answer
    assert record["probe"] == {"tokens": 5, "confidence": record["probe"]["confidence"], "threshold": 0.0, "kept": True}


def test_a_tier_can_set_its_own_probe_bar(think, tiny, think_home):
    """`tiers: light: {probe_confidence: …}`: that tier's prompts are judged by their own bar, the rest by
    the probe's; a real ask records the bar it was judged by."""
    config(think_home, tiny("tame"), "probe:\n  tiers: [instant, light]\n  confidence: 0.3\n")
    models = think_home / "config" / "models.yaml"
    models.write_text(models.read_text().replace("  light:\n    max_thinking: 24\n",
                                                 "  light:\n    max_thinking: 24\n    probe_confidence: 0.999\n"))
    registry = load_registry(models)
    assert registry.probe_for("tiny", "light").confidence == 0.999
    assert registry.probe_for("tiny", "instant").confidence == 0.3 and registry.probe_for("tiny").confidence == 0.3
    light = make_plan("Name a colour.", registry, Overrides(), "tiny")
    assert light.difficulty.tier == "light" and light.budget.probe_confidence == 0.999
    instant = make_plan("hello", registry, Overrides(), "tiny")
    assert instant.difficulty.tier == "instant" and instant.budget.probe_confidence == 0.3
    assert ask(think, "Name a colour.")["probe"]["threshold"] == 0.999
    assert ask(think, "hello")["probe"]["threshold"] == 0.3
    models.write_text(models.read_text().replace("probe_confidence: 0.999", "probe_confidence: 2"))
    r = think("ask", "hi")
    assert r.returncode == 1 and "probe_confidence" in r.stderr and "Traceback" not in r.stderr


def test_the_probe_in_batch_and_before_best_of_n(think, tiny, think_home, tmp_path):
    config(think_home, tiny("tame"), "probe:\n  tiers: [instant, light, deep]\n")
    src = tmp_path / "in.txt"
    src.write_text("hello\nWhat is 2+2?\nProve that there are infinitely many primes.\n")
    out = tmp_path / "out.jsonl"
    r = think("batch", str(src), "-o", str(out), "--parallel", "2")
    assert r.returncode == 0, r.stderr
    records = {rec["id"]: rec for rec in map(json.loads, out.read_text().splitlines())}
    assert all(rec["probe"]["kept"] is False for rec in records.values())
    deep = records["3"]
    assert deep["tier"] == "deep" and deep["strategy"] == "vote" and len(deep["samples"]) == 2
    assert deep["probe"]["escalated_to"] == "deep"
    assert records["1"]["tier"] == "light" and records["1"]["usage"]["thinking_tokens"] == 24


def test_classify_probe_shows_what_the_model_measured(think, tiny, think_home):
    config(think_home, tiny("confident"))
    r = think("classify", "--probe", "--json", "Name a colour.")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["tier"] == "light" and data["probe"]["kept"] is True and data["probe"]["applies"] is True
    assert data["probe"]["answer"] == "a" * 12
    text = think("classify", "--probe", "Prove that there are infinitely many primes.").stdout
    assert "confident: auto answers without thinking" in text
    assert "auto probes only instant, light prompts, and this one is deep" in text
    config(think_home, tiny("confident"), "probe:\n  enabled: false\n")
    text = think("classify", "--probe", "Name a colour.").stdout
    assert "the probe is off for tiny (models.yaml probe: enabled: false)" in text  # it blamed the tier before


def test_a_prompted_model_escalates_on_its_cached_prompt(think, tiny, tmp_path, think_home):
    """The thinking instruction heads the prompt on and off, so escalation re-evaluates only the tail
    (3 of 50 prompt tokens came from the cache before)."""
    from tinymodel import write_tiny_gguf

    template = (Path(__file__).parent / "data" / "Qwen-Qwen2.5-7B-Instruct.jinja").read_text()
    model = write_tiny_gguf(tmp_path / "prompted.gguf", "tame", template=template)
    config(think_home, model)
    (think_home / "config" / "models.yaml").write_text(
        (think_home / "config" / "models.yaml").read_text().replace("family: qwen3", "family: prompted"))
    record = ask(think, "Name a colour.")
    assert record["family"] == "prompted" and record["probe"]["kept"] is False
    usage = record["usage"]
    assert usage["cached_prompt_tokens"] >= usage["prompt_tokens"] - 8, usage
