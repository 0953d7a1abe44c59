"""`think eval`: a labelled set under several policies — the table, the scaling curve, calibration."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from ..errors import ThinkError, UsageError
from ..text import Json
from . import Command
from .ask import gpu_layers_value
from .options import GpuLayersOpt, JsonOpt, MaxAnswerOpt, ModelOpt, NoLogOpt, SeedOpt, TemperatureOpt

if TYPE_CHECKING:
    from ..frontends.eval.curve import Point
    from ..frontends.eval.runner import Calibration, Policy, PolicyScore
    from ..frontends.eval.sets import EvalItem
    from ..policy.registry import Registry
    from ..scheduler.runtime import Runtime


def eval_command(
    eval_set: Annotated[str, typer.Argument(metavar="SET", help="A JSONL of {prompt, answer[, id, tier, checker]}, "
                                                                 "builtin[:LEVEL] for the bundled set, or reasoner[:easy|middle|hard|wide] "
                                                                 "for the tiny reasoner's problems.")],
    policies_text: Annotated[Optional[str], typer.Option("--policies", help="Comma-separated: auto, a tier name, "
                                                         "a thinking cap (0, 256 …), voteN, voteN@CAP, confT@CAP, "
                                                         "trialT@CAP, agreeT@CAP, statedT@CAP, giveupF@CAP, auto without parts (auto-noprobe, "
                                                         "-noconf, -noloop, -notrial, -noagree, -nostated: auto-noconf-noloop). "
                                                         "[default: auto,0,256,1024]")] = None,
    model: ModelOpt = None,
    limit: Annotated[Optional[int], typer.Option("--limit", help="Only the first N items (the builtin set is "
                                                 "interleaved by level and kind).")] = None,
    parallel: Annotated[int, typer.Option("--parallel", "-p", help="Prompts decoded together.")] = 4,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Results directory; a rerun resumes it. "
                                                   "[default: ./eval-SET-MODEL]")] = None,
    max_answer: MaxAnswerOpt = None,
    temperature: TemperatureOpt = None,
    seed: SeedOpt = None,
    plot: Annotated[Optional[Path], typer.Option("--plot", help="Also draw the curve as a PNG (needs matplotlib).")] = None,
    no_curve: Annotated[bool, typer.Option("--no-curve", help="Do not draw the curve in the terminal.")] = False,
    json_output: JsonOpt = False,
    calibrate_tiers: Annotated[bool, typer.Option("--calibrate", help="Propose per-tier thinking caps for this model "
                                                  "[policies default: 0,64,256,1024,4096].")] = False,
    tolerance: Annotated[float, typer.Option("--tolerance", help="Calibration: accuracy (0-1) a tier may give up "
                                             "for a smaller cap.")] = 0.02,
    write: Annotated[bool, typer.Option("--write", help="Calibration: put the caps into your models.yaml.")] = False,
    dump: Annotated[bool, typer.Option("--dump", help="Print the set as JSONL and exit (no model).")] = False,
    ablation: Annotated[bool, typer.Option("--ablation", help="What each part of auto saves: a cap of 512, the tiers "
                                           "alone, then + probe, + confidence stop, + loop breaker, + trial answers, + agreeing trials, + stated "
                                           "trial answers.")] = False,
    set_seed: Annotated[int, typer.Option("--set-seed", help="Seed of the builtin set.")] = 0,
    gpu_layers: GpuLayersOpt = None,
    no_log: NoLogOpt = False,
) -> None:
    """Measure what thinking buys, policy by policy.

    Prints a table per policy, the scaling curve, and (--calibrate) per-tier caps."""
    from ..frontends.eval.runner import ABLATION, CALIBRATION_CAPS, DEFAULT_POLICIES, check_items, parse_policies
    from ..frontends.eval.sets import load_set
    from ..policy.plan import Overrides
    from ..scheduler.runtime import Runtime

    _check_options(limit, parallel, tolerance, write, calibrate_tiers)
    items = load_set(eval_set, set_seed)[:limit]
    if dump:
        for item in items:
            typer.echo(json.dumps(item.as_dict(), ensure_ascii=False))
        return
    if plot is not None:
        _check_plot(plot)
    check_items(items)  # every checker can judge its answer: found now, not after the run
    runtime = Runtime.create(gpu_layers=gpu_layers_value(gpu_layers), log=not no_log)
    if write:
        from ..frontends.eval.runner import check_writable_models_file

        check_writable_models_file(runtime.paths.models_file)
    base = Overrides(model=model, max_answer=max_answer, temperature=temperature, seed=seed).validate()
    if ablation and policies_text:
        raise UsageError("--ablation is its own list of policies: give it or --policies, not both")
    chosen = ABLATION if ablation else policies_text or (CALIBRATION_CAPS if calibrate_tiers else DEFAULT_POLICIES)
    policies = parse_policies(chosen, base, runtime.default_model)
    if calibrate_tiers and sum(p.fixed for p in policies) < 2:
        raise UsageError("calibration compares fixed thinking caps: give at least two (e.g. --policies 0,256,1024)")
    model_name = model or runtime.default_model
    runtime.load(model_name)  # a missing model fails here, in one line, before any directory is made
    directory = output or Path(f"eval-{_slug(Path(eval_set).stem if eval_set.endswith('.jsonl') else eval_set)}"
                               f"-{_slug(model_name)}")
    from ..frontends.eval.runner import check_directory

    check_directory(directory, {"set": _set_identity(eval_set, set_seed), "model": model_name,
                                "max_answer": max_answer, "temperature": temperature, "seed": seed})
    scores = _run(runtime, items, policies, directory, parallel)
    calibration = _calibration(items, policies, scores, directory, model_name, tolerance) if calibrate_tiers else None
    from ..frontends.eval.runner import calibration_dict, save_results, write_calibration

    extra: Json = {"set": eval_set, "model": model_name, "items": len(items),
                   "calibration": calibration_dict(calibration) if calibration else None}
    json_path, csv_path = save_results(directory, scores, extra)
    notes = [f"results: {json_path}, {csv_path}, {directory / 'items.csv'}"]
    if calibration is not None and write:
        write_calibration(runtime.paths.models_file, calibration, runtime.registry)
    title = f"{model_name} on {eval_set} ({len(items)} items)"
    if json_output:
        typer.echo(json_path.read_text(encoding="utf-8").rstrip("\n"))
    else:
        _print_results(scores, title, calibration, runtime.registry, curve=not no_curve)
    plot_failed = _draw(scores, title, plot, notes) if plot is not None else None
    if calibration is not None and write:
        notes.append(f"calibration written to {runtime.paths.models_file} (models.{model_name})")
    sys.stderr.write("\n".join(notes) + "\n")
    if plot_failed:
        raise ThinkError(plot_failed)


def _check_options(limit: int | None, parallel: int, tolerance: float, write: bool, calibrate_tiers: bool) -> None:
    if limit is not None and limit < 1:
        raise UsageError(f"--limit must be >= 1, got {limit}")
    if not 1 <= parallel <= 64:
        raise UsageError(f"--parallel must be between 1 and 64, got {parallel}")
    if not 0 <= tolerance <= 1:
        raise UsageError(f"--tolerance must be between 0 and 1, got {tolerance}")
    if write and not calibrate_tiers:
        raise UsageError("--write goes with --calibrate")


def _run(runtime: Runtime, items: list[EvalItem], policies: list[Policy], directory: Path,
         parallel: int) -> list[PolicyScore]:
    """Every policy over the items, with a progress line; the scores at the end."""
    from ..frontends.eval.runner import EvalDone, ItemDone, PolicyScored, PolicyStarted, run_eval

    progress = _Progress(len(items))
    scores: list[PolicyScore] = []
    for event in run_eval(runtime, items, policies, directory, parallel=parallel):
        match event:
            case PolicyStarted():
                progress.start(event.policy.name, event.todo)
            case ItemDone():
                progress.item(event.record)
            case PolicyScored():
                progress.done(event.score)
            case EvalDone():
                scores = event.scores
    return scores


def _calibration(items: list[EvalItem], policies: list[Policy], scores: list[PolicyScore], directory: Path,
                 model_name: str, tolerance: float) -> Calibration:
    from dataclasses import replace

    from ..frontends.eval.runner import calibrate, calibrate_probe, calibrate_stop, policy_file, read_records

    records = {p.name: read_records(policy_file(directory, p)) for p in policies}
    return replace(calibrate(scores, model_name, tolerance), probe=calibrate_probe(items, records, tolerance),
                   confidence=calibrate_stop("conf", items, records, policies, tolerance),
                   trial=calibrate_stop("trial", items, records, policies, tolerance),
                   give_up=calibrate_stop("giveup", items, records, policies, tolerance),
                   agree=calibrate_stop("agree", items, records, policies, tolerance),
                   stated=calibrate_stop("stated", items, records, policies, tolerance))


def _points(scores: list[PolicyScore]) -> list[Point]:
    from ..frontends.eval.curve import Point

    return [Point(s.policy, s.mean_thinking, s.accuracy, s.fixed) for s in scores if s.items]


def _print_results(scores: list[PolicyScore], title: str, calibration: Calibration | None, registry: Registry,
                   curve: bool) -> None:
    _print_table(scores, title)
    points = _points(scores)
    if curve and points:
        from ..frontends.eval.curve import terminal_curve
        from .render import is_terminal

        typer.echo(terminal_curve(points, title, color=is_terminal(sys.stdout)))
    if calibration is not None:
        _print_calibration(calibration, registry)


def _draw(scores: list[PolicyScore], title: str, plot: Path, notes: list[str]) -> str | None:
    """The PNG curve, after the table: a plot that fails never costs the figures (its error is returned)."""
    from ..frontends.eval.curve import png_curve

    try:
        png_curve(_points(scores), title, plot)
        notes.append(f"curve: {plot}")
    except ThinkError as exc:
        return str(exc)
    except (OSError, ValueError, RuntimeError) as exc:
        return f"the curve could not be drawn to {plot}: {getattr(exc, 'strerror', None) or exc}"
    return None


def _check_plot(plot: Path) -> None:
    """--plot can be drawn: a .png in a writable folder, and matplotlib installed (checked before the run)."""
    from ..frontends.batch import check_writable_file

    if plot.suffix.lower() != ".png":
        raise UsageError(f"--plot writes a PNG: give a file name ending in .png, got {plot}")
    check_writable_file(plot, "--plot")
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plot needs matplotlib: pip install 'thinkcli[eval]'") from None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "set"


def _set_identity(name: str, seed: int) -> str:
    if name.startswith(("builtin", "reasoner")):
        return f"{name} (seed {seed})"
    return str(Path(name).resolve())


def _print_table(scores: list[PolicyScore], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    from ..policy.tiers import TIER_NAMES

    tiers = [t for t in TIER_NAMES if any(t in s.by_tier for s in scores)]
    table = Table(title=title, title_justify="left")
    for name in ("policy", "accuracy", "thinking mean", "thinking p95", "s/item", *tiers):
        table.add_column(name, justify="left" if name == "policy" else "right")
    for s in scores:
        cells = [s.policy, f"{s.accuracy:.1%} ({s.correct}/{s.items})", f"{s.mean_thinking:.0f}",
                 str(s.p95_thinking), f"{s.mean_s:.2f}"]
        for tier in tiers:
            t = s.by_tier.get(tier)
            cells.append("–" if t is None or t.accuracy is None else f"{t.accuracy:.0%} ({t.correct}/{t.items})")
        table.add_row(*cells)
    Console(width=160).print(table)


def _print_calibration(calibration: Calibration, registry: Registry) -> None:
    import yaml

    lines = [f"calibration for {calibration.model} (tolerance {calibration.tolerance:.0%} accuracy):"]
    for tier in calibration.skipped:
        lines.append(f"  {tier:<8} left as it is: no cap got any of its items right (a flat 0 % curve)")
    current = registry.tiers_for(calibration.model)
    for tier, cap in calibration.chosen.items():
        curve = ", ".join(f"{c}: {a:.0%}" for c, a in sorted(calibration.curve[tier].items()))
        lines.append(f"  {tier:<8} cap {cap:>5} (now {current[tier].max_thinking}; best {calibration.best[tier]:.0%}; "
                     f"by cap {curve})")
    entry: Json = {"tiers": calibration.tiers_override(registry)}
    probe = calibration.probe
    if probe is not None:
        now = ", ".join(f"{tier} {registry.probe_for(calibration.model, tier).confidence}" for tier, _ in probe.lost_by_tier)
        by_tier = ", ".join(f"{tier} {lost}" for tier, lost in probe.lost_by_tier)
        lines.append(f"  probe    confidence {probe.threshold} (now {now or registry.probe_for(calibration.model).confidence}; "
                     f"lost by tier: {by_tier}): "
                     f"keeps {probe.kept} of {probe.items} answers without thinking, {probe.losses} lost (90 % bound "
                     f"{probe.loss_bound:.1%}), accuracy {probe.accuracy:.0%} (best {probe.best_accuracy:.0%}), "
                     f"thinking {probe.thinking_tokens} vs {probe.thinking_tokens_never_kept} tokens")
        entry["probe"] = {"confidence": probe.threshold}
    for stop, name, label in ((calibration.confidence, "stop", "confidence stop"),
                              (calibration.trial, "trial", "trial answers"),
                              (calibration.agree, "agree", "agreeing trials"),
                              (calibration.stated, "stated", "stated trial answers"),
                              (calibration.give_up, "give_up", "give-up floor")):
        if stop is None:
            continue
        tried = "; ".join(f"{t}: {n} lost, bound {b:.1%}, thinking {m:.0f}" for t, n, b, m in stop.weighed)
        verdict = (f"{label} at {stop.threshold} under cap {stop.cap}: thinking {stop.thinking_mean:.0f} vs "
                   f"{stop.cap_thinking_mean:.0f} tokens, {stop.losses} of {stop.items} lost (90 % bound "
                   f"{stop.loss_bound:.1%})" if stop.threshold else
                   f"{label} off (0): it never ended a trace here, so it would save nothing" if stop.fired == 0 else
                   f"{label} off (0): no threshold keeps the loss within {calibration.tolerance:.0%} "
                   "with 90 % confidence")
        lines.append(f"  {name:<8} {verdict} — weighed {tried}")
    proposal = {"models": {calibration.model: entry}}
    lines.append("proposed models.yaml override (--write puts it in your models.yaml):")
    lines.append(yaml.safe_dump(proposal, sort_keys=False).rstrip())
    typer.echo("\n".join(lines))


class _Progress:
    """One stderr line per policy (a live count on a terminal)."""

    def __init__(self, total: int):
        from .render import is_terminal

        self.total = total
        self.tty = is_terminal(sys.stderr)
        self.name = ""
        self.count = 0
        self.todo = 0
        self.started = time.perf_counter()

    def start(self, name: str, todo: int) -> None:
        self.name, self.count, self.todo, self.started = name, 0, todo, time.perf_counter()
        already = self.total - todo
        sys.stderr.write(f"policy {name}: {todo} item(s) to run" + (f", {already} already done" if already else "")
                         + ("\n" if not self.tty else ""))
        sys.stderr.flush()

    def item(self, record: Json) -> None:
        self.count += 1
        if self.tty:
            sys.stderr.write(f"\r\x1b[Kpolicy {self.name}: {self.count}/{self.todo} · "
                             f"{time.perf_counter() - self.started:.0f} s")
            sys.stderr.flush()

    def done(self, score: PolicyScore) -> None:
        prefix = "\r\x1b[K" if self.tty else ""
        failed = f" · {score.failed} failed" if score.failed else ""
        sys.stderr.write(f"{prefix}policy {score.policy}: accuracy {score.accuracy:.1%} · thinking mean "
                         f"{score.mean_thinking:.0f} · {time.perf_counter() - self.started:.1f} s{failed}\n")
        sys.stderr.flush()


def register(app: typer.Typer) -> None:
    app.command("eval", cls=Command)(eval_command)
