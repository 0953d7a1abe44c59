"""`think chat`: an interactive session on a warm KV cache (prompt_toolkit REPL)."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from typing import Annotated, Optional

import typer

from ..text import clean_text
from . import Command
from .ask import gpu_layers_value
from .options import GpuLayersOpt, MaxThinkingOpt, ModelOpt, NoLogOpt, NoProbeOpt, NoThinkOpt, TierChoice, TierOpt

PROMPT = ">>> "


def _line_reader(history_path) -> Callable[[str], str]:
    """prompt_toolkit on a terminal (history, completion, Esc+Enter); plain lines otherwise."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        def read_plain(prompt: str) -> str:
            if sys.stdin.isatty():  # piped input gets no prompts: stdout carries only answers
                sys.stderr.write(prompt)
                sys.stderr.flush()
            raw = sys.stdin.buffer.readline()
            if not raw:
                raise EOFError
            return raw.decode("utf-8", errors="replace").rstrip("\n").rstrip("\r")

        return read_plain

    from prompt_toolkit import PromptSession
    from prompt_toolkit.completion import WordCompleter
    from prompt_toolkit.history import FileHistory
    from prompt_toolkit.key_binding import KeyBindings

    from ..frontends.chat import COMMANDS

    history_path.parent.mkdir(parents=True, exist_ok=True)
    bindings = KeyBindings()

    @bindings.add("escape", "enter")
    def _newline(event) -> None:  # Esc+Enter inserts a newline instead of sending
        event.current_buffer.insert_text("\n")

    session: PromptSession = PromptSession(
        history=FileHistory(str(history_path)),
        completer=WordCompleter(list(COMMANDS), sentence=True),
        key_bindings=bindings,
    )
    return lambda prompt: session.prompt(prompt)


def read_message(read: Callable[[str], str]) -> str:
    """One message: a line, or a \"\"\" … \"\"\" block over several lines."""
    line = read(PROMPT)
    if not line.lstrip().startswith('"""'):
        return line
    body = line.lstrip()[3:]
    if body.rstrip().endswith('"""') and body.strip() != "":
        return body.rstrip()[:-3]
    lines = [body] if body else []
    while True:
        more = read("... ")
        if more.rstrip().endswith('"""'):
            lines.append(more.rstrip()[:-3])
            return "\n".join(lines).strip("\n")
        lines.append(more)


def chat(
    model: ModelOpt = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt.")] = None,
    tier: TierOpt = TierChoice.auto,
    max_thinking: MaxThinkingOpt = None,
    no_think: NoThinkOpt = False,
    hide_thinking: Annotated[bool, typer.Option("--hide-thinking", help="Do not show the thinking.")] = False,
    gpu_layers: GpuLayersOpt = None,
    no_probe: NoProbeOpt = False,
    no_log: NoLogOpt = False,
) -> None:
    """Chat interactively; each turn gets its own tier.

    /help lists the slash commands; Ctrl-C stops a reply, Ctrl-D leaves."""
    from ..errors import ThinkError
    from ..frontends.chat import ChatSession
    from ..policy.plan import Overrides
    from ..scheduler.runtime import Runtime
    from .render import StreamRenderer

    overrides = Overrides(tier=tier.value, model=model, max_thinking=max_thinking, no_think=no_think,
                          probe=not no_probe).validate()
    runtime = Runtime.create(gpu_layers=gpu_layers_value(gpu_layers), log=not no_log)
    session = ChatSession(runtime, overrides, system=system, show_thinking=not hide_thinking)
    session.runtime.load(overrides.model or runtime.default_model)  # fail now, not at the first turn
    read = _line_reader(runtime.paths.history_file)
    err = sys.stderr
    err.write(f"think chat · {overrides.model or runtime.default_model} · /help for commands, Ctrl-D to leave\n")
    regens = 0
    while True:
        try:
            text = read_message(read)
        except KeyboardInterrupt:
            err.write("(Ctrl-C stops a reply; /bye or Ctrl-D leaves)\n")
            continue
        except EOFError:
            err.write("bye\n")
            return
        if not text.strip():
            continue
        text = clean_text(text)
        seed_offset = 0
        session.popped = []
        if text.strip().startswith("/"):
            if text.strip().split()[0] == "/regen":
                text = session.pop_last_prompt() or ""
                if not text:
                    err.write("nothing to regenerate\n")
                    continue
                regens += 1
                seed_offset = regens  # a new seed each time: a regeneration is a new draw
            else:
                try:
                    reply = session.command(text)
                except EOFError:
                    err.write("bye\n")
                    return
                if reply:
                    err.write(reply + "\n")
                continue
        renderer = StreamRenderer(show_thinking=session.show_thinking, stats_after=False)
        turn = session.turn(text, seed_offset)
        try:
            for event in turn:
                renderer.handle(event)
        except KeyboardInterrupt:
            with contextlib.suppress(KeyboardInterrupt):  # a ^C in the renderer: the turn keeps its partial
                turn.throw(KeyboardInterrupt())  # reply as for one inside it (a finished turn re-raises at once)
            renderer.close()
            err.write("[interrupted: the partial reply is kept in history]\n")
            continue
        except ThinkError as exc:
            renderer.close()
            session.restore_popped()  # a failed /regen keeps the exchange it was to replace
            err.write(f"error: {exc} (the conversation is kept)\n")
            continue
        except Exception as exc:  # a bug must not end the session and lose the conversation
            if os.environ.get("THINK_DEBUG"):
                raise
            renderer.close()
            session.restore_popped()
            err.write(f"error: internal error ({exc}); the conversation is kept, THINK_DEBUG=1 shows details\n")
            continue
        finally:
            for notice in session.notices:
                err.write(f"[{notice}]\n")
            session.notices.clear()
        if session.last is not None:
            err.write(session.last.line() + "\n")
        err.flush()


def register(app: typer.Typer) -> None:
    app.command("chat", cls=Command)(chat)
