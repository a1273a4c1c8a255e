"""Qualitative figures (as DMA-SAP Figures 4-6): per category, rows of image | ground truth | one
anomaly map per column, for the test images where the columns disagree most. PNG and PDF.

Maps come from the store's ``predictions/<key>.npz``; the images themselves are not in the store,
so they come from an ``ImageLoader`` the caller passes (the CLI builds one from the dataset plugin);
without it the image column is left out and the figure says so.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from adbench.errors import AdbenchError  # noqa: E402
from adbench.safe_names import safe_path  # noqa: E402
from adbench.store import ResultsStore  # noqa: E402

from .render import ImageLoader  # noqa: E402
from .tables import ReproducedGrid  # noqa: E402

PANEL_IN = 1.25  # inches per panel
MAX_FIGURES = 6  # categories drawn when none are chosen


def _column_maps(grid: ReproducedGrid, store: ResultsStore, dataset: str, category: str) -> dict[int, dict]:
    """Per column with maps for this category: its lowest-seed job's ids, labels, masks and maps."""
    out = {}
    for c, key in enumerate(grid.keys):
        rows = grid.frame[
            (grid.frame["_col"] == key)
            & (grid.frame["dataset"] == dataset)
            & (grid.frame["category"] == category)
        ]
        if rows.empty:
            continue
        try:
            pred = store.read_predictions(rows.sort_values("seed")["key"].iloc[0])
        except AdbenchError as exc:  # as --ci does: one column without maps, not the whole report
            warnings.warn(f"figures: {exc}; column left out of {dataset}/{category}", stacklevel=2)
            continue
        if pred["maps"].ndim != 3 or not len(pred["maps"]):
            continue
        out[c] = {k: pred[k] for k in ("ids", "labels", "masks", "maps")}
    return out


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Min-max over the whole category (one colour scale per column, as the papers' heatmaps)."""
    maps = maps.astype(np.float32)
    lo, hi = float(np.nanmin(maps)), float(np.nanmax(maps))
    return (maps - lo) / (hi - lo) if hi > lo else np.zeros_like(maps)


def _resize(arr: np.ndarray, size: int) -> np.ndarray:
    if arr.shape[:2] == (size, size):
        return arr
    return np.asarray(Image.fromarray(arr.astype(np.float32)).resize((size, size), Image.BILINEAR))


def most_disagreeing(maps: Sequence[np.ndarray], labels: np.ndarray, n: int) -> list[int]:
    """Indices of the ``n`` images whose normalised maps differ most between columns (mean
    per-pixel std across columns); anomalous images first, since their ground truth shows a defect."""
    stack = np.stack(maps)  # (columns, N, H, W)
    spread = stack.std(axis=0).mean(axis=(1, 2)) if len(maps) > 1 else stack[0].max(axis=(1, 2))
    order = sorted(range(len(labels)), key=lambda i: (-int(labels[i]), -float(spread[i])))
    return order[:n]


def category_figure(
    grid: ReproducedGrid,
    store: ResultsStore,
    dataset: str,
    category: str,
    out_dir: Path,
    n_images: int,
    images: ImageLoader | None,
) -> Path | None:
    """One figure for one category; None when no column stored maps for it."""
    per_col = _column_maps(grid, store, dataset, category)
    if not per_col:
        return None
    cols = list(per_col)
    ids = [str(i) for i in per_col[cols[0]]["ids"]]
    for c in cols[1:]:  # align every column on the first one's image order
        index = {str(i): j for j, i in enumerate(per_col[c]["ids"])}
        if set(index) != set(ids):
            raise AdbenchError(f"figures: columns disagree on the test images of {dataset}/{category}")
        order = [index[i] for i in ids]
        per_col[c] = {k: v[order] if len(v) else v for k, v in per_col[c].items()}
    size = max(per_col[c]["maps"].shape[-1] for c in cols)
    maps = {c: np.stack([_resize(m, size) for m in _normalise(per_col[c]["maps"])]) for c in cols}
    labels = per_col[cols[0]]["labels"]
    masks = per_col[cols[0]]["masks"]
    picked = most_disagreeing([maps[c] for c in cols], labels, n_images)
    pictures = images(dataset, category, [ids[i] for i in picked], size) if images is not None else {}
    n_cols = (1 if pictures else 0) + (1 if len(masks) else 0) + len(cols)
    fig, axes = plt.subplots(
        len(picked), n_cols, figsize=(PANEL_IN * n_cols, PANEL_IN * len(picked) + 0.5), squeeze=False
    )
    titles = (
        (["Image"] if pictures else []) + (["GT"] if len(masks) else []) + [grid.headers[c][0] for c in cols]
    )
    # the legend tag and protocol (the random-weights flag is in the caption)
    tags = [""] * ((1 if pictures else 0) + (1 if len(masks) else 0)) + [
        grid.headers[c][1][0].replace(" · random weights", "").replace(" · ", "\n") for c in cols
    ]
    for r, i in enumerate(picked):
        panels: list[tuple[np.ndarray, str | None]] = []
        picture = pictures.get(ids[i])
        if pictures:
            panels.append((picture if picture is not None else np.zeros((size, size, 3), np.uint8), None))
        if len(masks):
            panels.append((_resize(masks[i].astype(np.float32), size), "gray"))
        panels += [(maps[c][i], "jet") for c in cols]
        for a, (ax, (data, cmap)) in enumerate(zip(axes[r], panels)):
            if cmap == "jet" and picture is not None:
                ax.imshow(picture)
                ax.imshow(data, cmap=cmap, vmin=0, vmax=1, alpha=0.5)
            else:
                ax.imshow(data, cmap=cmap, vmin=0, vmax=1) if cmap else ax.imshow(data)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[a] + (f"\n{tags[a]}" if tags[a] else ""), fontsize=6.5)
        axes[r][0].set_ylabel(ids[i], fontsize=6)
    caption = f"{grid.catalog.title(dataset)} / {category}: images where the maps disagree most"
    if images is None:
        caption += " (image column left out: no dataset loader)"
    if any(grid.is_random(c) for c in cols):
        caption += " — RANDOM WEIGHTS"
    fig.suptitle(caption, fontsize=8)
    fig.tight_layout()
    path = safe_path(out_dir / "figures", f"qualitative_{dataset}_{category}", suffix=".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return path


def qualitative_figures(
    grid: ReproducedGrid,
    store: ResultsStore,
    out_dir: Path,
    n_images: int,
    categories: Sequence[str] | None = None,
    images: ImageLoader | None = None,
) -> list[Path]:
    """Figures for the chosen categories (``dataset/category`` or ``category``), by default the
    first ``MAX_FIGURES`` categories with stored maps."""
    pairs = list(
        dict.fromkeys(
            (d, c)
            for d in grid.datasets
            for c in sorted(grid.frame.loc[grid.frame["dataset"] == d, "category"].unique())
        )
    )
    if categories:
        wanted = set(categories)
        chosen = [(d, c) for d, c in pairs if c in wanted or f"{d}/{c}" in wanted]
        missing = wanted - {c for _, c in chosen} - {f"{d}/{c}" for d, c in chosen}
        if missing:
            raise AdbenchError(f"--figure-categories {sorted(missing)[0]!r}: no records for that category")
        pairs = chosen
    paths = []
    for d, c in pairs:
        path = category_figure(grid, store, d, c, out_dir, n_images, images)
        if path is not None:
            paths.append(path)
        if not categories and len(paths) >= MAX_FIGURES:
            break
    return paths
