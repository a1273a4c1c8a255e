"""Qualitative figures (as DMA-SAP Figures 4-6): per category, rows of image | ground truth | one
anomaly map per column, for the test images where the columns disagree most. PNG and PDF.

Maps come from the store's ``predictions/<key>.npz``, read through the store (one map per image,
of any size: ``--eval-size original`` stores maps of several sizes); the images themselves are not in the store,
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

from .grids import ReproducedGrid  # noqa: E402
from .options import ImageLoader  # noqa: E402

PANEL_IN = 1.25  # inches per panel
MAX_FIGURES = 6  # categories drawn when none are chosen


def _column_maps(grid: ReproducedGrid, store: ResultsStore, dataset: str, category: str) -> dict[int, dict]:
    """Per column with maps for this category: its lowest-seed job's ids, labels, and masks and maps
    as one array per image (lists: sizes may differ between images)."""
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
            pred = store.load_predictions(rows.sort_values("seed")["key"].iloc[0])
        except AdbenchError as exc:  # as --ci does: one column without maps, not the whole report
            warnings.warn(f"figures: {exc}; column left out of {dataset}/{category}", stacklevel=2)
            continue
        if pred.maps is None or not len(pred.maps):
            continue
        out[c] = {
            "ids": pred.ids,
            "labels": pred.labels,
            "masks": list(pred.masks) if pred.masks is not None else [],
            "maps": list(pred.maps),
        }
    return out


def _normalise(maps: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Min-max over the whole category (one colour scale per column, as the papers' heatmaps)."""
    maps = [m.astype(np.float32) for m in maps]
    lo = min(float(np.nanmin(m)) for m in maps)
    hi = max(float(np.nanmax(m)) for m in maps)
    return [(m - lo) / (hi - lo) if hi > lo else np.zeros_like(m) for m in maps]


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


def _aligned(per_col: dict[int, dict], where: str) -> dict[int, dict]:
    """Every column's arrays in the first column's image order (an error if the images differ)."""
    cols = list(per_col)
    if not cols:
        return per_col
    ids = [str(i) for i in per_col[cols[0]]["ids"]]
    for c in cols[1:]:
        index = {str(i): j for j, i in enumerate(per_col[c]["ids"])}
        if set(index) != set(ids):
            raise AdbenchError(f"figures: columns disagree on the test images of {where}")
        order = [index[i] for i in ids]
        per_col[c] = {k: [v[j] for j in order] if len(v) else v for k, v in per_col[c].items()}
    return per_col


def _colour_bar(fig, axes: np.ndarray, n_maps: int) -> None:
    """One colour bar beside the map columns: each column is min-max normalised to [0, 1]."""
    mappable = plt.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap="jet")
    bar = fig.colorbar(mappable, ax=axes[:, -n_maps:], shrink=0.8, pad=0.02)
    bar.set_label("normalised score (per column: category min = 0, max = 1)", fontsize=6)
    bar.ax.tick_params(labelsize=6)


def _column_titles(axes: Sequence, grid: ReproducedGrid, lead: list[str], cols: Sequence[int]) -> None:
    """Panel titles: name, legend tag and protocol; RANDOM WEIGHTS in red on each column that ran so."""
    for ax, title in zip(axes, lead):
        ax.set_title(title, fontsize=6.5)
    for ax, c in zip(axes[len(lead) :], cols):
        tag = grid.headers[c][1][0].replace(" · random weights", "").replace(" · ", "\n")
        red = grid.is_random(c)
        text = f"{grid.headers[c][0]}\n{tag}" + ("\nRANDOM WEIGHTS" if red else "")
        ax.set_title(text, fontsize=6.5, color="crimson" if red else "black")


def category_figure(
    grid: ReproducedGrid,
    store: ResultsStore,
    dataset: str,
    category: str,
    out_dir: Path,
    n_images: int,
    images: ImageLoader | None,
) -> tuple[Path, str] | None:
    """One figure for one category and its caption; None when no column stored maps for it."""
    per_col = _aligned(_column_maps(grid, store, dataset, category), f"{dataset}/{category}")
    if not per_col:
        return None
    cols = list(per_col)
    ids = [str(i) for i in per_col[cols[0]]["ids"]]
    size = max(max(m.shape) for c in cols for m in per_col[c]["maps"])
    maps = {c: np.stack([_resize(m, size) for m in _normalise(per_col[c]["maps"])]) for c in cols}
    labels = np.asarray(per_col[cols[0]]["labels"])
    masks = per_col[cols[0]]["masks"]
    picked = most_disagreeing([maps[c] for c in cols], labels, n_images)
    pictures = images(dataset, category, [ids[i] for i in picked], size) if images is not None else {}
    n_cols = (1 if pictures else 0) + (1 if len(masks) else 0) + len(cols)
    fig, axes = plt.subplots(
        len(picked),
        n_cols,
        figsize=(PANEL_IN * n_cols + 0.6, PANEL_IN * len(picked) + 0.7),
        squeeze=False,
        layout="constrained",
    )
    lead = (["Image"] if pictures else []) + (["GT"] if len(masks) else [])
    _column_titles(axes[0], grid, lead, cols)
    for r, i in enumerate(picked):
        panels: list[tuple[np.ndarray, str | None]] = []
        picture = pictures.get(ids[i])
        if pictures:
            panels.append((picture if picture is not None else np.zeros((size, size, 3), np.uint8), None))
        if len(masks):
            panels.append((_resize(masks[i].astype(np.float32), size), "gray"))
        panels += [(maps[c][i], "jet") for c in cols]
        for ax, (data, cmap) in zip(axes[r], panels):
            if cmap == "jet" and picture is not None:
                ax.imshow(picture)
                ax.imshow(data, cmap=cmap, vmin=0, vmax=1, alpha=0.5)
            else:
                ax.imshow(data, cmap=cmap, vmin=0, vmax=1) if cmap else ax.imshow(data)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(ids[i], fontsize=6)
    _colour_bar(fig, axes, len(cols))
    fig.suptitle(f"{grid.catalog.title(dataset)} / {category}", fontsize=8)
    caption = figure_caption(grid, dataset, category, cols, len(picked), images is not None)
    path = safe_path(out_dir / "figures", f"qualitative_{dataset}_{category}", suffix=".png")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    fig.savefig(path.with_suffix(".pdf"))
    plt.close(fig)
    return path, caption


def figure_caption(
    grid: ReproducedGrid, dataset: str, category: str, cols: Sequence[int], n: int, with_images: bool
) -> str:
    """What a figure shows: its columns (only those present), how the images were chosen, how
    each column is normalised."""
    names = "; ".join(grid.columns[c] for c in cols)  # a random-weights column says so in its name
    text = (
        f"{grid.catalog.title(dataset)} / {category}: "
        + ("image, " if with_images else "")
        + f"ground truth, then the anomaly maps of {names}. The {n} test images where the columns' maps "
        "differ most (mean per-pixel std across columns; anomalous images first). Each column's maps "
        "are min-max normalised over all test images of the category (colour bar: 0 = its minimum, "
        "1 = its maximum), so colours compare images within a column, not across columns."
    )
    return text + ("" if with_images else " The image column is left out: no dataset loader.")


def qualitative_figures(
    grid: ReproducedGrid,
    store: ResultsStore,
    out_dir: Path,
    n_images: int,
    categories: Sequence[str] | None = None,
    images: ImageLoader | None = None,
) -> tuple[list[Path], dict[str, str]]:
    """Figures for the chosen categories (``dataset/category`` or ``category``), by default the
    ``MAX_FIGURES`` categories with the most columns run (then in the datasets' order); returns
    the figures and their captions (by file stem)."""
    ran = grid.frame.groupby(["dataset", "category"])["_col"].nunique()
    pairs = [
        (d, c)
        for d in grid.datasets
        for c in grid.catalog.sort_categories(
            d, grid.frame.loc[grid.frame["dataset"] == d, "category"].unique()
        )
    ]
    if categories:
        wanted = set(categories)
        chosen = [(d, c) for d, c in pairs if c in wanted or f"{d}/{c}" in wanted]
        missing = wanted - {c for _, c in chosen} - {f"{d}/{c}" for d, c in chosen}
        if missing:
            raise AdbenchError(f"--figure-categories {sorted(missing)[0]!r}: no records for that category")
        pairs = chosen
    else:
        pairs = sorted(pairs, key=lambda p: -int(ran.get(p, 0)))  # stable: datasets' order within a count
    paths: list[Path] = []
    captions: dict[str, str] = {}
    for d, c in pairs:
        drawn = category_figure(grid, store, d, c, out_dir, n_images, images)
        if drawn is not None:
            paths.append(drawn[0])
            captions[drawn[0].stem] = drawn[1]
        if not categories and len(paths) >= MAX_FIGURES:
            break
    return paths, captions
