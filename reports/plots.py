"""Bar charts of the dataset averages per method (as DMA-SAP Figures 7-8), PNG via matplotlib Agg."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never opens a window, works without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .builders import PublishedFn  # noqa: E402
from .catalog import TUPLES, metric_name  # noqa: E402
from .grids import ReproducedGrid  # noqa: E402
from .model import RowKey, Stat  # noqa: E402
from .options import ReportOptions  # noqa: E402

LEVEL_TITLES = {"image": "Image-level", "pixel": "Pixel-level"}
#: Metrics per chart: the papers' main tuple per level, plus Pixel-AP where computed.
PLOT_METRICS = {"image": TUPLES["image"][1], "pixel": (*TUPLES["pixel"][1], "pixel_ap")}
FIG_WIDTH_IN = 6.4  # fixed, so the axes keep their width whatever the legend holds
AXES_HEIGHT_IN = 3.2
LEGEND_LINE_IN = 0.16  # height of one legend text line at LEGEND_FONT
LEGEND_FONT = 7.5
LEGEND_WRAP = 95  # characters per legend line at LEGEND_FONT across FIG_WIDTH_IN
DPI = 130


def legend_label(name: str, details: list[str], width: int = LEGEND_WRAP) -> str:
    """``method: variant settings, protocol · flags`` wrapped at spaces (never inside a setting)."""
    text = name + (": " + ", ".join(details) if details else "")
    text = text.replace("$", r"\$")  # settings are user text: a "$...$" must not start matplotlib mathtext
    return "\n".join(textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False))


def chart_title(grid: ReproducedGrid, level: str) -> str:
    """What the bars average: the datasets, or one dataset's categories."""
    k = len(grid.datasets)
    if k == 1:
        d = grid.datasets[0]
        n = grid.n_categories(d)
        return f"{LEVEL_TITLES[level]} results on {grid.catalog.title(d)} (mean over {n} categor{'ies' if n != 1 else 'y'})"
    return f"{LEVEL_TITLES[level]} averages over {k} datasets"


def _partial(stats: list[Stat]) -> bool:
    return any(s.ok and s.coverage for s in stats)


def chart_labels(names: list[str], stats: list[list[Stat]]) -> list[str]:
    """Legend entries: a column whose averages lack categories or datasets says it is partial."""
    return [
        name + (" [partial: not all categories]" if _partial(row) else "") for name, row in zip(names, stats)
    ]


@dataclass
class _Bars:
    """What every bar of one chart needs: labels, colours, hatches, the paper's values."""

    labels: list[str]
    colors: tuple
    hatches: list[str | None]
    side: PublishedFn | None


def _draw_column(ax, c: int, row: list[Stat], metrics: list[str], bars: _Bars, n: int) -> None:
    """One column's bars, value labels and (with ``--published``) the paper's ticks."""
    x = np.arange(len(metrics))
    width = 0.84 / n
    vertical = n > 3  # value labels: horizontal while a bar is wide enough for "100.0"
    heights = np.array([s.mean if s.ok else np.nan for s in row])
    errs = np.array([s.std if s.ok and s.std is not None else 0.0 for s in row])
    pos = x + (c - (n - 1) / 2) * width
    ax.bar(
        pos,
        heights,
        width * 0.92,
        yerr=errs if errs.any() else None,
        capsize=2,
        label=bars.labels[c],
        color=bars.colors[c % len(bars.colors)],
        hatch=bars.hatches[c],
        edgecolor="white" if bars.hatches[c] else None,
        linewidth=0,
        alpha=0.45 if _partial(row) else 1.0,
    )
    if bars.side is not None:
        theirs = [bars.side(c, RowKey.average(), m)[0] for m in metrics]
        paper = np.array([t.mean if t.ok else np.nan for t in theirs])
        ax.scatter(pos, paper, marker="_", s=120, color="black", zorder=3, label="paper" if c == 0 else None)
    for p, h, e in zip(pos, heights, errs):
        ax.annotate(
            "n/a" if np.isnan(h) else f"{h:.1f}",
            (p, 0.0 if np.isnan(h) else h + e),
            xytext=(0, 2),
            textcoords="offset points",
            ha="center",
            va="bottom",
            rotation=90 if vertical else 0,
            fontsize=6.5 if vertical else 7.5,
            color="#666" if np.isnan(h) else "#222",
        )


def _finish_axes(ax, grid: ReproducedGrid, level: str, metrics: list[str], stats, random: bool) -> None:
    """Ticks, limits, the y label (what is averaged), the title and the random-weights warning."""
    vertical = len(stats) > 3
    ax.set_xticks(np.arange(len(metrics)), [metric_name(m) for m in metrics], fontsize=9)
    ax.set_xlim(-0.5, len(metrics) - 0.5)
    ax.set_ylim(0, 118 if vertical else 110)
    ax.set_yticks(range(0, 101, 20))
    with_std = any(s.ok and s.std is not None for row in stats for s in row)
    what = "Mean over categories (%)" if len(grid.datasets) == 1 else "Average over datasets (%)"
    ax.set_ylabel(what + ("\nerror bars: ± std over seeds" if with_std else ""), fontsize=9)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title(chart_title(grid, level), fontsize=10, pad=16 if random else 6)
    if random:
        ax.text(
            0.5,
            1.015,
            "RANDOM WEIGHTS (hatched bars): not comparable to published results",
            transform=ax.transAxes,
            ha="center",
            va="bottom",
            fontsize=8,
            color="crimson",
        )


def bar_charts(grid: ReproducedGrid, out_dir: Path, options: ReportOptions | None = None) -> list[Path]:
    """One grouped bar chart per level: groups = main metrics, bars = methods, height = Average.

    Bars of columns run on random weights are hatched (and the title warns); partial columns are
    pale and say "partial" in the legend; with ``--published`` a black tick marks the paper's
    value of each bar; missing averages are marked "n/a", never 0.
    """
    from .compare import published_side

    out_dir.mkdir(parents=True, exist_ok=True)
    n = len(grid.columns)
    side = published_side(grid, options.paper) if options is not None and options.published else None
    base = [legend_label(name, details) for (name, _), details in zip(grid.headers, grid.descriptions)]
    hatches = ["///" if grid.is_random(k) else None for k in grid.keys]
    colors = plt.get_cmap("tab10" if n <= 10 else "tab20").colors
    legend_lines = sum(label.count("\n") + 2 for label in base)
    paths = []
    for level, level_metrics in PLOT_METRICS.items():
        metrics = [m for m in level_metrics if m in grid.metrics]
        stats = [[grid.average(c, m) for m in metrics] for c in range(n)]
        if not any(s.ok for row in stats for s in row):
            continue
        labels = chart_labels(base, stats)
        bars = _Bars(labels, colors, hatches, side)
        height = AXES_HEIGHT_IN + 0.9 + LEGEND_LINE_IN * (legend_lines + 1)
        fig = plt.figure(figsize=(FIG_WIDTH_IN, height), layout="constrained")
        ax = fig.add_subplot()
        for c, row in enumerate(stats):
            _draw_column(ax, c, row, metrics, bars, n)
        _finish_axes(ax, grid, level, metrics, stats, any(hatches))
        fig.legend(loc="outside lower left", ncols=1, fontsize=LEGEND_FONT, frameon=False)
        path = out_dir / f"averages_{level}.png"
        fig.savefig(path, dpi=DPI)
        plt.close(fig)
        paths.append(path)
    return paths
