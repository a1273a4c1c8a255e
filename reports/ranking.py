"""Mean ranks across blocks, Friedman's test and a Nemenyi critical-difference diagram (Demšar 2006).

Reads a store frame only. A column is one method config (method title + variant label); a block is
a category (``over="categories"``) or a dataset mean (``over="datasets"``). Only blocks that every
compared column ran enter the ranking (a rank over a subset is not comparable), and the figure's
caption says how many blocks that is.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from adbench.protocol_catalog import takes_references  # noqa: E402
from adbench.rank_tests import Ranking, friedman_nemenyi  # noqa: E402

OVER = ("categories", "datasets")


def column_label(row: pd.Series) -> str:
    """The column name a reader sees: the method's display title and its non-default settings."""
    title = row.get("method_title") or row["method"]
    variant = row.get("variant") or ""
    shots = f" k={int(row['shots'])}" if takes_references(str(row.get("protocol"))) else ""
    return f"{title}{' [' + variant + ']' if variant else ''}{shots}"


@dataclass(frozen=True)
class RankInput:
    """The block × column matrix a ranking is computed from."""

    values: np.ndarray
    columns: list[str]
    blocks: list[str]
    over: str
    metric: str
    dropped_blocks: int  #: blocks left out because some column did not run them


def rank_input(frame: pd.DataFrame, metric: str, over: str = "categories") -> RankInput | None:
    """Per-block metric values (seed means) of every column; None with fewer than two columns or
    blocks in common. One protocol at a time: zero-shot and few-shot columns are not ranked together."""
    if over not in OVER:
        raise ValueError(f"over={over!r}: expected one of {', '.join(OVER)}")
    ok = frame[(frame["status"] == "ok") & frame[metric].notna()] if metric in frame else frame.iloc[0:0]
    if ok.empty:
        return None
    labels = ok["_label"] if "_label" in ok else ok.apply(column_label, axis=1)  # the report's column names
    ok = ok.assign(_col=labels)
    cells = ok.groupby(["_col", "dataset", "category"], sort=True)[metric].mean().reset_index()
    if over == "datasets":
        cells = cells.groupby(["_col", "dataset"], sort=True)[metric].mean().reset_index()
        cells["_block"] = cells["dataset"]
    else:
        cells["_block"] = cells["dataset"] + "/" + cells["category"]
    wide = cells.pivot(index="_block", columns="_col", values=metric)
    complete = wide.dropna()
    if complete.shape[0] < 2 or complete.shape[1] < 2:
        return None
    return RankInput(
        complete.to_numpy(),
        list(complete.columns),
        list(complete.index),
        over,
        metric,
        len(wide) - len(complete),
    )


def rank(data: RankInput, alpha: float = 0.05) -> Ranking:
    return friedman_nemenyi(data.values, data.columns, alpha)


def cd_diagram(ranking: Ranking, data: RankInput, out: Path) -> list[Path]:
    """A Demšar-style critical-difference diagram: methods on a mean-rank axis (1 = best, left),
    bars joining groups whose ranks differ by less than the CD; PNG and PDF."""
    k = len(ranking.methods)
    order = np.argsort(ranking.mean_ranks)
    ranks = np.asarray(ranking.mean_ranks)[order]
    names = [ranking.methods[i] for i in order]
    rows = (k + 1) // 2
    fig, ax = plt.subplots(figsize=(6.4, 0.9 + 0.22 * rows))
    ax.hlines(0.85, 1, k, color="black", linewidth=1)
    for r in range(1, k + 1):
        ax.vlines(r, 0.83, 0.87, color="black", linewidth=1)
        ax.text(r, 0.9, str(r), ha="center", va="bottom", fontsize=8)
    step = 0.12
    for i, (name, r) in enumerate(zip(names, ranks)):
        left = i < (k + 1) // 2
        y = 0.78 - step * (i if left else k - 1 - i)
        x_text = 0.9 if left else k + 0.1
        ax.plot([r, r, x_text], [0.85, y, y], color="black", linewidth=0.8)
        ax.text(x_text, y, f"{name} ({r:.2f})", ha="right" if left else "left", va="center", fontsize=7.5)
    cd = ranking.critical_difference
    ax.plot([1, 1 + cd], [0.97, 0.97], color="black", linewidth=2)
    ax.text(1 + cd / 2, 0.99, f"CD = {cd:.2f}", ha="center", va="bottom", fontsize=8)
    for lo, hi in _cliques(ranks, cd):
        y = 0.8 - 0.02 * lo
        ax.plot([ranks[lo] - 0.03, ranks[hi] + 0.03], [y, y], color="tab:red", linewidth=3, alpha=0.8)
    ax.axis("off")
    ax.set_xlim(1 - 0.2 * k, k + 0.2 * k)
    ax.set_ylim(0.78 - step * rows, 1.05)
    left_out = (
        f"; {data.dropped_blocks} of {data.dropped_blocks + len(data.blocks)} {data.over} left out "
        "(not run by every column)"
        if data.dropped_blocks
        else ""
    )
    caption = (
        f"{data.metric}: mean rank over {len(data.blocks)} {data.over} (1 = best; Friedman p = {ranking.p:.3g}; "
        f"Nemenyi, α = {ranking.alpha}); red bars join columns with no significant difference{left_out}"
    )
    ax.text(
        0.0, -0.02, "\n".join(textwrap.wrap(caption, 120)), transform=ax.transAxes, fontsize=6.5, va="top"
    )
    paths = []
    for ext in ("png", "pdf"):
        path = out.with_suffix(f".{ext}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def _cliques(ranks: np.ndarray, cd: float) -> list[tuple[int, int]]:
    """Maximal runs of sorted ranks spanning less than the CD (each drawn once as one bar)."""
    out: list[tuple[int, int]] = []
    for i in range(len(ranks)):
        j = i
        while j + 1 < len(ranks) and ranks[j + 1] - ranks[i] < cd:
            j += 1
        if j > i and not any(a <= i and j <= b for a, b in out):
            out.append((i, j))
    return out
