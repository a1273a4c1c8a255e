"""Bar charts of the dataset averages per method (as DMA-SAP Figures 7-8), PNG via matplotlib Agg."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: never opens a window, works without a display

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .tables import TUPLES, ReproducedGrid, metric_name  # noqa: E402

LEVEL_TITLES = {"image": "Image-level", "pixel": "Pixel-level"}


def bar_charts(grid: ReproducedGrid, out_dir: Path, *, random: bool = False) -> list[Path]:
    """One grouped bar chart per level: groups = main metrics, bars = methods, height = Average."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for level, (_, tuple_metrics) in TUPLES.items():
        metrics = [m for m in tuple_metrics if m in grid.metrics]
        if not metrics:
            continue
        stats = [[grid.average(c, m) for m in metrics] for c in range(len(grid.columns))]
        if not any(s.ok for row in stats for s in row):
            continue
        fig, ax = plt.subplots(figsize=(max(5.0, 1.6 * len(metrics) * max(1, len(grid.columns)) / 2), 3.6))
        x = np.arange(len(metrics))
        width = 0.8 / len(grid.columns)
        for c, (label, row) in enumerate(zip(grid.columns, stats)):
            # Missing averages are drawn as no bar (height NaN), never as a zero bar.
            heights = [s.mean if s.ok else np.nan for s in row]
            errs = [s.std if s.ok and s.std is not None else 0.0 for s in row]
            bars = ax.bar(
                x + (c - (len(grid.columns) - 1) / 2) * width, heights, width, yerr=errs, label=label
            )
            ax.bar_label(bars, labels=[f"{h:.1f}" if h == h else "" for h in heights], fontsize=7, padding=2)
        ax.set_xticks(x, [metric_name(m) for m in metrics])
        ax.set_ylabel("Average over datasets (%)")
        ax.set_ylim(0, 105)
        title = f"{LEVEL_TITLES[level]} averages"
        if random:
            title += " — RANDOM WEIGHTS: not comparable to published results"
        ax.set_title(title, fontsize=9, color="crimson" if random else "black")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=min(3, len(grid.columns)))
        fig.tight_layout()
        path = out_dir / f"averages_{level}.png"
        fig.savefig(path, dpi=120, bbox_inches="tight")
        plt.close(fig)
        paths.append(path)
    return paths
