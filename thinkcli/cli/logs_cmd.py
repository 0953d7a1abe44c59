"""`think logs`: the runs that were logged, and what thinking cost per tier (the ledger)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ..text import Json, printable
from . import Command, Group
from .options import JsonOpt

logs_app = typer.Typer(cls=Group, help="Show logged runs; `logs stats`: thinking spent per tier.",
                       no_args_is_help=False, invoke_without_command=True)

TierFilter = Annotated[Optional[str], typer.Option("--tier", help="Only runs of this tier.")]
ModelFilter = Annotated[Optional[str], typer.Option("--model", "-m", help="Only runs of this model.")]
SourceFilter = Annotated[Optional[str], typer.Option("--source", help="Only runs of ask, chat, batch, serve or eval.")]


def _log_path():
    from ..config import Paths

    return Paths.resolve().log_file


def _check_tier(tier: str | None) -> None:
    from ..errors import UsageError
    from ..policy.tiers import TIER_NAMES

    if tier is not None and tier not in TIER_NAMES:
        raise UsageError(f"unknown tier '{printable(tier[:40])}' (the tiers are {', '.join(TIER_NAMES)})")


@logs_app.callback()
def logs_list(
    ctx: typer.Context,
    count: Annotated[int, typer.Option("-n", "--count", help="How many of the latest runs (0: all).")] = 3,
    json_output: Annotated[bool, typer.Option("--json", help="Print the runs as a JSON array.")] = False,
    tier: TierFilter = None,
    model: ModelFilter = None,
    source: SourceFilter = None,
    query: Annotated[Optional[str], typer.Option("-q", "--query", help="Runs whose prompt or answer contains this text.")] = None,
    show_thinking: Annotated[bool, typer.Option("--thinking", help="Show each run's thinking too.")] = False,
) -> None:
    """Show the latest logged runs (every ask, chat turn, batch item, served request and eval item)."""
    if ctx.invoked_subcommand is not None:
        return
    from ..errors import UsageError
    from ..output.logs import Query, recent

    if count < 0:
        raise UsageError(f"-n must be >= 0, got {count}")
    _check_tier(tier)
    runs = recent(_log_path(), Query(limit=count or -1, tier=tier, model=model, text=query, source=source))
    if json_output:
        typer.echo(json.dumps(runs, ensure_ascii=False, indent=2))
        return
    if not runs:
        typer.echo("no runs logged yet" if not (tier or model or query or source) else "no run matches", err=True)
        return
    for run in runs:
        typer.echo(_describe(run, show_thinking))


def _describe(run: Json, show_thinking: bool) -> str:
    """One run as a few lines: what ran, what it cost, the prompt and the answer."""
    stamp = run["at"].replace("T", " ")[:19]
    if run["error"]:
        head = f"#{run['id']} {stamp} {run['source']} · {run['model'] or '?'} · {run['tier'] or '?'} · failed"
        return f"{head}\n  prompt: {_short(run['prompt'])}\n  error:  {run['error']}\n"
    spent = run["spent_thinking_tokens"]
    samples = f" × {run['samples']} samples" if (run["samples"] or 1) > 1 else ""
    cost = f"thinking {spent}/{run['max_thinking']}{samples} · answer {run['answer_tokens']} · {run['total_s']:.2f} s"
    lines = [f"#{run['id']} {stamp} {run['source']} · {run['model']} · {run['tier']} · {cost} · {run['finish_reason']}",
             f"  prompt: {_short(run['prompt'])}"]
    if show_thinking and run["thinking"]:
        lines.append(f"  thinking: {printable(run['thinking'].strip())}")
    lines.append(f"  answer: {_short(run['answer'], 400)}")
    return "\n".join(lines) + "\n"


def _short(text: str | None, limit: int = 200) -> str:
    if not text:
        return ""
    flat = printable(" ".join(text.split()))  # a logged prompt's escape sequences are shown, not obeyed
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@logs_app.command("stats", cls=Command)
def logs_stats(
    json_output: JsonOpt = False,
    tier: TierFilter = None,
    model: ModelFilter = None,
    source: SourceFilter = None,
) -> None:
    """Thinking spent per tier and model (the pay-as-you-go ledger)."""
    from ..output.logs import Query, ledger, total

    _check_tier(tier)
    rows = ledger(_log_path(), Query(tier=tier, model=model, source=source))
    overall = total(rows)
    if json_output:
        typer.echo(json.dumps({"rows": [r.as_dict() for r in rows],
                               "total": overall.as_dict() if overall else None}, indent=2))
        return
    if overall is None:
        typer.echo("no runs logged yet", err=True)
        return
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(title="thinking spent per tier (saved: against every run at the deep tier's fixed budget)",
                  title_justify="left")
    for name, justify in (("model", "left"), ("tier", "left"), ("runs", "right"), ("failed", "right"),
                          ("thinking", "right"), ("deep budget", "right"), ("saved", "right"), ("answer", "right"),
                          ("probe kept", "right"), ("tok/s", "right"), ("first token", "right")):
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for row in [*rows, overall]:
        table.add_row(Text(printable(row.model)), Text(row.tier), str(row.runs), str(row.failed), str(row.thinking_tokens),
                      str(row.fixed_budget_tokens), "–" if row.saved is None else f"{row.saved:.1%}",
                      str(row.answer_tokens), f"{row.probe_kept}/{row.probed}" if row.probed else "–",
                      "–" if row.tokens_per_second is None else f"{row.tokens_per_second:.1f}",
                      "–" if row.first_token_s is None else f"{row.first_token_s:.2f} s",
                      end_section=row is rows[-1])
    Console(width=140).print(table)


@logs_app.command("show", cls=Command)
def logs_show(
    run: Annotated[str, typer.Argument(help="A run's id (from `think logs`), or `last`.")] = "last",
    json_output: Annotated[bool, typer.Option("--json", help="Print the run's record as JSON.")] = False,
) -> None:
    """Draw one run as a trace: its tier and plan, the thinking shaded by token probability, where the
    policy stepped in (budget, "Wait", loop break, probe), the answer, and a vote's samples."""
    from ..errors import UsageError
    from ..output.logs import Query, find, recent

    if run == "last":
        runs = recent(_log_path(), Query(limit=1))
        found = runs[0] if runs else None
        if found is None:
            raise UsageError("no runs logged yet")
    else:
        if not run.lstrip("#").isdigit():
            raise UsageError(f"a run is its id (a number from `think logs`) or `last`, got '{printable(run[:40])}'")
        found = find(_log_path(), int(run.lstrip("#")))
        if found is None:
            raise UsageError(f"no run #{run.lstrip('#')} in the log (`think logs` lists them)")
    if json_output:
        typer.echo(json.dumps(found, ensure_ascii=False, indent=2))
        return
    import os
    import sys

    from rich.console import Console

    from .render import is_terminal
    from .trace_view import describe_run

    tty = is_terminal(sys.stdout)
    view = describe_run(found, color=tty and not os.environ.get("NO_COLOR"))
    Console(force_terminal=tty, no_color=not tty, highlight=False, soft_wrap=not tty).print(view)


@logs_app.command("path", cls=Command)
def logs_path() -> None:
    """Print the run log's path (SQLite: sqlite3 or Datasette open it)."""
    typer.echo(str(_log_path()))


def register(app: typer.Typer) -> None:
    app.add_typer(logs_app, name="logs")
