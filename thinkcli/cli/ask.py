"""`think ask`: one prompt, one answer, for shells and pipes."""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

from ..errors import UsageError
from .options import (GpuLayersOpt, JsonOpt, MaxAnswerOpt, MaxThinkingOpt, MinThinkingOpt, ModelOpt, NoThinkOpt,
                      SamplesOpt, SeedOpt, StrategyOpt, TemperatureOpt, TierOpt)


def read_prompt(argument: str | None) -> str:
    """Piped stdin comes first, then the argument (like `llm`): `cat f | think ask 'summarise'`."""
    parts: list[str] = []
    if not sys.stdin.isatty():
        try:
            piped = sys.stdin.read()
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read stdin: {exc}") from None
        if piped.strip():
            parts.append(piped.strip())
    if argument is not None and argument.strip():
        parts.append(argument.strip())
    return "\n\n".join(parts)


def gpu_layers_value(value: str | None) -> int | None:
    if value is None:
        return None
    from ..config import parse_gpu_layers

    try:
        return parse_gpu_layers(value)
    except ValueError:
        raise UsageError(f"--gpu-layers must be a number >= 0 or 'all', got '{value}'") from None


def ask(
    prompt: Annotated[Optional[str], typer.Argument(help="The prompt (stdin, if piped, comes before it).", show_default=False)] = None,
    model: ModelOpt = None,
    tier: TierOpt = "auto",
    max_thinking: MaxThinkingOpt = None,
    min_thinking: MinThinkingOpt = None,
    max_answer: MaxAnswerOpt = None,
    no_think: NoThinkOpt = False,
    hide_thinking: Annotated[bool, typer.Option("--hide-thinking", help="Do not show the thinking.")] = False,
    json_output: JsonOpt = False,
    stats: Annotated[bool, typer.Option("--stats", "-u", help="Print usage and timings on stderr.")] = False,
    samples: SamplesOpt = None,
    strategy: StrategyOpt = None,
    temperature: TemperatureOpt = None,
    seed: SeedOpt = None,
    system: Annotated[Optional[str], typer.Option("--system", "-s", help="System prompt.")] = None,
    gpu_layers: GpuLayersOpt = None,
    pull_missing: Annotated[bool, typer.Option("--pull", help="Download the -m model first if it is missing.")] = False,
) -> None:
    """Answer one prompt, spending thinking by its difficulty tier."""
    from ..pipeline import Runtime, ask_events
    from ..plan import Overrides
    from ..render import JsonRenderer, StreamRenderer

    overrides = Overrides(
        tier=tier, model=model, max_thinking=max_thinking, min_thinking=min_thinking, max_answer=max_answer,
        no_think=no_think, samples=samples, strategy=strategy, temperature=temperature, seed=seed,
    ).validate()
    layers = gpu_layers_value(gpu_layers)
    text = read_prompt(prompt)
    if not text:
        raise UsageError("empty prompt: give a prompt as an argument or on stdin")
    runtime = Runtime.create(gpu_layers=layers)
    if pull_missing and model:
        from ..hub import cached_file, pull

        entry = runtime.registry.models.get(model)
        if entry is None or (entry.repo and cached_file(entry) is None):
            pull(model, runtime.registry, offline=runtime.settings.offline)
    renderer = JsonRenderer() if json_output else StreamRenderer(show_thinking=not hide_thinking, show_stats=stats)
    try:
        for item in ask_events(runtime, text, overrides, system=system):
            renderer.handle(item)
    finally:
        renderer.close()


def register(app: typer.Typer) -> None:
    app.command("ask")(ask)
