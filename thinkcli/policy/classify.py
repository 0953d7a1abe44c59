"""Prompt → difficulty tier, with a score and the reasons behind it.

Deterministic, no model, well under 2 ms: a handful of weighted signals (what the prompt asks
for, how much math, code or logic it carries, how long and how constrained it is). Each signal that
fires adds to the score and leaves a human-readable reason. Two blind spots of word counting are
handled apart: a bare computation is tiered by the size of its operands ("What is 23 * 47?" is
work, "What is 6 * 7?" is not), and a long paste followed by a short question is classified by the
question (the paste only adds reading). Accuracy on the labelled set in
tests/data/prompts.jsonl is reported in the README (held-out part never used for tuning).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .tiers import TIER_NAMES

TIERS = TIER_NAMES
# score thresholds between tiers: [0, .2) instant, [.2, .42) light, [.42, .8) standard, else deep
THRESHOLDS = (0.2, 0.42, 0.8)


@dataclass(frozen=True)
class Difficulty:
    tier: str
    score: float
    reasons: tuple[str, ...]

    def as_dict(self) -> dict[str, object]:
        return {"tier": self.tier, "score": round(self.score, 3), "reasons": list(self.reasons)}


def _rx(*words: str) -> re.Pattern[str]:
    return re.compile(r"\b(?:" + "|".join(words) + r")\b", re.IGNORECASE)


GREETING = re.compile(
    r"^\s*(hi|hello|hey|yo|thanks|thank you|good (morning|evening|night|afternoon)|how are you|"
    r"what'?s up|bye|goodbye|ok|okay|cool|nice|great)\b[\s!.,?]*\w{0,12}[\s!.?]*$",
    re.IGNORECASE,
)
LOOKUP = _rx(
    r"what is the capital", r"capital of", r"who (?:wrote|painted|invented|discovered|is|was)",
    r"when (?:did|was|is)", r"where is", r"what year", r"define", r"definition of", r"translate",
    r"synonym", r"antonym", r"spell", r"how do you say", r"what does \w+ mean", r"abbreviation",
    r"what color", r"how many (?:legs|days|continents|planets|minutes|hours|seconds|sides)",
)
PROOF = _rx(
    r"prove", r"proof", r"show that", r"derive", r"by induction", r"puzzle", r"riddle",
    r"rigorous(?:ly)?", r"formally", r"disprove", r"counterexample", r"if and only if", r"iff",
)
HARD_MATH = _rx(
    r"integral", r"integrate", r"theorem", r"lemma", r"derivative", r"differentiate", r"eigen\w*", r"matrix", r"matrices",
    r"probability", r"expected value", r"combinatori\w*", r"permutations?", r"combinations?",
    r"modulo", r"mod", r"prime", r"divisible", r"polynomial", r"roots?", r"inequality", r"limit",
    r"series", r"converge\w*", r"recurrence", r"optimi[sz]e", r"minimi[sz]e", r"maximi[sz]e",
    r"geometry", r"triangle", r"circle", r"radius", r"area", r"volume", r"vectors?", r"gcd", r"lcm",
)
ARITH = _rx(r"solve", r"calculate", r"compute", r"how many", r"how much", r"sum of", r"product of",
            r"percent(?:age)?", r"average", r"ratio", r"equation", r"simplify", r"evaluate")
CODE = _rx(
    r"code", r"function", r"python", r"javascript", r"typescript", r"rust", r"java", r"c\+\+", r"sql",
    r"regex", r"bash", r"script", r"class", r"api", r"compile\w*", r"runtime", r"exception",
    r"stack ?trace", r"segfault", r"null pointer", r"refactor", r"unit tests?",
)
DEBUG = _rx(r"debug", r"bug", r"fix", r"why does (?:this|my)", r"doesn'?t work", r"fails?", r"crash\w*",
            r"race condition", r"deadlock", r"memory leak", r"off[- ]by[- ]one", r"traceback", r"error")
DESIGN = _rx(
    r"design", r"architect\w*", r"algorithm", r"complexity", r"big[- ]o", r"trade-?offs?", r"scal\w+",
    r"plan", r"strategy", r"schedule", r"optimal", r"efficient(?:ly)?", r"distributed", r"concurren\w+",
    r"implement", r"data structure", r"dynamic programming", r"graph", r"shortest path",
)
REASONING = _rx(
    r"step by step", r"think carefully", r"reason", r"reasoning", r"contradict\w*", r"explain why", r"why", r"how does", r"compare",
    r"contrast", r"analy[sz]e", r"evaluate", r"pros and cons", r"implications?", r"justify",
    r"puzzle", r"riddle", r"logic", r"deduce", r"infer", r"what would happen", r"estimate",
)
FACTOID = re.compile(r"^\s*(what|who|when|where|which)\b(?!.*\b(difference|why|how|compare)\b)", re.IGNORECASE)
EXPLAIN = _rx(r"explain", r"describe", r"how (?:does|do) \w+(?: \w+)? work", r"difference between", r"what are", r"ideas?",
              r"tips", r"suggest", r"recipe", r"write a (?:short |polite )?(?:tweet|email|letter|limerick|haiku|poem|story)")
WRITE_CODE = re.compile(r"\b(write|implement|create)\b.{0,30}\b(function|class|query|script|program|tests?|regex|algorithm)\b", re.IGNORECASE)
SIMPLE_TASK = _rx(r"list", r"name", r"give me", r"tell me", r"summari[sz]e", r"rewrite", r"rephrase",
                  r"write a (?:haiku|poem|sentence|tweet|title|slogan)", r"convert", r"format", r"fix the grammar")
HARD_WORDS = _rx(r"all", r"every", r"exactly", r"at least", r"at most", r"unique", r"minimum", r"maximum",
                 r"constraints?", r"must", r"without", r"edge cases?", r"in general", r"for any", r"n\b")
MATH_SYMBOLS = re.compile(r"[=^√∑∫≤≥≠π]|\d\s*[-+*/×÷]\s*\d|\b[a-z]\s*\^|\bx\b|\b[fg]\(x\)")
# Every pattern must run in linear time: no unbounded repeat followed by something that can fail
# after it (`\w+\(\)` backtracked quadratically on a long word). tests/test_classify.py checks 2 MB.
CODE_BLOCK = re.compile(r"```|^ {4}\S|^\t\S|\bdef \w{1,64}\(|\w\(\)|;[ \t]*$|\{[ \t]*$|=>|->", re.MULTILINE)
# Text beyond this is not inspected: the head says what is asked, the tail often holds the question
# after a paste. Bounds the time of every pattern whatever the input.
WORD = re.compile(r"\w+")
HEAD_CHARS = 12_000
TAIL_CHARS = 4_000


def inspected_text(prompt: str) -> str:
    """The part of a prompt the classifier reads: all of it, or its head and tail."""
    text = prompt.strip()
    if len(text) <= HEAD_CHARS + TAIL_CHARS:
        return text
    return text[:HEAD_CHARS] + "\n" + text[-TAIL_CHARS:]


LOGIC = _rx(
    r"does (?:it|this) follow", r"follows? (?:logically|from)", r"valid", r"invalid", r"syllogism", r"must be true",
    r"(?:all|no|some) \w{1,20} are", r"therefore", r"can we conclude", r"conclusion", r"knights?", r"knaves?",
    r"liars?", r"truth-?tellers?", r"(?:older|younger|taller|shorter|heavier|lighter|faster|slower) than",
    r"exactly one of", r"at most one of", r"(?:left|right) of", r"next to",
)
# Bare computations: what matters is the size of the operands, not the words around them.
BARE_OP = re.compile(r"(\d{1,12})\s{0,3}(\*|×|x|times|\+|plus|-|minus|/|÷|divided by|\^|\*\*)\s{0,3}(\d{1,12})",
                     re.IGNORECASE)
DIVIDE_WORDS = re.compile(r"\bdivide (\d{1,12}) by (\d{1,12})", re.IGNORECASE)
SQUARED = re.compile(r"\b(\d{1,12}) (?:squared|cubed)\b", re.IGNORECASE)
FACTORIAL = re.compile(r"\b(\d{1,4})!")
FACTOR_OF = re.compile(r"\b(?:factor(?:i[sz]e)?|prime factori[sz]ation of|prime factors of|is)\s{1,3}(\d{2,15})"
                       r"(?:\s{1,3}(?:a\s)?prime)?", re.IGNORECASE)
PLACES = re.compile(r"\bto (\d{1,3}) (?:decimal )?(?:places|digits)\b", re.IGNORECASE)
# A paste (an e-mail, code, an article) with a short question after it or an instruction before it.
PARAGRAPHS = re.compile(r"\n[ \t]*\n")
TIER_SCORES = {"instant": 0.1, "light": 0.3, "standard": 0.6, "deep": 0.85}


def _significant(number: str) -> int:
    """Digits that take work: 10 x 10 is as easy as 1 x 1."""
    return max(1, len(number.lstrip("0").rstrip("0")))


# The only words a bare computation may carry besides its numbers and operators.
BARE_WORDS = frozenset(
    ["what", "is", "whats", "what's", "s", "compute", "calculate", "evaluate", "find", "work", "out", "the", "value", "of", "exactly", "result", "answer", "please", "and", "divide", "by", "times", "plus", "minus", "divided", "squared", "cubed", "factor", "factorise", "factorize", "factorisation", "factorization", "prime", "factors", "a", "an", "number", "as", "decimal", "to", "places", "digits", "write", "give", "me"])


def arithmetic_tier(text: str, n_words: int) -> tuple[str, str] | None:
    """The tier of a short, bare computation, from the size of its operands (None: not one)."""
    if n_words > 14:
        return None
    words = re.findall(r"[a-z']+", re.sub(r"\d", " ", text.lower()))
    if any(word not in BARE_WORDS and word != "x" for word in words) or re.search(r"\d\.\d", text):
        return None  # other words (a variable, a question about something): not a bare computation
    factor = FACTOR_OF.search(text)
    if factor and (re.search(r"factor|prime", text, re.IGNORECASE)):
        n = int(factor.group(1))
        tier = "light" if n < 100 else "standard" if n < 100_000 else "deep"
        return tier, f"factorisation or primality of a {len(factor.group(1))}-digit number"
    factorial = FACTORIAL.search(text)
    if factorial:
        n = int(factorial.group(1))
        return ("light" if n <= 6 else "standard"), f"{n}! (factorial)"
    places = PLACES.search(text)
    if places and int(places.group(1)) >= 6:
        return "standard", f"a result to {places.group(1)} places"
    work = 0
    kinds: list[str] = []
    for a, op, b in BARE_OP.findall(text):
        op = op.lower()
        if op in ("*", "×", "x", "times"):
            work = max(work, _significant(a) + _significant(b)) + (2 if kinds else 0)
            kinds.append(f"{len(a)}-digit × {len(b)}-digit")
        elif op in ("/", "÷", "divided by"):
            work = max(work, len(a) + len(b)) + (2 if kinds else 0)
            kinds.append(f"{len(a)}-digit ÷ {len(b)}-digit")
        elif op in ("^", "**"):
            work = max(work, 3 if a in ("2", "10") else len(a) + int(b) // 2 + 2)
            kinds.append(f"{a}^{b}")
        else:
            work = max(work, 1 if max(len(a), len(b)) <= 2 else 3) + (1 if kinds else 0)
            kinds.append(f"{max(len(a), len(b))}-digit {'+' if op in ('+', 'plus') else '-'}")
    for a, b in DIVIDE_WORDS.findall(text):
        work = max(work, len(a) + len(b))
        kinds.append(f"{len(a)}-digit ÷ {len(b)}-digit")
    for a in SQUARED.findall(text):
        work = max(work, 3 if int(a) <= 20 else 2 * _significant(a))
        kinds.append(f"{a} squared")
    if not kinds:
        return None
    tier = "instant" if work <= 2 else "light" if work <= 3 else "standard"
    return tier, f"bare arithmetic ({', '.join(kinds[:3])})"


def split_paste(text: str) -> tuple[str, int]:
    """(the question, words of pasted material set aside): a long paste with a short question after
    it (or a short instruction before it) is classified by the question; the paste only adds length."""
    parts = [p for p in PARAGRAPHS.split(text) if p.strip()]
    if len(parts) < 2:
        return text, 0
    last, first = parts[-1], parts[0]
    rest_last = sum(len(WORD.findall(p)) for p in parts[:-1])
    if len(WORD.findall(last)) <= 30 and rest_last >= 40:
        return last, rest_last
    rest_first = sum(len(WORD.findall(p)) for p in parts[1:])
    if len(WORD.findall(first)) <= 30 and rest_first >= 40 and first.rstrip().endswith(":"):
        return first, rest_first
    return text, 0


def classify(prompt: str) -> Difficulty:
    n_words = len(WORD.findall(prompt))  # the whole prompt's length counts (linear time)
    text = inspected_text(prompt)
    pasted = 0
    if text:
        text, pasted = split_paste(text)
        if pasted:
            n_words -= pasted

    if not text:
        return Difficulty("instant", 0.0, ("empty prompt",))
    if GREETING.match(text):
        return Difficulty("instant", 0.02, ("greeting or small talk",))
    if not pasted:
        arithmetic = arithmetic_tier(text, n_words)
        if arithmetic is not None:
            tier, why = arithmetic
            return Difficulty(tier, TIER_SCORES[tier], (why,))
    score, reasons = _weigh(text, n_words, pasted)
    score = max(0.0, min(1.0, score))
    tier = TIERS[sum(score >= t for t in THRESHOLDS)]
    return Difficulty(tier, score, tuple(reasons or ["no sign of multi-step work"]))


def _weigh(text: str, n_words: int, pasted: int) -> tuple[float, list[str]]:
    """The score from every sign in the text (topic, shape, length), and a reason for each."""
    score = 0.24
    reasons: list[str] = []

    def add(weight: float, reason: str) -> None:
        nonlocal score
        score += weight
        reasons.append(reason)

    def hits(pattern: re.Pattern[str]) -> list[str]:
        return sorted({m.group(0).lower() for m in pattern.finditer(text)})

    lookup, proof, hard_math, arith = hits(LOOKUP), hits(PROOF), hits(HARD_MATH), hits(ARITH)
    code, debug, design, reasoning = hits(CODE), hits(DEBUG), hits(DESIGN), hits(REASONING)
    simple, hard_words = hits(SIMPLE_TASK), hits(HARD_WORDS)
    numbers = re.findall(r"\d+(?:\.\d+)?", text)
    symbols = MATH_SYMBOLS.findall(text)
    code_block = bool(CODE_BLOCK.search(text))

    if lookup and n_words <= 14:
        add(-0.14, f"short lookup ({lookup[0]})")
    elif FACTOID.match(text) and n_words <= 10:
        add(-0.1, "short factual question")
    explain = hits(EXPLAIN)
    if explain:
        add(0.04, f"asks to explain or write ({explain[0]})")
    if WRITE_CODE.search(text):
        add(0.14, "asks for code")
    if simple and not (proof or hard_math or design or debug):
        add(0.02, f"simple task ({simple[0]})")
    if proof:
        add(0.58, f"asks for a proof or derivation ({', '.join(proof[:2])})")
    if hard_math:
        add(0.18 + 0.06 * min(len(hard_math), 3), f"advanced math ({', '.join(hard_math[:3])})")
    if arith:
        add(0.2, f"asks to compute ({', '.join(arith[:2])})")
    if len(numbers) >= 2 or symbols:
        add(min(0.05 * (len(numbers) + 2 * len(symbols)), 0.25), f"{len(numbers)} numbers, {len(symbols)} math symbols")
    if code or code_block:
        add(0.18 + (0.1 if code_block else 0.0), "code" + (" block" if code_block else f" ({code[0]})"))
    if debug:
        add(0.15 + 0.05 * min(len(debug), 3), f"debugging ({', '.join(debug[:2])})")
    if design:
        add(0.2 + 0.06 * min(len(design), 4), f"design or algorithms ({', '.join(design[:3])})")
    if reasoning:
        add(0.17 + 0.04 * min(len(reasoning), 3), f"asks for reasoning ({', '.join(reasoning[:2])})")
    if len(hard_words) >= 2:
        add(0.03 * min(len(hard_words), 5), f"{len(hard_words)} constraints ({', '.join(hard_words[:3])})")
    logic = hits(LOGIC)
    if logic:
        add(0.2 + 0.07 * min(len(logic), 4), f"logic or a validity check ({', '.join(logic[:2])})")
    if pasted:  # reading the material is some work: never below light
        add(max(0.12, 0.28 - score), f"pasted material ({pasted} words) set aside: the question decides")
    questions = text.count("?")
    if questions >= 2:
        add(0.05 * min(questions, 4), f"{questions} questions")
    if n_words > 25:
        add(min(0.04 * (n_words - 25) ** 0.5, 0.3), f"long prompt ({n_words} words)")
    elif n_words <= 6 and not (proof or hard_math or code_block or symbols or pasted):
        add(-0.04, f"very short ({n_words} words)")
    return score, reasons
