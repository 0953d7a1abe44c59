"""Evaluation sets: the user's labelled JSONL, or the bundled generated set (no download).

A set is a list of `EvalItem`s: a prompt, the expected answer and how to check it. The bundled set
(`builtin`) is generated from a seed, so it is the same on every machine: five kinds of problem
with exact answers (multi-step arithmetic, digit manipulation, letter counting, ordering puzzles,
word problems), each at five levels of difficulty. Items are interleaved by level and kind, so
`--limit N` takes a balanced slice.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ...errors import ThinkError, UsageError
from ...text import Json

CHECKERS = ("auto", "exact", "number", "contains", "regex", "math")
BUILTIN = "builtin"
LEVELS = (1, 2, 3, 4, 5)
PER_KIND_AND_LEVEL = 12


@dataclass(frozen=True)
class EvalItem:
    id: str
    line: int
    prompt: str
    answer: str
    checker: str = "auto"
    tier: str | None = None  # a label from the set; else the classifier's tier is used for "by tier"
    level: int | None = None
    kind: str | None = None

    def as_dict(self) -> Json:
        record: Json = {"id": self.id, "prompt": self.prompt, "answer": self.answer, "checker": self.checker}
        for key in ("tier", "level", "kind"):
            if getattr(self, key) is not None:
                record[key] = getattr(self, key)
        return record


def read_set(path: Path) -> list[EvalItem]:
    """A labelled JSONL set; the first bad line is refused with its number (nothing runs)."""
    from ...policy.tiers import TIER_NAMES

    if not path.exists():
        raise ThinkError(f"evaluation set not found: {path}")
    if path.is_dir():
        raise ThinkError(f"evaluation set {path} is a directory")
    items: list[EvalItem] = []
    seen: dict[str, int] = {}
    from ..batch import jsonl_objects

    with open(path, encoding="utf-8-sig", errors="replace") as handle:
        for number, raw, error in jsonl_objects(handle):
            if raw is None:
                raise UsageError(f"{path}: line {number}: {error}")
            prompt, answer = raw.get("prompt"), raw.get("answer")
            if not isinstance(prompt, str) or not prompt.strip():
                raise UsageError(f"{path}: line {number}: needs a non-empty string 'prompt'")
            if isinstance(answer, (int, float)) and not isinstance(answer, bool):
                answer = str(answer)
            if not isinstance(answer, str) or not answer.strip():
                raise UsageError(f"{path}: line {number}: needs an 'answer' (a string or a number)")
            checker = raw.get("checker", "auto")
            if checker not in CHECKERS:
                raise UsageError(f"{path}: line {number}: unknown checker '{checker}' (choose {', '.join(CHECKERS)})")
            tier = raw.get("tier")
            if tier is not None and tier not in TIER_NAMES:
                raise UsageError(f"{path}: line {number}: unknown tier '{tier}' (the tiers are {', '.join(TIER_NAMES)})")
            item_id = str(raw["id"]) if raw.get("id") is not None else str(number)
            if item_id in seen:
                raise UsageError(f"{path}: line {number}: duplicate id '{item_id}' (first on line {seen[item_id]})")
            seen[item_id] = number
            level = raw.get("level")
            items.append(EvalItem(item_id, number, prompt, answer.strip(), checker, tier,
                                  level if isinstance(level, int) else None,
                                  raw.get("kind") if isinstance(raw.get("kind"), str) else None))
    if not items:
        raise UsageError(f"{path}: no items")
    return items


REASONER = "reasoner"
REASONER_SEED = 5_000_000  # the tiny reasoner was trained on problems of another seed
REASONER_ITEMS = 200
# each band's (hard share, middle share); the rest is easy
REASONER_BANDS = {"": (0.4, 0.0), "easy": (0.0, 0.0), "middle": (0.0, 1.0), "hard": (1.0, 0.0), "wide": (0.3, 0.2)}


def reasoner_set(seed: int = 0, band: str = "") -> list[EvalItem]:
    """The tiny reasoner's problems, fresh: 60 % easy and 40 % hard (most real queries are easy), or one
    band; `wide` adds the sizes between the two (50 % easy, 20 % middle, 30 % hard), where a model sure
    of its easy answers may be wrongly sure of bigger ones: the set to calibrate a probe on."""
    from .arithmetic import banded_problems

    hard_share, middle_share = REASONER_BANDS[band]
    items = []
    drawn = banded_problems(REASONER_SEED + seed, REASONER_ITEMS, hard_share, middle_share)
    for i, (size, p) in enumerate(drawn, start=1):
        items.append(EvalItem(f"{p.kind}-{size}-{i}", i, p.question, str(p.answer), "number", None,
                              {"easy": 1, "hard": 2}.get(size), p.kind))
    return items


def load_set(name: str, seed: int = 0) -> list[EvalItem]:
    """`builtin` (or `builtin:LEVEL`) for the bundled set, `reasoner[:easy|:middle|:hard|:wide]` for the tiny reasoner's
    problems, else a JSONL file."""
    if name == REASONER or name.startswith(REASONER + ":"):
        _, _, band = name.partition(":")
        if band not in REASONER_BANDS:
            raise UsageError(f"unknown band '{band}' of the reasoner set (easy, middle, hard or wide)")
        return reasoner_set(seed, band)
    if name == BUILTIN or name.startswith(BUILTIN + ":"):
        _, _, level = name.partition(":")
        if level and (not level.isdigit() or int(level) not in LEVELS):
            raise UsageError(f"unknown level '{level}' of the builtin set (levels 1 to 5)")
        return builtin_set(seed, levels=(int(level),) if level else LEVELS)
    return read_set(Path(name))


# -- the bundled set ----------------------------------------------------------------------------

NAMES = ("Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi", "Ivan", "Judy")
WORDS = ("strawberry", "banana", "bookkeeper", "mississippi", "committee", "parallelogram", "necessary",
         "occurrence", "assessment", "abracadabra", "successfully", "referendum", "tennessee", "possession")
ITEMS = ("apples", "books", "marbles", "stickers", "coins", "pencils")


def _arithmetic(rng: random.Random, level: int) -> tuple[str, str]:
    """level+1 operands; bigger numbers and more multiplications as the level rises."""
    high = (9, 20, 50, 99, 999)[level - 1]
    terms = [str(rng.randint(2, high)) for _ in range(level + 1)]
    ops = [rng.choice(("+", "-", "*") if level > 1 else ("+", "-")) for _ in range(level)]
    expression = terms[0] + "".join(f" {op} {term}" for op, term in zip(ops, terms[1:], strict=False))
    return f"What is {expression}?", str(_value(terms, ops))


def _value(terms: list[str], ops: list[str]) -> int:
    """The value of `t0 op t1 op t2 …` with * binding before + and -."""
    products = [int(terms[0])]
    signs: list[str] = []
    for op, term in zip(ops, terms[1:], strict=False):
        if op == "*":
            products[-1] *= int(term)
        else:
            signs.append(op)
            products.append(int(term))
    total = products[0]
    for sign, value in zip(signs, products[1:], strict=False):
        total = total + value if sign == "+" else total - value
    return total


def _digits(rng: random.Random, level: int) -> tuple[str, str]:
    length = 2 + level * 2
    digits = [str(rng.randint(1, 9))] + [str(rng.randint(0, 9)) for _ in range(length - 1)]
    number = "".join(digits)
    if rng.random() < 0.5:
        return f"What is the sum of the digits of {number}?", str(sum(int(d) for d in number))
    digits[-1] = str(rng.randint(1, 9))  # no leading zero once reversed
    number = "".join(digits)
    return f"Write the number {number} with its digits in reverse order.", number[::-1]


def _letters(rng: random.Random, level: int) -> tuple[str, str]:
    word = rng.choice(WORDS)
    if level >= 3:
        word = " ".join(rng.choice(WORDS) for _ in range(level - 1))
    letter = rng.choice(sorted(set(word.replace(" ", ""))))
    return f"How many times does the letter '{letter}' appear in \"{word}\"?", str(word.count(letter))


def _ordering(rng: random.Random, level: int) -> tuple[str, str]:
    people = rng.sample(NAMES, level + 2)  # tallest first
    facts = [f"{people[i]} is taller than {people[i + 1]}." for i in range(len(people) - 1)]
    rng.shuffle(facts)
    if rng.random() < 0.5:
        return " ".join(facts) + " Who is the tallest?", people[0]
    return " ".join(facts) + " Who is the shortest?", people[-1]


def _story(rng: random.Random, level: int) -> tuple[str, str]:
    thing = rng.choice(ITEMS)
    name = rng.choice(NAMES)
    count = rng.randint(5, 20 * level)
    sentences = [f"{name} has {count} {thing}."]
    for _ in range(level):
        move = rng.choice(("buy", "give", "double") if level > 2 else ("buy", "give"))
        if move == "buy":
            bags, each = rng.randint(2, 5), rng.randint(2, 4 + level)
            sentences.append(f"{name} buys {bags} bags with {each} {thing} in each.")
            count += bags * each
        elif move == "give" and count > 2:
            away = rng.randint(1, count - 1)
            sentences.append(f"{name} gives away {away} {thing}.")
            count -= away
        else:
            sentences.append(f"The number of {thing} {name} has doubles.")
            count *= 2
    return " ".join(sentences) + f" How many {thing} does {name} have now?", str(count)


KINDS: dict[str, Callable[[random.Random, int], tuple[str, str]]] = {
    "arithmetic": _arithmetic, "digits": _digits, "letters": _letters, "ordering": _ordering, "story": _story,
}


def builtin_set(seed: int = 0, levels: tuple[int, ...] = LEVELS) -> list[EvalItem]:
    """300 problems (60 per level), the same for a seed on every machine, interleaved by level and kind."""
    rng = random.Random(f"thinkcli-eval-{seed}")
    items: list[EvalItem] = []
    for round_number in range(PER_KIND_AND_LEVEL):
        for level in LEVELS:
            for kind, make in KINDS.items():
                prompt, answer = make(rng, level)  # drawn for every level, so a level's items do not depend on others
                if level not in levels:
                    continue
                checker = "number" if answer.lstrip("-").isdigit() else "auto"
                item_id = f"{kind}-{level}-{round_number + 1}"
                items.append(EvalItem(item_id, len(items) + 1, prompt, answer, checker, None, level, kind))
    return items
