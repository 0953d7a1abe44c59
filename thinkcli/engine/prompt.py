"""Turn a conversation into the prompt text a model expects, thinking on or off.

Real chat templates are Jinja; we render them in a sandbox with `enable_thinking` always passed
explicitly (some templates switch thinking off when it is undefined). After rendering, the
prompt is normalised so that generation starts either inside an open thinking block (thinking
on) or after a closed one (thinking off), whatever the template did.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from ..errors import ModelError
from ..registry import Family


@dataclass(frozen=True)
class RenderedPrompt:
    text: str
    thinking: bool  # does generation start inside a thinking block?


@lru_cache(maxsize=16)
def _compile(template: str) -> Any:
    from jinja2.exceptions import TemplateError
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)

    def raise_exception(message: str) -> None:
        raise TemplateError(message)

    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat_template(template: str, messages: list[dict[str, str]], enable_thinking: bool,
                         bos_token: str = "", eos_token: str = "") -> str:
    from jinja2.exceptions import TemplateError

    try:
        return _compile(template).render(
            messages=messages,
            add_generation_prompt=True,
            enable_thinking=enable_thinking,
            bos_token=bos_token,
            eos_token=eos_token,
            tools=None,
        )
    except TemplateError as exc:
        raise ModelError(f"the model's chat template failed: {exc}") from None


def _ends_inside_thinking(text: str, family: Family) -> bool:
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

    if thinking and family.thinking_instruction:
        messages = _with_instruction(messages, family.thinking_instruction)
    text = render_chat_template(chat_template, messages, thinking, bos_token, eos_token)
    inside = _ends_inside_thinking(text, family)
    if thinking and not inside:
        # The model would open the block itself (Qwen3); opening it for it makes caps exact.
        text = text + family.think_open + "\n"
    elif not thinking and inside:
        # The template always opens thinking (R1 distills): close it empty.
        text = text + "\n\n" + family.think_close + "\n\n"
    return RenderedPrompt(text, thinking)


def _with_instruction(messages: list[dict[str, str]], instruction: str) -> list[dict[str, str]]:
    if messages and messages[0]["role"] == "system":
        first = {"role": "system", "content": messages[0]["content"].rstrip() + "\n\n" + instruction}
        return [first, *messages[1:]]
    return [{"role": "system", "content": instruction}, *messages]
