"""Chat session state and slash commands; the terminal loop lives in cli/chat.py.

Each turn is classified on its own. The conversation is re-rendered through the template every
turn and the decoder evaluates only the tokens after the longest prefix it already has cached.
A conversation that outgrows the context drops its oldest turns (the system prompt stays).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

from .engine.events import Started
from .errors import ThinkError
from .pipeline import Outcome, Runtime, ask_events
from .plan import Overrides
from .registry import TIER_NAMES

COMMANDS = {
    "/help": "show this help",
    "/tier": "auto|instant|light|standard|deep — force a tier (auto: classify each turn)",
    "/budget": "N|auto — thinking token cap",
    "/think": "on|off — thinking on or off",
    "/thinking": "show|hide — show the thinking stream",
    "/model": "NAME — switch model (alias or .gguf path)",
    "/stats": "last turn's tier, reasons, tokens and cache reuse",
    "/clear": "forget the conversation (keeps the system prompt)",
    "/regen": "answer the last prompt again",
    "/save": "FILE — save as Markdown (.md) or JSON (.json)",
    "/load": "FILE — load a conversation saved as JSON",
    "/system": "TEXT — set the system prompt",
    "/bye": "leave (Ctrl-D works too)",
}


@dataclass
class TurnStats:
    tier: str
    reasons: tuple[str, ...]
    prompt_tokens: int
    reused_tokens: int
    thinking_tokens: int
    answer_tokens: int
    tokens_per_second: float | None
    interrupted: bool = False

    def line(self) -> str:
        evaluated = self.prompt_tokens - self.reused_tokens
        speed = f" · {self.tokens_per_second:.1f} tok/s" if self.tokens_per_second else ""
        return (f"{self.tier} · {self.thinking_tokens} thinking + {self.answer_tokens} answer tokens{speed} · "
                f"prompt {self.prompt_tokens} tokens: {self.reused_tokens} reused from cache, {evaluated} evaluated")


@dataclass
class ChatSession:
    runtime: Runtime
    overrides: Overrides = field(default_factory=Overrides)
    system: str | None = None
    show_thinking: bool = True
    messages: list[dict[str, str]] = field(default_factory=list)
    last: TurnStats | None = None
    notices: list[str] = field(default_factory=list)

    # -- turns ------------------------------------------------------------------------------
    def conversation(self, user_text: str) -> list[dict[str, str]]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return [*system, *self.messages, {"role": "user", "content": user_text}]

    def turn(self, text: str) -> Iterator[Any]:
        """Stream one reply's events; the turn enters history when it ends (or is interrupted)."""
        self._fit_context(text)
        started: Started | None = None
        outcome: Outcome | None = None
        answer_parts: list[str] = []
        from .engine.events import Answer

        try:
            for event in ask_events(self.runtime, text, self.overrides, messages=self.conversation(text), keep_cache=True):
                if isinstance(event, Started) and started is None:
                    started = event
                elif isinstance(event, Answer):
                    answer_parts.append(event.text)
                elif isinstance(event, Outcome):
                    outcome = event
                yield event
        except KeyboardInterrupt:
            partial = "".join(answer_parts).strip()
            self.messages += [{"role": "user", "content": text},
                              {"role": "assistant", "content": (partial + " [interrupted]").strip()}]
            if self.last is not None:
                self.last = replace(self.last, interrupted=True)
            raise
        assert outcome is not None
        self.messages += [{"role": "user", "content": text}, {"role": "assistant", "content": outcome.done.answer}]
        usage = outcome.done.usage
        self.last = TurnStats(
            tier=outcome.plan.difficulty.tier,
            reasons=outcome.plan.difficulty.reasons,
            prompt_tokens=usage.prompt_tokens,
            reused_tokens=started.reused_tokens if started else 0,
            thinking_tokens=usage.thinking_tokens,
            answer_tokens=usage.answer_tokens,
            tokens_per_second=outcome.tokens_per_second,
        )

    def _fit_context(self, text: str) -> None:
        """Drop the oldest exchanges until prompt + budget fits the context."""
        loaded = self.runtime.load(self.overrides.model or self.runtime.default_model)
        room = min(self.runtime.engine.n_ctx, loaded.model.info.n_ctx_train)
        reserve = (self.overrides.max_thinking or self.runtime.registry.tiers["deep"].max_thinking) + 512
        reserve = min(reserve, room // 2)
        while True:
            rendered = self.runtime.engine.render(loaded, self.conversation(text), thinking=True)
            size = len(loaded.model.prompt_tokens(rendered.text))
            if size + reserve <= room or not self.messages:
                break
            del self.messages[:2]
            self.notices.append("context full: dropped the oldest exchange")
        if size >= room:
            raise ThinkError(f"this message alone is {size} tokens; the context holds {room}")

    # -- slash commands ---------------------------------------------------------------------
    def command(self, line: str) -> str | None:
        """Run a slash command; returns text to show. Raises EOFError for /bye."""
        name, _, arg = line.strip().partition(" ")
        arg = arg.strip()
        handler: Callable[[str], str | None] | None = getattr(self, "_cmd_" + name[1:], None)
        if name not in COMMANDS or handler is None:
            return f"unknown command {name}: /help lists them"
        return handler(arg)

    def _cmd_help(self, arg: str) -> str:
        return "\n".join(f"{c:<10} {d}" for c, d in COMMANDS.items()) + '\nmulti-line: start with """ and end with """, or Esc+Enter for a newline'

    def _cmd_tier(self, arg: str) -> str:
        if arg not in ("auto", *TIER_NAMES):
            return f"usage: /tier auto|{'|'.join(TIER_NAMES)}"
        self.overrides = replace(self.overrides, tier=arg)
        return f"tier: {arg}"

    def _cmd_budget(self, arg: str) -> str:
        if arg == "auto":
            self.overrides = replace(self.overrides, max_thinking=None)
            return "thinking budget: by tier"
        if not arg.isdigit():
            return "usage: /budget N|auto (N a whole number of tokens)"
        self.overrides = replace(self.overrides, max_thinking=int(arg), min_thinking=None)
        return f"thinking budget: {arg} tokens"

    def _cmd_think(self, arg: str) -> str:
        if arg not in ("on", "off"):
            return "usage: /think on|off"
        self.overrides = replace(self.overrides, no_think=arg == "off")
        return f"thinking {arg}"

    def _cmd_thinking(self, arg: str) -> str:
        if arg not in ("show", "hide"):
            return "usage: /thinking show|hide"
        self.show_thinking = arg == "show"
        return f"thinking will be {'shown' if self.show_thinking else 'hidden'}"

    def _cmd_model(self, arg: str) -> str:
        if not arg:
            return f"model: {self.overrides.model or self.runtime.default_model} (usage: /model NAME)"
        try:
            loaded = self.runtime.load(arg)
        except ThinkError as exc:
            return str(exc)
        self.overrides = replace(self.overrides, model=arg)
        return f"model: {loaded.name} ({loaded.family.name})"

    def _cmd_stats(self, arg: str) -> str:
        if self.last is None:
            return "no turn yet"
        return self.last.line() + "\nwhy this tier: " + "; ".join(self.last.reasons)

    def _cmd_clear(self, arg: str) -> str:
        self.messages.clear()
        return "conversation cleared"

    def _cmd_regen(self, arg: str) -> str | None:
        return None  # the loop handles /regen: it needs to stream

    def pop_last_prompt(self) -> str | None:
        if len(self.messages) < 2:
            return None
        prompt = self.messages[-2]["content"]
        del self.messages[-2:]
        return prompt

    def _cmd_save(self, arg: str) -> str:
        if not arg:
            return "usage: /save FILE.md|FILE.json"
        path = Path(arg).expanduser()
        try:
            if path.suffix.lower() == ".json":
                path.write_text(json.dumps({"system": self.system, "messages": self.messages}, indent=2, ensure_ascii=False))
            else:
                lines = [f"_System: {self.system}_\n"] if self.system else []
                for m in self.messages:
                    lines.append(f"## {m['role'].capitalize()}\n\n{m['content']}\n")
                path.write_text("\n".join(lines))
        except OSError as exc:
            return f"cannot save {path}: {exc.strerror}"
        return f"saved {len(self.messages)} messages to {path}"

    def _cmd_load(self, arg: str) -> str:
        if not arg:
            return "usage: /load FILE.json"
        path = Path(arg).expanduser()
        try:
            data = json.loads(path.read_text())
            messages = data["messages"]
            if not all(isinstance(m, dict) and m.get("role") in ("user", "assistant") and isinstance(m.get("content"), str)
                       for m in messages):
                raise ValueError
        except (OSError, ValueError, KeyError, TypeError):
            return f"cannot load {path}: not a conversation saved with /save FILE.json"
        self.messages = messages
        self.system = data.get("system") or self.system
        return f"loaded {len(messages)} messages from {path}"

    def _cmd_system(self, arg: str) -> str:
        self.system = arg or None
        return "system prompt set" if arg else "system prompt cleared"

    def _cmd_bye(self, arg: str) -> str:
        raise EOFError
