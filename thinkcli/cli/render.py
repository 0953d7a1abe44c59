"""Turn engine events into terminal output: TTY (Rich), plain (pipes) or one JSON object.

stdout carries only the answer. Thinking, progress and stats go to stderr: dim with a live
token counter on a terminal, plain text when stderr is piped, nothing with --hide-thinking.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Any, TextIO

from ..engine.events import Answer, BudgetForced, Extended, Progress, SequenceDone, Thinking
from ..output.records import BudgetLowered, Outcome, ProbeReport, outcome_record
from ..scheduler.results import Planned, RunEvent
from ..text import Json


def is_terminal(stream: TextIO) -> bool:
    """Live counters, headers and stats are for terminals. NO_COLOR only removes colour (Rich
    reads it itself); TERM=dumb gets plain text."""
    return stream.isatty() and os.environ.get("TERM") != "dumb"


def stats_line(outcome: Outcome) -> str:
    usage = outcome.done.usage
    parts = [
        f"{outcome.plan.difficulty.tier}",
        f"{outcome.model} ({outcome.family})",
        f"{usage.thinking_tokens} thinking + {usage.answer_tokens} answer tokens",
    ]
    if usage.forced_tokens:
        parts.append(f"{usage.forced_tokens} forced")
    if outcome.tokens_per_second:
        parts.append(f"{outcome.tokens_per_second:.1f} tok/s")
    if outcome.done.first_token_s is not None:
        parts.append(f"first token {outcome.done.first_token_s:.2f}s")
    if outcome.probe:
        verdict = "kept, no thinking" if outcome.probe.kept else "unsure, escalated"
        parts.append(f"probe {outcome.probe.confidence} ({verdict})")
    if outcome.vote:
        counts = outcome.vote.counts
        parts.append("vote " + (", ".join(f"{a}×{c}" for a, c in counts.items()) or "none"))
    return " · ".join(parts)


@dataclass
class StreamRenderer:
    """Streams thinking to stderr and the answer to stdout as tokens arrive."""

    show_thinking: bool = True
    show_stats: bool = False
    stats_after: bool = True  # print the stats line after the answer (chat prints its own)
    out: TextIO = field(default_factory=lambda: sys.stdout)
    err: TextIO = field(default_factory=lambda: sys.stderr)
    _console: Any = None
    _live: Any = None
    _thinking: list[str] = field(default_factory=list)
    _budget: int = 0
    _tokens: int = 0
    _answer_started: bool = False
    _held_space: str = ""  # trailing whitespace of the answer, written only if more text follows
    _samples: dict[Hashable, Json] = field(default_factory=dict)
    _vote_mode: bool = False

    def __post_init__(self) -> None:
        self.tty = is_terminal(self.err)
        if self.tty:
            from rich.console import Console

            self._console = Console(file=self.err, highlight=False, soft_wrap=True)

    # -- dispatch ---------------------------------------------------------------------------
    def handle(self, item: RunEvent) -> None:
        match item:
            case Planned():
                self._planned(item)
            case Thinking() if self._vote_mode:
                self._sample_update(item.seq, tokens=item.tokens)
            case Thinking():
                self._thinking_text(item)
            case Answer() if not self._vote_mode:
                self._answer_text(item.text)
            case Progress() if self._vote_mode:
                self._sample_update(item.seq, tokens=item.thinking_tokens + item.answer_tokens,
                                    confidence=item.confidence)
            case Progress() if self._live is not None:
                self._tokens = item.thinking_tokens
                self._refresh()
            case BudgetForced() | Extended() if not self._vote_mode:
                self._note(item)
            case SequenceDone() if self._vote_mode:
                self._sample_update(item.seq, done=item.finish_reason, answer=item.vote_answer,
                                    confidence=item.confidence, tokens=item.usage.thinking_tokens + item.usage.answer_tokens)
            case Outcome():
                self._outcome(item)
            case _:
                pass

    def close(self) -> None:
        """Called on any exit (Ctrl-C too): whatever was shown stays shown, once."""
        if self._vote_mode:
            if self._live is not None:  # the sample table stays on screen as it is
                self._live.stop()
                self._live = None
        else:
            self._stop_live(print_thinking=True)
        if self._answer_started:
            self.out.write("\n")
            self.out.flush()
            self._answer_started = False

    # -- single answer -----------------------------------------------------------------------
    def _planned(self, planned: Planned) -> None:
        plan = planned.plan
        self._budget = plan.budget.max_thinking
        self._vote_mode = plan.samples > 1
        for note in planned.notes:
            if isinstance(note, BudgetLowered) and note.reason == "context":
                thinking, answer = note.max_thinking, note.max_answer
                self.err.write(f"[budget lowered to fit the context of {note.context} tokens: thinking "
                               f"{thinking[0]}→{thinking[1]}, answer {answer[0]}→{answer[1]}]\n")
            elif isinstance(note, ProbeReport) and self.show_thinking:
                if note.confidence is None:  # a server that sends no logprobs: nothing to judge by
                    self.err.write(f"[probe: no token probabilities to judge by: thinking at the "
                                   f"{note.escalated_to} tier]\n")
                else:
                    self.err.write(f"[probe: confidence {note.confidence} < {note.threshold} on "
                                   f"{note.tokens} answer tokens: thinking at the {note.escalated_to} tier]\n")
        if self.tty and self.show_thinking:
            budget = f"thinking ≤ {plan.budget.max_thinking}" if plan.budget.thinking else "no thinking"
            if plan.probe is not None and plan.probe.escalation is not None:
                budget = (f"probe first (no thinking; if unsure, thinking ≤ "
                          f"{plan.probe.escalation.budget.max_thinking})")
            strategy = f" · best of {plan.samples}" if self._vote_mode else ""
            from rich.text import Text  # model names and answers are text, never Rich markup

            self._console.print(Text.assemble((plan.difficulty.tier, "bold cyan"),
                                              f" · {planned.model} ({planned.family}) · {budget}{strategy}",
                                              style="dim"))

    def _thinking_text(self, item: Thinking) -> None:
        self._tokens = item.tokens
        if not self.show_thinking:
            return
        self._thinking.append(item.text)
        if not self.tty:
            self.err.write(item.text)
            self.err.flush()
            return
        if self._live is None:
            from rich.live import Live

            self._live = Live(console=self._console, refresh_per_second=8, transient=True)
            self._live.start()
        self._refresh()

    def _refresh(self) -> None:
        if self._live is None:
            return
        from rich.console import Group
        from rich.text import Text

        height = max(3, self._console.size.height - 3)
        width = max(20, self._console.size.width)
        lines = "".join(self._thinking).splitlines() or [""]
        wrapped: list[str] = []
        for line in lines[-height:]:
            wrapped.extend(line[i:i + width] for i in range(0, max(len(line), 1), width))
        counter = Text(f"thinking… {self._tokens}/{self._budget} tokens", style="cyan")
        self._live.update(Group(Text("\n".join(wrapped[-height:]), style="dim"), counter))

    def _stop_live(self, print_thinking: bool) -> None:
        if self._live is None:
            return
        self._live.stop()
        self._live = None
        if print_thinking:
            from rich.text import Text

            self._console.print(Text("".join(self._thinking).strip(), style="dim"))
            self._console.print(Text(f"╰ thought for {self._tokens}/{self._budget} tokens", style="dim cyan"))

    def _note(self, item: BudgetForced | Extended) -> None:
        if isinstance(item, BudgetForced):
            text = f"[budget: thinking ended ({item.reason}) at {item.at_tokens} tokens]"
        else:
            text = f"[min thinking: early close replaced by 'Wait' at {item.at_tokens} tokens]"
        if not self.show_thinking:
            return
        if self.tty:
            self._thinking.append(f"\n{text}\n")
            self._refresh()
        else:
            self.err.write(f"\n{text}\n")

    def _answer_text(self, text: str) -> None:
        if not self._answer_started:
            self._stop_live(print_thinking=True)
            if self._thinking and not self.tty and self.show_thinking:
                self.err.write("\n")
                self.err.flush()
            self._answer_started = True
            text = text.lstrip()
        body = text.rstrip()
        if body:
            self.out.write(self._held_space + body)
            self._held_space = text[len(body):]
        else:
            self._held_space += text
        self.out.flush()

    # -- best of N ---------------------------------------------------------------------------
    def _sample_update(self, seq: Hashable, **values: Any) -> None:
        state = self._samples.setdefault(seq, {"tokens": 0, "confidence": None, "answer": None, "done": None})
        state.update({k: v for k, v in values.items() if v is not None})
        if not (self.tty and self.show_thinking):
            return
        if self._live is None:
            from rich.live import Live

            self._live = Live(console=self._console, refresh_per_second=8, transient=False)
            self._live.start()
        from rich.table import Table
        from rich.text import Text

        table = Table.grid(padding=(0, 2))
        for key, s in sorted(self._samples.items(), key=lambda kv: str(kv[0])):
            conf = f"conf {s['confidence']:.2f}" if s["confidence"] is not None else "conf –"
            status = s["done"] or "running"
            cells = (f"sample {key[1] + 1 if isinstance(key, tuple) else key}", f"{s['tokens']} tok", conf,
                     f"answer: {s['answer'] or '…'}", str(status))
            table.add_row(*(Text(cell) for cell in cells), style="dim")
        self._live.update(table)

    def _outcome(self, outcome: Outcome) -> None:
        if self._vote_mode:
            if self._live is not None:
                self._live.stop()
                self._live = None
            vote = outcome.vote
            if self.show_thinking and outcome.done.thinking:
                if self.tty:
                    from rich.text import Text

                    self._console.print(Text(outcome.done.thinking, style="dim"))
                else:
                    self.err.write(outcome.done.thinking + "\n")
            summary = (f"vote: {vote.winner!s} ({vote.method}; {vote.counts})" if vote is not None
                       else "vote: None (None; None)")
            if self.tty:
                from rich.text import Text

                self._console.print(Text(summary, style="dim cyan"))
            elif self.show_stats:
                self.err.write(summary + "\n")
            self._answer_text(outcome.done.answer)
        self._stop_live(print_thinking=True)
        if self._answer_started:
            self.out.write("\n")
            self.out.flush()
            self._answer_started = False
        if (self.tty or self.show_stats) and self.stats_after:
            line = stats_line(outcome)
            if self.tty:
                self._console.print(line, style="dim", markup=False, highlight=False)
            else:
                self.err.write(line + "\n")
            self.err.flush()


@dataclass
class JsonRenderer:
    """--json: nothing streams; one object on stdout at the end."""

    out: TextIO = field(default_factory=lambda: sys.stdout)

    def handle(self, item: RunEvent) -> None:
        if isinstance(item, Outcome):
            self.out.write(json.dumps(outcome_record(item), ensure_ascii=False) + "\n")
            self.out.flush()

    def close(self) -> None:
        pass
