"""Chat session state and slash commands; the terminal loop lives in cli/chat.py.

Each turn is classified on its own. The conversation is re-rendered through the template every
turn and the decoder evaluates only the tokens after the longest prefix it already has cached.
A conversation that outgrows the context drops its oldest turns (the system prompt stays).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..engine.events import Answer, Started
from ..errors import ThinkError
from ..output.records import Outcome
from ..policy.plan import Overrides, make_plan
from ..policy.tiers import TIER_NAMES
from ..scheduler.results import Failed, Planned, RunEvent, Task
from ..scheduler.run import Scheduler
from ..scheduler.runtime import Runtime
from ..text import clean_json

LOAD_LIMIT = 16_000_000  # bytes: a saved conversation, not a disk image

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
    "/system": "TEXT|clear — set, show (no text) or clear the system prompt",
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
        if self.interrupted:
            return f"{self.tier} · interrupted (partial reply kept) · prompt {self.prompt_tokens} tokens"
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
    popped: list[dict[str, str]] = field(default_factory=list)  # what /regen took out, until its turn ends

    # -- turns ------------------------------------------------------------------------------
    def conversation(self, user_text: str) -> tuple[dict[str, str], ...]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return (*system, *self.messages, {"role": "user", "content": user_text})

    def turn(self, text: str, seed_offset: int = 0) -> Generator[RunEvent, None, None]:
        """Stream one reply's events; the turn enters history when it ends (or is interrupted).

        The plan comes first; the scheduler then fits the conversation to *that* plan's budget,
        dropping the oldest exchanges if it must. A message that cannot fit at all is refused
        and the history stays as it was."""
        overrides = self.overrides
        if seed_offset:
            overrides = replace(overrides, seed=(overrides.seed or 0) + seed_offset)
        runtime = self.runtime
        plan = make_plan(text, runtime.registry, overrides, runtime.default_model)  # overrides.model first
        scheduler = Scheduler(runtime, max_samples=plan.samples, source="chat")
        task = Task("chat", text, plan, self.conversation(text), keep_cache=True, drop_history=True)
        started: Started | None = None
        outcome: Outcome | None = None
        answer_parts: list[str] = []
        self.last = None
        try:
            for event in scheduler.run([task]):
                match event:
                    case Failed():
                        raise ThinkError(event.error)
                    case Planned() if event.dropped_messages:
                        del self.messages[:event.dropped_messages]
                        self.notices.append("context full: dropped the oldest exchange"
                                            + ("s" if event.dropped_messages > 2 else ""))
                    case Started() if started is None:
                        started = event
                    case Answer():
                        answer_parts.append(event.text)
                    case Outcome():
                        outcome = event
                yield event
        except KeyboardInterrupt:  # inside the turn, or thrown in by a consumer it reached (the renderer)
            partial = "".join(answer_parts).strip()
            self.messages += [{"role": "user", "content": text},
                              {"role": "assistant", "content": (partial + " [interrupted]").strip()}]
            self.last = TurnStats(tier=plan.difficulty.tier, reasons=plan.difficulty.reasons,
                                  prompt_tokens=started.prompt_tokens if started else 0,
                                  reused_tokens=started.reused_tokens if started else 0,
                                  thinking_tokens=0, answer_tokens=0, tokens_per_second=None, interrupted=True)
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
        if not arg:
            return f"tier: {self.overrides.tier} (usage: /tier auto|{'|'.join(TIER_NAMES)})"
        if arg not in ("auto", *TIER_NAMES):
            return f"usage: /tier auto|{'|'.join(TIER_NAMES)}"
        self.overrides = replace(self.overrides, tier=arg)
        return f"tier: {arg}"

    def _cmd_budget(self, arg: str) -> str:
        if not arg:
            current = self.overrides.max_thinking
            return f"thinking budget: {'by tier' if current is None else f'{current} tokens'} (usage: /budget N|auto)"
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
        """Take the last exchange out to answer its prompt again (`restore_popped` puts it back if that fails)."""
        if len(self.messages) < 2:
            return None
        prompt = self.messages[-2]["content"]
        self.popped = self.messages[-2:]
        del self.messages[-2:]
        return prompt

    def restore_popped(self) -> bool:
        """A /regen that failed: the exchange it took out goes back, as the message says."""
        popped, self.popped = self.popped, []
        self.messages += popped
        return bool(popped)

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
            if path.exists() and not path.is_dir() and not path.is_file():  # a FIFO or device would block or never end
                return f"cannot load {path}: not a regular file"
            if path.is_file() and path.stat().st_size > LOAD_LIMIT:
                return f"cannot load {path}: larger than {LOAD_LIMIT // 1_000_000} MB"
            data = clean_json(json.loads(path.read_bytes().decode("utf-8", errors="replace")))
        except FileNotFoundError:
            return f"cannot load {path}: no such file"
        except IsADirectoryError:
            return f"cannot load {path}: a directory"
        except OSError as exc:
            return f"cannot load {path}: {exc.strerror}"
        except (ValueError, RecursionError):
            return f"cannot load {path}: not JSON (save a conversation with /save FILE.json)"
        problem = conversation_problem(data)
        if problem or not isinstance(data, dict):
            return f"cannot load {path}: {problem}"
        self.messages = [{"role": m["role"], "content": m["content"]} for m in data["messages"]]
        self.system = data.get("system") or self.system
        return f"loaded {len(self.messages)} messages from {path}"

    def _cmd_system(self, arg: str) -> str:
        if not arg:
            current = f'"{self.system}"' if self.system else "none"
            return f"system prompt: {current} (usage: /system TEXT, or /system clear)"
        if arg == "clear":
            self.system = None
            return "system prompt cleared"
        self.system = arg
        return "system prompt set"

    def _cmd_bye(self, arg: str) -> str:
        raise EOFError


def conversation_problem(data: object) -> str | None:
    """Why a loaded JSON is not a conversation saved by /save, or None if it is one."""
    if not isinstance(data, dict):
        return "not a conversation (expected an object with 'messages')"
    system = data.get("system")
    if system is not None and not isinstance(system, str):
        return "'system' must be a string or null"
    messages = data.get("messages")
    if not isinstance(messages, list):
        return "'messages' must be a list"
    for number, message in enumerate(messages, start=1):
        if not isinstance(message, dict) or message.get("role") not in ("user", "assistant") \
                or not isinstance(message.get("content"), str):
            return f"message {number} needs a role (user or assistant) and a string content"
    return None
