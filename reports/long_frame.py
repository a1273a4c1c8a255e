"""The long-form numbers behind the CSV: one row per column × (category, dataset, Average) × metric,
with coverage, notes and (with ``--published``) the paper's value and the guarded difference."""

from __future__ import annotations

import pandas as pd

from .builders import PublishedFn
from .grids import ReproducedGrid
from .model import RowKey


def _category_rows(grid: ReproducedGrid, c: int, base: dict) -> list[dict]:
    """Per category of one column: the mean over seeds (for plotting)."""
    out = []
    rows = grid.rows_of(c)
    for m in grid.metrics:
        per_cat = rows.groupby(["dataset", "category"])[m].agg(["mean", "std", "count"]).reset_index()
        for r in per_cat.itertuples(index=False):
            out.append(
                {
                    **base,
                    "level": "category",
                    "dataset": r.dataset,
                    "category": r.category,
                    "metric": m,
                    "value": round(100 * r.mean, 4) if r.count else None,
                    "std": round(100 * r.std, 4) if r.count > 1 else None,
                    "coverage": "",
                    "note": "" if r.count else "undefined (NaN)",
                }
            )
    return out


def _dataset_rows(grid: ReproducedGrid, c: int, base: dict, side: PublishedFn | None) -> list[dict]:
    """Per dataset and the Average of one column, with the paper's value beside it."""
    out = []
    for r in [RowKey(d) for d in grid.datasets] + [RowKey.average()]:
        for m in grid.metrics:
            s = grid.stat(c, r, m)
            row = {
                **base,
                "level": "average" if r.is_average else "dataset",
                "dataset": r.dataset or "average",
                "category": "",
                "metric": m,
                "value": round(s.mean, 4) if s.ok else None,
                "std": None if s.std is None else round(s.std, 4),
                "coverage": s.coverage,
                "note": "; ".join(s.notes),
            }
            if side is not None:
                theirs, remarks = side(c, r, m)
                row["published"] = theirs.mean
                notes = list(theirs.notes) + ([theirs.diff_note] if theirs.diff_note else []) + remarks
                row["published_note"] = "; ".join(notes)
                ok = s.ok and theirs.ok and theirs.diffable
                row["difference"] = round(round(s.mean, 1) - theirs.mean, 1) if ok else None
            out.append(row)
    return out


def long_frame(grid: ReproducedGrid, banner: str | None, side: PublishedFn | None) -> pd.DataFrame:
    """One CSV row per column × (category, dataset, Average) × metric; ``level`` says which."""
    out = []
    for c in range(len(grid.keys)):
        protocol, shots = grid.protocol(c)
        base = {
            "column": grid.columns[c],
            "method": grid.method(c),
            "method_title": grid.title(c),
            "protocol": protocol,
            "shots": shots,
            "settings": grid.settings_text(c),
            "n_seeds": grid.n_seeds(c),
            "random_weights": grid.is_random(c),
            "warning": banner or "",
        }
        out += _category_rows(grid, c, base) + _dataset_rows(grid, c, base, side)
    return pd.DataFrame(out)
