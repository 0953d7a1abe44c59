"""The tiny reasoner's problems and the step-by-step traces it learns to think in.

Five kinds, in exactly the phrasings `think` users type (answers are plain integers):
`What is A + B?`, `What is A - B?` (A ≥ B), `What is A * d?` (d one digit),
`What is the sum of the digits of N?`, `How many times does the letter 'x' appear in 'WORD'?`.

A trace works the problem the way "Teaching Arithmetic to Small Transformers" (arXiv 2307.03381)
found small models learn fastest: digits least-significant first, one column per line, each line
holding everything the next one needs (the carry, the borrow, the running count, and the result's
digits so far, `r…`), so every step is local and the answer is a copy of the last line. Like real reasoning models it overthinks: every trace ends with a check line, so even `2+3`
thinks longer than its answer needs. Pure and seeded: the training script and `think eval` draw
from disjoint seeds.
"""

from __future__ import annotations

import random
import string
from dataclasses import dataclass

KINDS = ("add", "sub", "mul", "digitsum", "count")
WORDS_ALPHABET = string.ascii_lowercase


@dataclass(frozen=True)
class Problem:
    kind: str
    question: str
    answer: int
    trace: str
    hard: bool  # 5-7 digits (digit sums: 9-12), or a long word


def _number(rng: random.Random, digits: int) -> int:
    return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)


def _columns(number: int, width: int) -> list[int]:
    """The digits of `number`, least significant first, padded with zeros to `width`."""
    text = str(number)[::-1]
    return [int(text[i]) if i < len(text) else 0 for i in range(width)]


def add_problem(a: int, b: int) -> Problem:
    width = max(len(str(a)), len(str(b)))
    lines, carry, digits = [], 0, ""
    for i, (x, y) in enumerate(zip(_columns(a, width), _columns(b, width), strict=True), start=1):
        total = x + y + carry
        digits = str(total % 10) + digits
        lines.append(f"d{i} {x}+{y}+{carry}={total} r{digits}")
        carry = total // 10
    if carry:
        digits = str(carry) + digits
        lines.append(f"d{width + 1} 0+0+{carry}={carry} r{digits}")
    result = a + b
    lines += [f"so {result}", f"check {a}+{b}={result}"]
    return Problem("add", f"What is {a} + {b}?", result, "\n".join(lines), width >= 5)


def sub_problem(a: int, b: int) -> Problem:
    if b > a:
        a, b = b, a
    width = len(str(a))
    lines, borrow, digits = [], 0, ""
    for i, (x, y) in enumerate(zip(_columns(a, width), _columns(b, width), strict=True), start=1):
        value = x - y - borrow
        if value < 0:
            digits = str(value + 10) + digits
            lines.append(f"d{i} {x}-{y}-{borrow}+10={value + 10} b1 r{digits}")
            borrow = 1
        else:
            digits = str(value) + digits
            lines.append(f"d{i} {x}-{y}-{borrow}={value} b0 r{digits}")
            borrow = 0
    result = a - b
    lines += [f"so {result}", f"check {a}-{b}={result}"]
    return Problem("sub", f"What is {a} - {b}?", result, "\n".join(lines), width >= 5)


def mul_problem(a: int, d: int) -> Problem:
    width = len(str(a))
    lines, carry, digits = [], 0, ""
    for i, x in enumerate(_columns(a, width), start=1):
        total = x * d + carry
        digits = str(total % 10) + digits
        lines.append(f"d{i} {x}*{d}+{carry}={total} r{digits}")
        carry = total // 10
    if carry:
        digits = str(carry) + digits
        lines.append(f"d{width + 1} {carry} r{digits}")
    result = a * d
    lines += [f"so {result}", f"check {a}*{d}={result}"]
    return Problem("mul", f"What is {a} * {d}?", result, "\n".join(lines), width >= 5)


def digitsum_problem(n: int) -> Problem:
    lines, total = [], 0
    for digit in str(n):
        total += int(digit)
        lines.append(f"+{digit}={total}")
    lines += [f"so {total}", f"check {'+'.join(str(n))}={total}"]
    return Problem("digitsum", f"What is the sum of the digits of {n}?", total, "\n".join(lines), len(str(n)) >= 9)


def count_problem(letter: str, word: str) -> Problem:
    lines, count = [], 0
    for ch in word:
        if ch == letter:
            count += 1
            lines.append(f"{ch} yes {count}")
        else:
            lines.append(f"{ch} no {count}")
    lines += [f"so {count}", f"check {letter} in {word}: {count}"]
    return Problem("count", f"How many times does the letter '{letter}' appear in '{word}'?", count,
                   "\n".join(lines), len(word) >= 12)


def draw(rng: random.Random, kind: str, hard: bool | None = None) -> Problem:
    """One problem of `kind`; `hard` picks the size band (None: any size, as in training)."""
    def digits(easy: tuple[int, int], difficult: tuple[int, int], anything: tuple[int, int]) -> int:
        low, high = anything if hard is None else (difficult if hard else easy)
        return rng.randint(low, high)

    if kind == "add":
        return add_problem(_number(rng, digits((1, 2), (5, 7), (1, 7))), _number(rng, digits((1, 2), (5, 7), (1, 7))))
    if kind == "sub":
        a = _number(rng, digits((1, 2), (5, 7), (1, 7)))
        return sub_problem(a, rng.randint(0, a))
    if kind == "mul":
        return mul_problem(_number(rng, digits((1, 2), (5, 7), (1, 7))), rng.randint(0, 9))
    if kind == "digitsum":
        return digitsum_problem(_number(rng, digits((1, 2), (9, 12), (1, 12))))
    if kind == "count":
        length = digits((3, 6), (12, 20), (3, 20))
        word = "".join(rng.choice(WORDS_ALPHABET) for _ in range(length))
        letter = rng.choice(word) if rng.random() < 0.8 else rng.choice(WORDS_ALPHABET)
        return count_problem(letter, word)
    raise ValueError(kind)


def problems(seed: int, count: int, hard_share: float | None = None) -> list[Problem]:
    """`count` problems, kinds in turn; `hard_share` of them hard (None: sizes uniform, as in training)."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        hard = None if hard_share is None else rng.random() < hard_share
        out.append(draw(rng, KINDS[i % len(KINDS)], hard))
    return out
