"""Turn a conversation into the prompt text a model expects, thinking on or off.

Real chat templates are Jinja; we render them in a sandbox with `enable_thinking` always passed
explicitly (some templates switch thinking off when it is undefined). After rendering, the
prompt is normalised so that generation starts either inside an open thinking block (thinking
on) or after a closed one (thinking off), whatever the template did.
"""

from __future__ import annotations

import functools
import re
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..errors import ModelError
from .family import Family


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    thinking: bool  # does generation start inside a thinking block?


# A chat template comes from a downloaded file: render it as untrusted code. Beyond Jinja's
# sandbox (no attribute access to internals), bound what a hostile template can spend: loop
# iterations, the size of strings and lists it builds, the size of its output, and wall time.
TEMPLATE_SECONDS = 2.0
TEMPLATE_ITERATIONS = 1_000_000  # loop iterations (lines the template's own code runs)
TEMPLATE_MAX_ITEMS = 4_000_000  # characters of a string (or items of a list) built by `*` or a method
TEMPLATE_OUTPUT_SLACK = 1_000_000  # output allowed beyond 4x the messages' own size


class _Budget(threading.local):
    deadline = 0.0
    iterations = 0
    steps = 0

    def check(self, iterations: int = 0) -> None:
        from jinja2.sandbox import SecurityError

        self.iterations += iterations
        if self.iterations > TEMPLATE_ITERATIONS:
            raise SecurityError(f"more than {TEMPLATE_ITERATIONS} loop iterations")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"rendering took more than {TEMPLATE_SECONDS:g} s")


_budget = _Budget()


def _trace_template(frame: Any, event: str, arg: Any) -> Any:
    """While a template renders, every line of the template's own compiled code counts as a step:
    an empty `{% for %}` body is counted (and the clock checked) on each pass, not only the loops
    that call something. Other Python code is left untraced (it is bounded by the values' sizes)."""
    return _count_steps if frame.f_code.co_filename == "<template>" else None


def _count_steps(frame: Any, event: str, arg: Any) -> Any:
    if event == "line":
        _budget.steps += 1
        if _budget.steps & 1023 == 0:
            _budget.check(1024)
    return _count_steps


# a printf width or precision of 7 digits or more, or one taken from the arguments (`%*d`)
_WIDE_FORMAT = re.compile(r"%[-#0 +]*(?:\d{7,}|\*)|%[-#0 +]*\d*\.(?:\d{7,}|\*)|\{[^{}]*:[^{}]*\d{7,}[^{}]*\}")


def _format_check(template: Any) -> None:
    """`"%300000000d" % 1` or `"{:300000000}".format(1)` would build a 300 MB string in one C call."""
    from jinja2.sandbox import SecurityError

    if isinstance(template, str) and _WIDE_FORMAT.search(template):
        raise SecurityError("a format width or precision above 999999")


def _too_big(size: int) -> None:
    from jinja2.sandbox import SecurityError

    if size > TEMPLATE_MAX_ITEMS:
        raise SecurityError(f"a value of more than {TEMPLATE_MAX_ITEMS} items")


def _size_check(value: Any, times: Any = 1) -> None:
    if isinstance(value, (str, bytes, list, tuple)) and isinstance(times, int) and not isinstance(times, bool):
        _too_big(len(value) * times)


def _checked(value: Any) -> Any:
    """Every value a template reads passes here: a string doubled in a loop is stopped early."""
    _budget.check()
    _size_check(value)
    return value


def _limited(function: Any) -> Any:
    """A filter or test that checks its arguments and its result (keeps Jinja's pass_* markers)."""

    @functools.wraps(function)
    def limited(*args: Any, **kwargs: Any) -> Any:
        _budget.check()
        for value in (*args, *kwargs.values()):
            _size_check(value)
            if isinstance(value, int) and not isinstance(value, bool):
                _too_big(value)
        return _checked(function(*args, **kwargs))

    return limited


@lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

    class LimitedSandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset(["*", "**", "+", "%"])

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _budget.check()
            if operator == "**" and isinstance(right, (int, float)) and abs(right) > 256:
                raise SecurityError("an exponent above 256")
            if operator == "*":
                _size_check(left, right)
                _size_check(right, left)
            if operator == "%":
                _format_check(left)
            return _checked(super().call_binop(context, operator, left, right))

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            _budget.check()
            for value in (*args, *kwargs.values()):
                _size_check(value)
                if isinstance(value, int) and not isinstance(value, bool):  # 'x'.center(10**9), ljust, ...
                    _too_big(value)
            return _checked(super().call(__context, __obj, *args, **kwargs))

        def getattr(self, obj: Any, attribute: str) -> Any:
            if attribute in ("format", "format_map"):  # '{:300000000}'.format(1)
                _format_check(obj)
            return _checked(super().getattr(obj, attribute))

        def getitem(self, obj: Any, argument: Any) -> Any:
            return _checked(super().getitem(obj, argument))

    env = LimitedSandbox(trim_blocks=True, lstrip_blocks=True)
    filters = dict(env.filters)
    original_format = filters["format"]

    def checked_format(value: Any, *args: Any, **kwargs: Any) -> Any:  # "%300000000d"|format(1)
        _format_check(value)
        return original_format(value, *args, **kwargs)

    filters["format"] = checked_format
    env.filters = {name: _limited(f) for name, f in filters.items()}  # indent(10**9), center, ...
    env.tests = {name: _limited(f) for name, f in env.tests.items()}

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    def limited_range(*args: int) -> range:
        numbers = range(*args)
        _budget.check(len(numbers))
        return numbers

    env.globals["raise_exception"] = raise_exception
    env.globals["range"] = limited_range
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat_template(template: str, messages: list[dict[str, str]], enable_thinking: bool,
                         bos_token: str = "", eos_token: str = "") -> str:
    from jinja2.exceptions import TemplateError

    limit = 4 * sum(len(m.get("content") or "") for m in messages) + TEMPLATE_OUTPUT_SLACK
    _budget.deadline = time.monotonic() + TEMPLATE_SECONDS
    _budget.iterations = _budget.steps = 0
    parts: list[str] = []
    size = 0
    previous = sys.gettrace()
    sys.settrace(_trace_template)  # this thread only; taken off below, whatever happens
    try:
        compiled = _compile(template)
        stream = compiled.generate(
            messages=messages,
            add_generation_prompt=True,
            enable_thinking=enable_thinking,
            thinking=enable_thinking,  # IBM Granite's switch
            bos_token=bos_token,
            eos_token=eos_token,
            tools=None,
        )
        for piece in stream:
            size += len(piece)
            if size > limit:
                raise ModelError(f"the model's chat template failed: its output passed {limit} characters")
            parts.append(piece)
    except TemplateError as exc:  # SecurityError is a TemplateError too
        raise ModelError(f"the model's chat template failed: {exc}") from None
    except (RecursionError, MemoryError, OverflowError, TypeError, ValueError, ArithmeticError) as exc:
        raise ModelError(f"the model's chat template failed: {type(exc).__name__.lower()}: {str(exc)[:200]}") from None
    finally:
        sys.settrace(previous)
    return "".join(parts)


def ends_inside_thinking(text: str, family: Family) -> bool:
    tail = text.rstrip()
    opened = tail.rfind(family.think_open)
    return opened >= 0 and tail.rfind(family.think_close) < opened


def _plain(messages: list[dict[str, str]], family: Family, thinking: bool) -> str:
    """A question/answer layout for base models: they continue text, they do not chat."""
    parts: list[str] = []
    for message in messages:
        role, content = message["role"], message["content"].strip()
        if role == "system":
            parts.append(content + "\n")
        elif role == "user":
            parts.append(f"Question: {content}")
        else:
            parts.append(f"Answer: {content}\n")
    text = "\n".join(parts)
    if thinking:
        return text + f"\nLet's think step by step.\n{family.think_open}\n"
    return text + family.answer_prefix


def render_prompt(messages: list[dict[str, str]], family: Family, thinking: bool,
                  chat_template: str | None, bos_token: str = "", eos_token: str = "") -> RenderedPrompt:
    if family.plain_template or not chat_template:  # no template: base-model layout
        return RenderedPrompt(_plain(messages, family, thinking), thinking)

    if family.thinking_instruction:
        # On or off, the same instruction heads the conversation (off closes the block empty, below), so a
        # prompt thought over after the probe, or the next chat turn, shares every token up to the answer.
        messages = _with_instruction(messages, family.thinking_instruction)
    try:
        text = render_chat_template(chat_template, messages, thinking, bos_token, eos_token)
    except ModelError:
        if not messages or messages[0]["role"] != "system":
            raise
        # Some templates refuse a system role (Gemma 2): say it at the start of the first user turn.
        text = render_chat_template(chat_template, _system_into_user(messages), thinking, bos_token, eos_token)
    inside = ends_inside_thinking(text, family)
    if thinking and not inside:
        # The model would open the block itself (Qwen3); opening it for it makes caps exact.
        text = text + family.think_open + "\n"
    elif not thinking and inside:
        # The template always opens thinking (R1 distills): close it empty.
        text = text + "\n\n" + family.think_close + "\n\n"
    elif not thinking and family.thinking_instruction:
        # A prompted model was told to think in tags: an empty block says "not this time".
        text = text + family.think_open + "\n\n" + family.think_close + "\n\n"
    return RenderedPrompt(text, thinking)


def render_raw(text: str, family: Family, thinking: bool) -> RenderedPrompt:
    """A text completion's prompt, untouched but for the thinking block: opened when thinking is on
    (unless the text already is inside one), closed empty when it is off and the text left one open."""
    inside = ends_inside_thinking(text, family)
    if thinking and not inside:
        text = text + family.think_open + "\n"
    elif not thinking and inside:
        text = text + "\n\n" + family.think_close + "\n\n"
    return RenderedPrompt(text, thinking)


def _with_instruction(messages: list[dict[str, str]], instruction: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": messages[0]["content"].rstrip() + "\n\n" + instruction}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]


def _system_into_user(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    system, rest = messages[0]["content"], list(messages[1:])
    for i, message in enumerate(rest):
        if message["role"] == "user":
            rest[i] = {"role": "user", "content": system.rstrip() + "\n\n" + message["content"]}
            return rest
    return [{"role": "user", "content": system}, *rest]
