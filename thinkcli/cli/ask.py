"""`think ask`: one prompt, one answer, for shells and pipes."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import UsageError
from ..text import clean_text
from . import Command
from .options import (
    GpuLayersOpt,
    JsonOpt,
    MaxAnswerOpt,
    MaxThinkingOpt,
    MinThinkingOpt,
    ModelOpt,
    NoLogOpt,
    NoProbeOpt,
    NoStdinOpt,
    NoThinkOpt,
    SamplesOpt,
    SeedOpt,
    StrategyChoice,
    StrategyOpt,
    TemperatureOpt,
    TierChoice,
    TierOpt,
)

if TYPE_CHECKING:
    from ..policy.plan import Overrides


def read_prompt(argument: str | None, no_stdin: bool = False) -> str:
    """Piped stdin comes first, then the argument (like `llm`): `cat f | think ask 'summarise'`.

    `--no-stdin` leaves stdin alone (a `while read` loop's own input). Bytes that are not UTF-8
    are replaced (U+FFFD), never passed on as surrogates."""
    parts: list[str] = []
    if not no_stdin and not sys.stdin.isatty():
        try:
            piped = sys.stdin.buffer.read().decode("utf-8", errors="replace")
        except OSError as exc:
            raise UsageError(f"cannot read stdin: {exc.strerror or exc}") from None
        if piped.strip():
            parts.append(piped.strip())
    if argument is not None and argument.strip():
        parts.append(clean_text(argument.strip()))
    text = "\n\n".join(parts)
    if not text:
        raise UsageError("empty prompt: give a prompt as an argument or on stdin")
    return text


def overrides_from(tier: TierChoice, model: str | None, max_thinking: int | None, min_thinking: int | None,
                   max_answer: int | None, no_think: bool, samples: int | None, strategy: StrategyChoice | None,
                   temperature: float | None, seed: int | None, no_probe: bool = False) -> Overrides:
    """The command-line choices shared by ask and batch, validated once."""
    from ..policy.plan import Overrides

    return Overrides(tier=tier.value, model=model, max_thinking=max_thinking, min_thinking=min_thinking,
                     max_answer=max_answer, no_think=no_think, samples=samples,
                     strategy=strategy.value if strategy else None, temperature=temperature, seed=seed,
                     probe=not no_probe).validate()


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
    tier: TierOpt = TierChoice.auto,
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
    no_stdin: NoStdinOpt = False,
    no_probe: NoProbeOpt = False,
    no_log: NoLogOpt = False,
) -> None:
    """Answer one prompt, spending thinking by its difficulty tier."""
    from ..errors import ThinkError
    from ..policy.plan import make_plan
    from ..scheduler.results import Failed, Task, messages_for
    from ..scheduler.run import Scheduler
    from ..scheduler.runtime import Runtime
    from .render import JsonRenderer, StreamRenderer

    overrides = overrides_from(tier, model, max_thinking, min_thinking, max_answer, no_think, samples, strategy,
                               temperature, seed, no_probe)
    layers = gpu_layers_value(gpu_layers)
    text = read_prompt(prompt, no_stdin)
    runtime = Runtime.create(gpu_layers=layers, log=not no_log)
    if pull_missing and model:
        from ..models.hub import ensure_pulled

        ensure_pulled(model, runtime.registry, offline=runtime.settings.offline)
    plan = make_plan(text, runtime.registry, overrides, runtime.default_model)
    renderer = JsonRenderer() if json_output else StreamRenderer(show_thinking=not hide_thinking, show_stats=stats)
    task = Task("ask", text, plan, messages_for(text, system))
    try:
        for event in Scheduler(runtime, max_samples=plan.samples).run([task]):
            if isinstance(event, Failed):
                raise ThinkError(event.error)
            renderer.handle(event)
    finally:
        renderer.close()


def register(app: typer.Typer) -> None:
    app.command("ask", cls=Command)(ask)
