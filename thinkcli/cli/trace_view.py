"""`think logs show`: one logged run drawn as a trace (Rich; plain text when piped).

The thinking is shaded token by token by the model's probability where it was measured, the
policy's insertions (budget message, "Wait", a loop break) are marked where they went in, and a
vote gets one line per sample with the winner starred. The web page draws the same pieces.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.rule import Rule
from rich.text import Text

from ..output.trace import MARK_LABELS, Piece, pieces
from ..text import Json, printable

# Shades from unsure to sure: a probability below each bound gets its style (the last: the rest).
SHADES = ((0.2, "bold red"), (0.4, "red"), (0.6, "dark_orange"), (0.8, "yellow"), (1.01, ""))


def shade(prob: float | None) -> str:
    if prob is None:
        return ""
    return next(style for bound, style in SHADES if prob < bound)


def trace_text(parts: list[Piece]) -> Text:
    """Pieces as one Text: sampled tokens shaded, insertions as a marker and their text dimmed."""
    text = Text()
    for part in parts:
        if part.mark:
            label = MARK_LABELS.get(part.mark)
            if label:
                text.append(f" [{label}] ", style="reverse bold magenta")
            text.append(printable(part.text), style="italic magenta")
        else:
            text.append(printable(part.text), style=shade(part.prob))
    return text


def describe_run(run: Json, color: bool = True) -> RenderableType:
    """The whole view of one run (a row of `think logs --json`); without colour, no shading legend."""
    items: list[RenderableType] = [_header(run)]
    if run.get("error"):
        items.append(Text(f"failed: {run['error']}", style="bold red"))
        return Group(*items)
    trace = run.get("trace") or {}
    thinking = pieces(run.get("thinking"), trace.get("thinking"))
    scored = [p for p in thinking if p.prob is not None]
    if thinking:
        title = f"thinking · {run.get('thinking_tokens') or 0} tokens"
        if run.get("confidence") is not None:
            title += f" · confidence {run['confidence']:.2f}"
        items += [Rule(title, align="left", style="cyan"), trace_text(thinking)]
        if scored and color:
            items.append(_legend())
    elif run.get("thinking") is None and run.get("spent_thinking_tokens"):
        items.append(Text("(thinking not kept)", style="dim"))
    items += [Rule(f"answer · {run.get('answer_tokens') or 0} tokens · {run.get('finish_reason')}", align="left",
                   style="green"), trace_text(pieces(run.get("answer"), trace.get("answer")))]
    if run.get("vote") and run.get("sample_runs"):
        items += [Rule("vote", align="left", style="blue"), _vote(run)]
    return Group(*items)


def _header(run: Json) -> Text:
    stamp = str(run.get("at") or "").replace("T", " ")[:19]
    head = Text()
    head.append(f"#{run['id']} ", style="bold")
    head.append(f"{stamp} · {run.get('source')} · {printable(str(run.get('model')))} ({run.get('family')})")
    if run.get("total_s") is not None:
        head.append(f" · {run['total_s']:.2f} s")
    reasons = ", ".join(run.get("reasons") or [])
    head.append(f"\ntier {run.get('tier')}", style="bold")
    if run.get("score") is not None:
        head.append(f" (score {run['score']:.2f}{': ' + reasons if reasons else ''})")
    samples = run.get("samples") or 1
    head.append(f" · {run.get('strategy')} · thinking {run.get('min_thinking') or 0}–{run.get('max_thinking')}"
                f" · answer ≤ {run.get('max_answer')}" + (f" · {samples} samples" if samples > 1 else ""))
    probe = run.get("probe")
    if probe:
        measured = "unmeasured" if probe.get("confidence") is None else f"{probe['confidence']:.2f}"
        verdict = "kept" if probe.get("kept") else f"escalated to {probe.get('escalated_to') or 'thinking'}"
        head.append(f"\nprobe: {probe.get('tokens')} answer tokens without thinking, confidence {measured} "
                    f"(threshold {probe.get('threshold')}) → {verdict}")
    for event in run.get("events") or []:
        if event.get("type") == "budget_lowered":
            head.append(f"\nbudget lowered to fit the {event.get('reason')}: thinking "
                        f"{event.get('max_thinking', ['?', '?'])[1]} (asked {event.get('max_thinking', ['?'])[0]})")
    head.append(f"\nprompt: {printable(' '.join(str(run.get('prompt') or '').split()))}")
    return head


def _legend() -> Text:
    legend = Text("token probability: ", style="dim")
    low = 0.0
    for bound, style in SHADES:
        label = f"≥ {low:.1f}" if bound > 1 else f"< {bound:.1f}"
        legend.append(f"■ {label}  ", style=style or "default")
        low = bound
    return legend


def _vote(run: Json) -> Text:
    vote, samples = run["vote"], run["sample_runs"]
    winner = vote.get("winner_sample")
    text = Text()
    for index, sample in enumerate(samples):
        star = "★" if index == winner else " "
        confidence = "–" if sample.get("confidence") is None else f"{sample['confidence']:.2f}"
        line = (f"{star} sample {index + 1}: {sample.get('thinking_tokens')} thinking tokens · confidence {confidence}"
                f" · answer {printable(str(sample.get('answer')))} · {sample.get('finish_reason')}")
        text.append(line + "\n", style="bold" if index == winner else "")
    text.append(f"winner: {printable(str(vote.get('winner')))} ({vote.get('method')}; "
                f"{vote.get('samples_run')} of {run.get('samples')} samples run)")
    return text
