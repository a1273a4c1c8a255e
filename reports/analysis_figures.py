"""The report's statistical figures: a critical-difference diagram per protocol and headline
metric (mean ranks over categories), and shot curves for few-shot columns run at several k."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from adbench.safe_names import safe_name

from .catalog import protocol_title
from .grids import ReproducedGrid
from .ranking import cd_diagram, rank, rank_input
from .shot_curves import shot_curves

#: The headline metric of each level that the diagrams rank.
RANKED_METRICS = ("image_auroc", "pixel_auroc")


def _labelled(grid: ReproducedGrid) -> pd.DataFrame:
    """The grid's records with each column's header text as ``_label`` (names as in the tables) and
    its comparable group as ``_group`` (same protocol, k and eval size: ``grid.rank_group``)."""
    names = {key: grid.headers[i][0] for i, key in enumerate(grid.keys)}
    groups = {key: grid.rank_group(i) for i, key in enumerate(grid.keys)}
    return grid.frame.assign(_label=grid.frame["_col"].map(names), _group=grid.frame["_col"].map(groups))


def analysis_figures(grid: ReproducedGrid, out_dir: Path) -> tuple[list[Path], dict[str, str]]:
    """PNG paths (a PDF beside each, under ``out_dir/figures``) and their captions by stem."""
    frame = _labelled(grid)
    paths: list[Path] = []
    captions: dict[str, str] = {}
    figures = out_dir / "figures"
    # a protocol and k split into several comparable groups (eval sizes) names the size in the file
    split = frame.groupby(["protocol", "shots"])["_group"].nunique()
    for _group, sub in frame.groupby("_group", sort=False):  # only columns a table would rank together
        protocol, shots = str(sub["protocol"].iloc[0]), int(sub["shots"].iloc[0])
        size = str(sub["eval_size"].iloc[0]) if "eval_size" in sub else ""
        for metric in RANKED_METRICS:
            data = rank_input(sub, metric, "categories") if metric in sub else None
            if data is None:
                continue
            result = rank(data)
            sized = f"_{size}px" if split[(protocol, shots)] > 1 else ""
            stem = safe_name(f"cd_{protocol}{f'_k{shots}' if shots else ''}{sized}_{metric}")
            png, _ = cd_diagram(result, data, figures / stem)
            paths.append(png)
            captions[stem] = (
                f"Critical-difference diagram, {protocol_title(protocol)}{f' k={shots}' if shots else ''}"
                f"{f', eval size {size}' if size else ''}: "
                f"mean rank of {metric} over the {len(data.blocks)} categories every column ran "
                f"(Friedman p = {result.p:.3g}; Nemenyi CD = {result.critical_difference:.2f} at α = 0.05)."
            )
    for metric in RANKED_METRICS:
        for path in shot_curves(frame, metric, figures):
            if path.suffix == ".png":
                paths.append(path)
                captions[path.stem] = (
                    f"{metric} against the number of shots k: mean over seeds of the category mean "
                    "(categories every k ran), band = ±1 std over seeds."
                )
    return paths, captions
