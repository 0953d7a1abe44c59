"""`think classify`: show the tier a prompt gets, and why (no model needed)."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ..text import Json
from . import Command
from .ask import read_prompt
from .options import JsonOpt, ModelOpt, NoStdinOpt


def classify_command(
    prompt: Annotated[Optional[str], typer.Argument(help="The prompt (stdin, if piped, comes before it).", show_default=False)] = None,
    json_output: JsonOpt = False,
    no_stdin: NoStdinOpt = False,
    probe: Annotated[bool, typer.Option("--probe", help="Also ask the model: answer without thinking and "
                                        "measure its confidence (the escalation probe).")] = False,
    model: ModelOpt = None,
) -> None:
    """Show a prompt's difficulty tier and why.

    Prints the tier, the score (0 easy … 1 hard) and the reasons; --probe also asks the model."""
    from ..policy.classify import classify

    text = read_prompt(prompt, no_stdin)
    difficulty = classify(text)
    data: Json = difficulty.as_dict()
    if probe:
        data["probe"] = run_probe(text, model)
    if json_output:
        typer.echo(json.dumps(data))
        return
    typer.echo(f"tier:   {difficulty.tier}")
    typer.echo(f"score:  {difficulty.score:.2f}")
    typer.echo("reasons:")
    for reason in difficulty.reasons:
        typer.echo(f"  - {reason}")
    if probe:
        p = data["probe"]
        if p["confidence"] is None:
            verdict = f"not measured (no token probabilities): auto thinks (the {p['escalates_to']} tier)"
        else:
            verdict = ("confident: auto answers without thinking" if p["kept"]
                       else f"unsure: auto thinks (the {p['escalates_to']} tier)")
        applies = "" if p["applies"] else f" (auto does not probe it: {p['not_run_because']})"
        typer.echo(f"probe:  {p['model']}: confidence {p['confidence']} on {p['tokens']} answer tokens, threshold "
                   f"{p['threshold']} → {verdict}{applies}")
        typer.echo(f"        answer so far: {p['answer']!r}")


def run_probe(text: str, model: str | None) -> Json:
    """The probe on the model: its confidence, verdict and first answer tokens (nothing logged)."""
    from ..errors import ThinkError
    from ..output.records import Outcome
    from ..policy.plan import Overrides, make_plan, probe_blocked, probe_only_plan
    from ..policy.tiers import escalation_tier
    from ..scheduler.results import Failed, Task, messages_for
    from ..scheduler.run import Scheduler
    from ..scheduler.runtime import Runtime

    runtime = Runtime.create(log=False)
    overrides = Overrides(model=model)
    plan = probe_only_plan(text, runtime.registry, overrides, runtime.default_model)
    real = make_plan(text, runtime.registry, overrides, runtime.default_model)
    for event in Scheduler(runtime, source="classify").run([Task("probe", text, plan, messages_for(text))]):
        if isinstance(event, Failed):
            raise ThinkError(event.error)
        if isinstance(event, Outcome):
            measured = event.probe.as_dict() if event.probe else {}
            tier = real.difficulty.tier
            blocked = None if real.probe is not None else (
                probe_blocked(real, runtime.registry, overrides) or "its escalation tier runs on another model")
            return {"model": event.model, "applies": real.probe is not None, "not_run_because": blocked, **measured,
                    "escalates_to": escalation_tier(tier), "answer": event.done.answer}
    raise ThinkError("the probe produced no result")


def register(app: typer.Typer) -> None:
    app.command("classify", cls=Command)(classify_command)
