"""Options shared by several commands, declared once (huggingface_hub CLI style)."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Optional

import typer


class TierChoice(str, Enum):
    """Typer lists and checks these; `auto` lets the classifier decide."""

    auto = "auto"
    instant = "instant"
    light = "light"
    standard = "standard"
    deep = "deep"


class StrategyChoice(str, Enum):
    single = "single"
    vote = "vote"


class FormatChoice(str, Enum):
    txt = "txt"
    jsonl = "jsonl"
    csv = "csv"


ModelOpt = Annotated[Optional[str], typer.Option("--model", "-m", help="Alias (think models), org/repo[:QUANT] or a .gguf path.")]
TierOpt = Annotated[TierChoice, typer.Option("--tier", help="Difficulty tier; auto: the classifier decides.")]
MaxThinkingOpt = Annotated[Optional[int], typer.Option("--max-thinking", help="Thinking token cap (overrides the tier).")]
MinThinkingOpt = Annotated[Optional[int], typer.Option("--min-thinking", help="Minimum thinking tokens: an early close becomes 'Wait'.")]
MaxAnswerOpt = Annotated[Optional[int], typer.Option("--max-answer", help="Answer token cap (overrides the tier).")]
NoThinkOpt = Annotated[bool, typer.Option("--no-think", help="Switch thinking off.")]
SamplesOpt = Annotated[Optional[int], typer.Option("--samples", "-n", help="Reasoning paths for Best-of-N (implies --strategy vote).")]
StrategyOpt = Annotated[Optional[StrategyChoice], typer.Option("--strategy", help="Overrides the tier's strategy.")]
TemperatureOpt = Annotated[Optional[float], typer.Option("--temperature", "-t", help="Sampling temperature (default: the model family's).")]
SeedOpt = Annotated[Optional[int], typer.Option("--seed", help="Random seed (default 0: reproducible).")]
GpuLayersOpt = Annotated[Optional[str], typer.Option("--gpu-layers", help="Layers to offload to the GPU: a number or 'all'.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print one JSON object instead of streaming.")]
NoStdinOpt = Annotated[bool, typer.Option("--no-stdin", help="Do not read stdin (for `while read` loops).")]
NoLogOpt = Annotated[bool, typer.Option("--no-log", help="Do not write these runs to the run log (think logs).")]
NoProbeOpt = Annotated[bool, typer.Option("--no-probe", help="Skip the escalation probe (auto tier: answer without "
                                          "thinking first, think only if unsure).")]
