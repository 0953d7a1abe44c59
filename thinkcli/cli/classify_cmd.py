"""`think classify`: show the tier a prompt gets, and why (no model needed)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from .ask import read_prompt
from .options import JsonOpt, NoStdinOpt


def classify_command(
    prompt: Annotated[Optional[str], typer.Argument(help="The prompt (stdin, if piped, comes before it).", show_default=False)] = None,
    json_output: JsonOpt = False,
    no_stdin: NoStdinOpt = False,
) -> None:
    """Show a prompt's difficulty tier and why (no model).

    Prints the tier, the score (0 easy … 1 hard) and the reasons."""
    from ..classify import classify

    text = read_prompt(prompt, no_stdin)
    difficulty = classify(text)
    if json_output:
        typer.echo(json.dumps(difficulty.as_dict()))
        return
    typer.echo(f"tier:   {difficulty.tier}")
    typer.echo(f"score:  {difficulty.score:.2f}")
    typer.echo("reasons:")
    for reason in difficulty.reasons:
        typer.echo(f"  - {reason}")


def register(app: typer.Typer) -> None:
    app.command("classify")(classify_command)
