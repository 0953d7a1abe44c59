"""`think batch`: a file of prompts → a resumable JSONL of answers, with progress and a summary."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ..errors import ThinkError, UsageError
from . import Command
from .ask import gpu_layers_value, overrides_from
from .options import (
    FormatChoice,
    GpuLayersOpt,
    MaxAnswerOpt,
    MaxThinkingOpt,
    MinThinkingOpt,
    ModelOpt,
    NoLogOpt,
    NoProbeOpt,
    NoThinkOpt,
    SamplesOpt,
    SeedOpt,
    StrategyOpt,
    TemperatureOpt,
    TierChoice,
    TierOpt,
)


def batch(
    input_path: Annotated[str, typer.Argument(metavar="INPUT", help=".txt (a prompt per line), .jsonl, .csv, or - for stdin.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="JSONL results; rerunning skips ids already in it.")],
    field_name: Annotated[str, typer.Option("--field", help="Prompt field (.jsonl) or column (.csv).")] = "prompt",
    input_format: Annotated[Optional[FormatChoice], typer.Option("--format", help="Input format (default: from the extension).")] = None,
    parallel: Annotated[int, typer.Option("--parallel", "-p", help="Prompts decoded together (continuous batching).")] = 1,
    workers: Annotated[int, typer.Option("--workers", help="Processes, each with --parallel prompts and its own "
                                         "connections: for servers faster than one client core. Each loads a "
                                         "local model itself.")] = 1,
    keep_thinking: Annotated[bool, typer.Option("--keep-thinking", help="Store each item's thinking too.")] = False,
    summary_file: Annotated[Optional[Path], typer.Option("--summary", help="Write the summary as JSON here.")] = None,
    model: ModelOpt = None,
    tier: TierOpt = TierChoice.auto,
    max_thinking: MaxThinkingOpt = None,
    min_thinking: MinThinkingOpt = None,
    max_answer: MaxAnswerOpt = None,
    no_think: NoThinkOpt = False,
    samples: SamplesOpt = None,
    strategy: StrategyOpt = None,
    temperature: TemperatureOpt = None,
    seed: SeedOpt = None,
    gpu_layers: GpuLayersOpt = None,
    no_probe: NoProbeOpt = False,
    no_log: NoLogOpt = False,
) -> None:
    """Answer every prompt of a file (resumable JSONL).

    Each item's budget follows its own tier; tiers that name other models run on them."""
    from ..frontends.batch import (
        BatchDone,
        OutputStore,
        RecordWritten,
        check_writable_file,
        count_items,
        detect_format,
        open_input,
        read_items,
        refuse_same_files,
        run_batch,
    )
    from ..frontends.batch import BatchProgress as Progressed
    from ..scheduler.runtime import Runtime

    if parallel < 1 or parallel > 64:
        raise UsageError(f"--parallel must be between 1 and 64, got {parallel}")
    if workers < 1 or workers > 32:
        raise UsageError(f"--workers must be between 1 and 32, got {workers}")
    overrides = overrides_from(tier, model, max_thinking, min_thinking, max_answer, no_think, samples, strategy,
                               temperature, seed, no_probe)
    fmt = detect_format(input_path, input_format.value if input_format else None)
    if summary_file is not None:
        check_writable_file(summary_file, "--summary")
    refuse_same_files({"INPUT": None if input_path == "-" else Path(input_path), "--output": output,
                       "--summary": summary_file})
    runtime = Runtime.create(gpu_layers=gpu_layers_value(gpu_layers), log=not no_log)
    summary = None
    with open_input(input_path) as stream, OutputStore(output) as store:
        progress = BatchProgress(count_items(input_path, fmt))
        if store.repaired_bytes:
            sys.stderr.write(f"repaired {output}: cut a torn last line of {store.repaired_bytes} bytes\n")
        if store.retried:
            sys.stderr.write(f"retrying {store.retried} item(s) that failed in an earlier run\n")
        progress.start(len(store.done_ids))
        try:
            for event in run_batch(runtime, read_items(stream, fmt, field_name), store, overrides,
                                   parallel=parallel, keep_thinking=keep_thinking, workers=workers):
                match event:
                    case RecordWritten():
                        progress.update(event.record)
                    case Progressed():
                        progress.endpoints = event.endpoints
                        progress.update(None)
                    case BatchDone():
                        summary = event.summary
        finally:
            progress.stop()
    assert summary is not None
    data = summary.as_dict()
    print_summary(data)
    if summary_file is not None:
        try:
            summary_file.write_text(json.dumps(data, indent=2) + "\n")
        except OSError as exc:
            raise ThinkError(f"cannot write --summary {summary_file}: {exc.strerror}") from None
    if summary.failed:
        raise typer.Exit(1)


class BatchProgress:
    """A Rich bar on a terminal; a plain line every few seconds when stderr is piped."""

    def __init__(self, total: int | None):
        from .render import is_terminal

        self.total = total
        self.tty = is_terminal(sys.stderr)
        self.done = 0
        self.failed = 0
        self.tiers: dict[str, int] = {}
        self.tokens = 0
        self.started = time.perf_counter()
        self.last_line = 0.0
        self._progress: Any = None
        self._task: Any = None
        self.endpoints: dict[str, int] = {}  # a remote model's replicas: tokens each generated

    def start(self, already: int) -> None:
        self.done = already
        if self.tty:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._progress = Progress(TextColumn("batch"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                                      TextColumn("{task.fields[info]}"), console=Console(file=sys.stderr))
            self._task = self._progress.add_task("batch", total=self.total, completed=already, info="")
            self._progress.start()

    def update(self, record: dict | None) -> None:
        if record is not None:
            self.done += 1
            if record.get("error"):
                self.failed += 1
            else:
                tier = record.get("tier", "?")
                self.tiers[tier] = self.tiers.get(tier, 0) + 1
                self.tokens += record["usage"]["thinking_tokens"] + record["usage"]["answer_tokens"]
        elapsed = max(time.perf_counter() - self.started, 1e-6)
        tiers = " ".join(f"{k}:{v}" for k, v in sorted(self.tiers.items()))
        info = f"{tiers} failed:{self.failed} {self.tokens / elapsed:.0f} tok/s"
        if self.endpoints:  # a remote model: what each replica delivers
            info += " · " + " ".join(f"{url.removeprefix('http://').removesuffix('/v1')} {count / elapsed:.0f} tok/s"
                                     for url, count in sorted(self.endpoints.items()))
        if self._progress is not None:
            self._progress.update(self._task, completed=self.done, info=info)
        elif time.perf_counter() - self.last_line > 2.0:
            self.last_line = time.perf_counter()
            total = f"/{self.total}" if self.total else ""
            sys.stderr.write(f"batch: {self.done}{total} done · {info}\n")
            sys.stderr.flush()

    def stop(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def print_summary(data: dict) -> None:
    lines = [f"done {data['done']}, failed {data['failed']}, skipped {data['skipped']} (already in output), "
             f"{data['elapsed_s']} s"]
    for name, t in data["tiers"].items():
        lines.append(f"  {name:<9} {t['count']:>5} items · thinking mean {t['mean_thinking_tokens']} max "
                     f"{t['max_thinking_tokens']} · answer mean {t['mean_answer_tokens']} · {t['wall_s']} s wall")
    for url, tokens in (data.get("replicas") or {}).items():
        lines.append(f"  replica {url}: {tokens} tokens, {tokens / max(data['elapsed_s'], 1e-6):.1f} tok/s")
    if data["deep_fixed_budget_tokens"]:
        lines.append(f"  thinking tokens {data['thinking_tokens']} vs {data['deep_fixed_budget_tokens']} at the deep "
                     f"tier's fixed budget ({data['fraction_of_deep_budget']:.1%})")
    sys.stderr.write("\n".join(lines) + "\n")


def register(app: typer.Typer) -> None:
    app.command("batch", cls=Command)(batch)
