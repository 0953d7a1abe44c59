"""The scaling curve: accuracy against mean thinking tokens, one point per policy, `auto` marked.

Drawn in the terminal with plotext (a dependency) and as a PNG with matplotlib (the `eval`
extra). The fixed caps form the curve the model can buy by thinking longer; `auto` (the tiers)
should sit above it, to the left: the same accuracy for fewer tokens.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ...errors import ThinkError


@dataclass(frozen=True)
class Point:
    policy: str
    tokens: float  # mean thinking tokens per prompt (every sample counted)
    accuracy: float
    fixed: bool  # one sample at one cap (the line); the others are single marks


def terminal_curve(points: list[Point], title: str, width: int = 72, height: int = 18, color: bool = False) -> str:
    import plotext as plt

    plt.clear_figure()
    plt.plot_size(width, height)
    if not color:
        plt.theme("clear")
    line = sorted((p for p in points if p.fixed), key=lambda p: p.tokens)
    if line:
        plt.plot([p.tokens for p in line], [p.accuracy * 100 for p in line], marker="dot", label="fixed cap")
    others = [p for p in points if not p.fixed]
    for point in others:
        plt.scatter([point.tokens], [point.accuracy * 100], marker="*" if point.policy == "auto" else "x",
                    label=point.policy)
    top_x = max((p.tokens for p in points), default=1.0) or 1.0
    low_y = min((p.accuracy * 100 for p in points), default=0.0)
    high_y = max((p.accuracy * 100 for p in points), default=100.0)
    pad_y = max(5.0, (high_y - low_y) * 0.15)
    plt.xlim(-top_x * 0.05, top_x * 1.25)  # room for the labels right of the points
    plt.ylim(max(0.0, low_y - pad_y), min(100.0, high_y + pad_y) + pad_y)  # and for the legend above
    for point in points:
        plt.text(point.policy, point.tokens + top_x * 0.03, point.accuracy * 100, alignment="left")
    plt.title(title)
    plt.xlabel("mean thinking tokens per prompt")
    plt.ylabel("accuracy %")
    text = plt.build()
    plt.clear_figure()
    return text if color else plt.uncolorize(text)


def png_curve(points: list[Point], title: str, path: Path) -> None:
    try:
        import matplotlib
    except ImportError:
        raise ThinkError("--plot needs matplotlib: pip install 'thinkcli[eval]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5), dpi=120)
    line = sorted((p for p in points if p.fixed), key=lambda p: p.tokens)
    if line:
        axes.plot([p.tokens for p in line], [p.accuracy * 100 for p in line], "o-", color="#4477aa",
                  label="fixed thinking cap")
    for point in points:
        if not point.fixed:
            auto = point.policy == "auto"
            axes.plot([point.tokens], [point.accuracy * 100], "*" if auto else "s", markersize=14 if auto else 8,
                      color="#ee6677" if auto else "#228833", label=point.policy)
        # caps labelled above their point, policies below theirs: a policy that lands on a cap stays legible
        axes.annotate(point.policy, (point.tokens, point.accuracy * 100), textcoords="offset points",
                      xytext=(6, 6) if point.fixed else (6, -14), fontsize=9)
    axes.set_xlabel("mean thinking tokens per prompt")
    axes.set_ylabel("accuracy %")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.margins(x=0.15, y=0.15)
    axes.legend(loc="best", fontsize=9)
    figure.tight_layout()
    try:
        figure.savefig(path)
    except OSError as exc:
        raise ThinkError(f"cannot write --plot {path}: {exc.strerror or exc}") from None
    finally:
        plt.close(figure)
