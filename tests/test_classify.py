import json
import time
from pathlib import Path

from thinkcli.policy.classify import TIERS, classify

DATA = [json.loads(line) for line in (Path(__file__).parent / "data" / "prompts.jsonl").read_text().splitlines()]


def accuracy(split: str) -> float:
    rows = [r for r in DATA if r["split"] == split]
    return sum(classify(r["prompt"]).tier == r["tier"] for r in rows) / len(rows)


def test_labelled_set_is_large_and_varied():
    assert len(DATA) >= 200 and sum(bool(r.get("blind_spot")) for r in DATA) >= 40
    assert {r["tier"] for r in DATA} == set(TIERS)
    assert sum(r["split"] == "test" for r in DATA) >= 35


def auroc(split: str) -> float:
    """Easy (instant, light) against hard (standard, deep): how often a hard prompt scores above an easy one."""
    scored = [(classify(r["prompt"]).score, TIERS.index(r["tier"]) >= 2) for r in DATA if r["split"] == split]
    hard = [score for score, is_hard in scored if is_hard]
    easy = [score for score, is_hard in scored if not is_hard]
    return sum((h > e) + 0.5 * (h == e) for h in hard for e in easy) / (len(hard) * len(easy))


# The classifier before the blind-spot work, measured on this same grown set (40 blind-spot prompts
# added with their split fixed before tuning: every 4th held out): held-out accuracy 68.0 %, AUROC
# 0.860; train 75.0 %, AUROC 0.907.
BEFORE = {"test": (0.680, 0.860), "train": (0.750, 0.907)}


def test_held_out_accuracy_and_auroc_beat_the_classifier_before():
    # README reports these figures; tuned on "train" only.
    for split in ("train", "test"):
        acc, area = accuracy(split), auroc(split)
        print(f"classifier {split}: accuracy {acc:.1%}, easy-vs-hard AUROC {area:.3f} "
              f"(before: {BEFORE[split][0]:.1%}, {BEFORE[split][1]:.3f})")
        assert acc > BEFORE[split][0] and area > BEFORE[split][1]
    assert accuracy("test") >= 0.80 and auroc("test") >= 0.95
    assert accuracy("train") >= 0.86


def test_blind_spots_short_hard_work_and_long_easy_questions():
    for prompt, tier in [("What is 6 * 7?", "instant"), ("What is 23 * 47?", "standard"), ("Factor 391.", "standard"),
                         ("Is 97 prime?", "light"), ("Find the prime factorization of 123456789.", "deep"),
                         ("What's 10 times 10?", "instant"), ("Compute 13! exactly.", "standard")]:
        assert classify(prompt).tier == tier, prompt
    # Not bare arithmetic: variables, decimals, a question about something.
    assert classify("Simplify the expression (x^2 - 9)/(x - 3).").tier == "standard"
    assert "bare arithmetic" not in " ".join(classify("Why does 0.1 + 0.2 not equal 0.3 in Python?").reasons)
    email = "Dear all, " + "the quarterly review moves to the third floor room because of works. " * 8
    easy = classify(email + "\n\nWhat time is the meeting?")
    assert easy.tier == "light" and any("pasted material" in r for r in easy.reasons)
    code = "def f(n):\n    total = 0\n    while n > 0:\n        total += n % 10\n        n //= 10\n    return total\n" * 4
    assert classify(code + "\n\nWhy does this hang for negative numbers? Fix it.").tier in ("standard", "deep")
    assert classify("All cats are mammals. Some mammals are black. Does it follow that some cats are black?").tier \
        == "standard"


def test_held_out_never_more_than_one_tier_off():
    for r in DATA:
        got = TIERS.index(classify(r["prompt"]).tier)
        assert abs(got - TIERS.index(r["tier"])) <= 1, r["prompt"]


def test_deterministic_with_reasons_and_score_in_range():
    a, b = classify("Prove that sqrt(2) is irrational."), classify("Prove that sqrt(2) is irrational.")
    assert a == b and a.tier == "deep" and 0 <= a.score <= 1 and any("proof" in r for r in a.reasons)
    assert classify("hi").tier == "instant"
    assert classify("").tier == "instant"


def test_fast_enough():
    prompts = [r["prompt"] for r in DATA]
    started = time.perf_counter()
    for p in prompts:
        classify(p)
    per_prompt = (time.perf_counter() - started) / len(prompts)
    assert per_prompt < 0.002


def test_cli_classify_json(think):
    result = think("classify", "--json", "Prove that there are infinitely many primes.")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert set(data) == {"tier", "score", "reasons"} and data["tier"] == "deep"
    plain = think("classify", "hello")
    assert "tier:   instant" in plain.stdout


def test_two_megabytes_classify_in_well_under_a_second():
    # Once quadratic (`\w+\(\)` backtracked): 80 kB took 15 s. Every pattern is linear now and the
    # text inspected is bounded, so ask, chat, batch and a server stay safe from huge prompts.
    for text in ("a" * 2_000_000, "a() " * 500_000, " " * 2_000_000 + "x", "1 + " * 500_000, "def " * 500_000):
        started = time.perf_counter()
        classify(text)
        assert time.perf_counter() - started < 1.0
