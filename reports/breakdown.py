"""Breakdown tables: image AUROC per anomaly type and per category difficulty, where datasets declare them.

Reads only the store frame's ``anomaly_type_image_auroc`` (normals vs that type's anomalies, per
record) and ``difficulty`` columns; datasets that declare neither get no rows. Values are the mean
over the categories that have the type (or difficulty), over all seeds, in percent. A row's label
says over how many categories it runs; a cell over fewer says "(k/n)" and is not ranked.
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from adbench.metrics import mean_over_categories

from .builders import all_columns, header_fields, rank_row
from .grids import ReproducedGrid
from .model import Notes, Row, Stat, Table, value_cell

SECTION = "breakdown"
TITLE = "Breakdown by anomaly type and category difficulty"


Cells = dict[tuple[str, str], list[dict[str, list[float]]]]


def _collect(frame: pd.DataFrame, grid: ReproducedGrid, groups_of) -> Cells:
    """(dataset, group) -> per column, category -> its values of that group (one per seed)."""
    out: Cells = defaultdict(lambda: [defaultdict(list) for _ in grid.keys])
    col_of = {key: i for i, key in enumerate(grid.keys)}
    for col_key, row in zip(frame["_col"], frame.itertuples(index=False), strict=True):
        for group, value in groups_of(row):
            out[(row.dataset, group)][col_of[col_key]][row.category].append(value)
    return out


def _cell_stat(per_category: dict[str, list[float]], n: int) -> Stat:
    """Mean over this column's categories of the group; "(k/n)" and unranked when it lacks some."""
    values = [mean_over_categories(v) for v in per_category.values()]
    mean = mean_over_categories(values) if values else float("nan")
    if not values or mean != mean:
        return Stat(notes=("no value",), rankable=False)
    k = len(values)
    partial = k < n
    notes = (f"over {k} of the {n} categories with this group; not ranked",) if partial else ()
    return Stat(mean * 100.0, notes=notes, coverage=f"{k}/{n}" if partial else "", rankable=not partial)


def _table(
    grid: ReproducedGrid, cells: Cells, table_id: str, title: str, header: str, remark: str
) -> Table | None:
    if not cells:
        return None
    notes = Notes()
    rows: list[Row] = []
    cols = all_columns(grid)
    for d in grid.datasets:
        groups = [g for (ds, g) in cells if ds == d]
        # easiest first: rows ordered by their mean over the columns, so the hard types end the table
        groups.sort(
            key=lambda g: (
                -mean_over_categories([v for col in cells[(d, g)] for vs in col.values() for v in vs])
            )
        )
        for i, g in enumerate(groups):
            n = len(set().union(*[set(col) for col in cells[(d, g)]]))
            row_cells = [value_cell(_cell_stat(col, n), notes) for col in cells[(d, g)]]
            rank_row(grid, row_cells, cols)
            rows.append(Row(f"{g} ({n})", row_cells, group=grid.catalog.title(d), group_start=i == 0))
    return Table(
        table_id,
        title,
        header,
        rows=rows,
        footnotes=notes.texts,
        section=SECTION,
        remarks=[
            remark,
            "(n) after a row label = the categories that have it; (k/n) in a cell = a column over fewer.",
        ]
        + grid.remarks(cols),
        **header_fields(grid, cols),
    )


def breakdown_tables(grid: ReproducedGrid) -> list[Table]:
    """Image AUROC per anomaly type and per difficulty; empty when no record carries either."""
    frame = grid.frame
    tables = []
    if "anomaly_type_image_auroc" in frame:

        def by_type(row):
            return [(t, v) for t, v in (row.anomaly_type_image_auroc or {}).items() if v is not None]

        tables.append(
            _table(
                grid,
                _collect(frame, grid, by_type),
                "breakdown-anomaly-type",
                "Image-AUROC per anomaly type",
                "Anomaly type (categories)",
                "Per category: normal test images vs the anomalies of one type only; then the mean over "
                "the categories that have the type.",
            )
        )
    if "difficulty" in frame and "image_auroc" in frame:

        def by_difficulty(row):
            ok = isinstance(row.difficulty, str) and row.image_auroc == row.image_auroc
            return [(row.difficulty, row.image_auroc)] if ok else []

        tables.append(
            _table(
                grid,
                _collect(frame, grid, by_difficulty),
                "breakdown-difficulty",
                "Image-AUROC per category difficulty",
                "Difficulty (categories)",
                "Difficulty as the dataset declares it for each category; mean image AUROC over its categories.",
            )
        )
    return [t for t in tables if t is not None]
