"""The tiny reasoner's problems and the step-by-step traces it learns to think in.

Five kinds, in exactly the phrasings `think` users type (answers are plain integers):
`What is A + B?`, `What is A - B?` (A ≥ B), `What is A * d?` (d one digit),
`What is the sum of the digits of N?`, `How many times does the letter 'x' appear in 'WORD'?`.

A trace works the problem the way "Teaching Arithmetic to Small Transformers" (arXiv 2307.03381)
found small models learn fastest: digits least-significant first, one column per line, each line
holding everything the next one needs (the carry, the borrow, the running count, and the result's
digits so far, `r…`), so every step is local and the answer is a copy of the last line. Like real reasoning models it
overthinks: after `so ANSWER` every trace verifies it with a second pass as long as the first (a sum
by subtracting back, a difference by adding back, a product, digit sum or count worked once more),
so even `2+3` thinks twice as long as its answer needs, and a policy that stops thinking once the
answer is known saves half of every trace. Pure and seeded: the training script and `think eval` draw
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


def _add_lines(a: int, b: int, label: str = "d") -> tuple[list[str], str]:
    """The columns of a + b, least significant first, and the result's digits as the last line holds them."""
    width = max(len(str(a)), len(str(b)))
    lines, carry, digits = [], 0, ""
    for i, (x, y) in enumerate(zip(_columns(a, width), _columns(b, width), strict=True), start=1):
        total = x + y + carry
        digits = str(total % 10) + digits
        lines.append(f"{label}{i} {x}+{y}+{carry}={total} r{digits}")
        carry = total // 10
    if carry:
        digits = str(carry) + digits
        lines.append(f"{label}{width + 1} 0+0+{carry}={carry} r{digits}")
    return lines, digits


def _sub_lines(a: int, b: int, label: str = "d") -> tuple[list[str], str]:
    """The columns of a - b (a ≥ b) with their borrows, least significant first."""
    width = len(str(a))
    lines, borrow, digits = [], 0, ""
    for i, (x, y) in enumerate(zip(_columns(a, width), _columns(b, width), strict=True), start=1):
        value = x - y - borrow
        if value < 0:
            digits = str(value + 10) + digits
            lines.append(f"{label}{i} {x}-{y}-{borrow}+10={value + 10} b1 r{digits}")
            borrow = 1
        else:
            digits = str(value) + digits
            lines.append(f"{label}{i} {x}-{y}-{borrow}={value} b0 r{digits}")
            borrow = 0
    return lines, digits


def _mul_lines(a: int, d: int, label: str = "d") -> list[str]:
    width = len(str(a))
    lines, carry, digits = [], 0, ""
    for i, x in enumerate(_columns(a, width), start=1):
        total = x * d + carry
        digits = str(total % 10) + digits
        lines.append(f"{label}{i} {x}*{d}+{carry}={total} r{digits}")
        carry = total // 10
    if carry:
        digits = str(carry) + digits
        lines.append(f"{label}{width + 1} {carry} r{digits}")
    return lines


def add_problem(a: int, b: int) -> Problem:
    """Checked by subtracting b from the sum, which must give a back."""
    lines, _ = _add_lines(a, b)
    result = a + b
    check, _ = _sub_lines(result, b, "c")
    lines += [f"so {result}", f"check {result}-{b}", *check, f"{a}+{b}={result} ok"]
    return Problem("add", f"What is {a} + {b}?", result, "\n".join(lines), max(len(str(a)), len(str(b))) >= 5)


def sub_problem(a: int, b: int) -> Problem:
    """Checked by adding b back to the difference, which must give a."""
    if b > a:
        a, b = b, a
    lines, _ = _sub_lines(a, b)
    result = a - b
    check, _ = _add_lines(result, b, "c")
    lines += [f"so {result}", f"check {result}+{b}", *check, f"{a}-{b}={result} ok"]
    return Problem("sub", f"What is {a} - {b}?", result, "\n".join(lines), len(str(a)) >= 5)


def mul_problem(a: int, d: int) -> Problem:
    """Checked by working the columns once more."""
    result = a * d
    lines = [*_mul_lines(a, d), f"so {result}", f"check {a}*{d}", *_mul_lines(a, d, "c"), f"{a}*{d}={result} ok"]
    return Problem("mul", f"What is {a} * {d}?", result, "\n".join(lines), len(str(a)) >= 5)


def _running_sum(digits: str) -> list[str]:
    lines, total = [], 0
    for digit in digits:
        total += int(digit)
        lines.append(f"+{digit}={total}")
    return lines


def digitsum_problem(n: int) -> Problem:
    """Summed left to right, checked right to left."""
    total = sum(int(d) for d in str(n))
    lines = [*_running_sum(str(n)), f"so {total}", "check", *_running_sum(str(n)[::-1]), f"{total} ok"]
    return Problem("digitsum", f"What is the sum of the digits of {n}?", total, "\n".join(lines), len(str(n)) >= 9)


def _count_lines(letter: str, word: str) -> list[str]:
    """A line a letter, led by the two before it (the next letter is the one that follows those two
    in the word, a lookup a small model learns: a lone letter repeats too often to find its place),
    then the asked letter, so the yes/no compares two letters within the line, as a column line
    shows both digits it adds."""
    lines, count = [], 0
    for i, ch in enumerate(word):
        hit = ch == letter
        count += hit
        lines.append(f"{word[max(0, i - 2):i + 1]} {letter} {'yes' if hit else 'no'} {count}")
    return lines


def count_problem(letter: str, word: str) -> Problem:
    """Counted letter by letter, checked by counting once more."""
    count = word.count(letter)
    lines = [*_count_lines(letter, word), f"so {count}", "check", *_count_lines(letter, word),
             f"{letter} in {word}: {count} ok"]
    return Problem("count", f"How many times does the letter '{letter}' appear in '{word}'?", count,
                   "\n".join(lines), len(word) >= 12)


# The sizes of each band: (easy, middle, hard, any). The middle band lies between the two the eval set
# weighs (3-4 digits, 5-8-digit digit sums, 7-11-letter words): too big to do without a trace, small
# enough that a model sure of its easy answers may be wrongly sure of these too.
_NUMBER_DIGITS = ((1, 2), (3, 4), (5, 7), (1, 7))
_DIGITSUM_DIGITS = ((1, 2), (5, 8), (9, 12), (1, 12))
_WORD_LETTERS = ((3, 6), (7, 11), (12, 20), (3, 20))


def draw(rng: random.Random, kind: str, hard: bool | None = None, middle: bool = False) -> Problem:
    """One problem of `kind`; `hard` picks the size band (None: any size, as in training), `middle` the
    band between easy and hard (it overrides `hard`)."""
    def digits(bands: tuple[tuple[int, int], ...]) -> int:
        low, high = bands[1] if middle else bands[3] if hard is None else bands[2] if hard else bands[0]
        return rng.randint(low, high)

    if kind == "add":
        return add_problem(_number(rng, digits(_NUMBER_DIGITS)), _number(rng, digits(_NUMBER_DIGITS)))
    if kind == "sub":
        a = _number(rng, digits(_NUMBER_DIGITS))
        return sub_problem(a, rng.randint(0, a))
    if kind == "mul":
        return mul_problem(_number(rng, digits(_NUMBER_DIGITS)), rng.randint(0, 9))
    if kind == "digitsum":
        return digitsum_problem(_number(rng, digits(_DIGITSUM_DIGITS)))
    if kind == "count":
        length = digits(_WORD_LETTERS)
        word = "".join(rng.choice(WORDS_ALPHABET) for _ in range(length))
        letter = rng.choice(word) if rng.random() < 0.8 else rng.choice(WORDS_ALPHABET)
        return count_problem(letter, word)
    raise ValueError(kind)


def problems(seed: int, count: int, hard_share: float | None = None) -> list[Problem]:
    """`count` problems, kinds in turn; `hard_share` of them hard (None: sizes uniform, as in training)."""
    return [problem for _, problem in banded_problems(seed, count, hard_share)]


def banded_problems(seed: int, count: int, hard_share: float | None = None,
                    middle_share: float = 0.0) -> list[tuple[str, Problem]]:
    """`count` problems with their bands (`easy`, `middle`, `hard`; `any` where sizes are uniform), kinds
    in turn: `hard_share` of them hard, `middle_share` from the middle band, the rest easy."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        band = "any"
        if hard_share is not None:
            roll = rng.random()
            band = "hard" if roll < hard_share else "middle" if roll < hard_share + middle_share else "easy"
        problem = draw(rng, KINDS[i % len(KINDS)], None if band == "any" else band == "hard", band == "middle")
        out.append((band, problem))
    return out
