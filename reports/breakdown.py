"""Breakdown tables: image AUROC per anomaly type and per category difficulty, where datasets declare them.

Reads only the store frame's ``anomaly_type_image_auroc`` (normals vs that type's anomalies, per
record) and ``difficulty`` columns; datasets that declare neither get no rows. Values are the mean
over the categories that have the type (or difficulty), over all seeds, in percent.
"""

from __future__ import annotations

from collections import defaultdict

import pandas as pd

from adbench.metrics import mean_over_categories

from .tables import (
    Notes,
    ReproducedGrid,
    Row,
    Stat,
    Table,
    _header_fields,
    _value_cell,
    rank_parts,
)

SECTION = "breakdown"
TITLE = "Breakdown by anomaly type and category difficulty"


def _collect(
    frame: pd.DataFrame, grid: ReproducedGrid, groups_of
) -> dict[tuple[str, str], list[list[float]]]:
    """(dataset, group) -> per column, the category values of that group."""
    out: dict[tuple[str, str], list[list[float]]] = defaultdict(lambda: [[] for _ in grid.keys])
    col_of = {key: i for i, key in enumerate(grid.keys)}
    for col_key, row in zip(frame["_col"], frame.itertuples(index=False), strict=True):
        col = col_of[col_key]
        for group, value in groups_of(row):
            out[(row.dataset, group)][col].append(value)
    return out


def _table(
    grid: ReproducedGrid,
    cells: dict[tuple[str, str], list[list[float]]],
    table_id: str,
    title: str,
    header: str,
    remark: str,
) -> Table | None:
    if not cells:
        return None
    notes = Notes()
    rows: list[Row] = []
    for d in grid.datasets:
        groups = [g for (ds, g) in cells if ds == d]
        # easiest first: rows ordered by their mean over the columns, so the hard types end the table
        groups.sort(key=lambda g: -mean_over_categories([v for col in cells[(d, g)] for v in col]))
        for i, g in enumerate(groups):
            row_cells = []
            for values in cells[(d, g)]:
                mean = mean_over_categories(values)
                stat = Stat(mean * 100.0) if values and mean == mean else Stat(notes=("no value",))
                row_cells.append(_value_cell(stat, notes))
            rank_parts([c.parts[0] for c in row_cells])
            counts = {len(v) for v in cells[(d, g)] if v}
            label = f"{g} ({counts.pop()})" if len(counts) == 1 else g
            rows.append(Row(label, row_cells, group=grid.catalog.title(d), group_start=i == 0))
    return Table(
        table_id,
        title,
        header,
        rows=rows,
        footnotes=notes.texts,
        section=SECTION,
        remarks=[remark],
        **_header_fields(grid),
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
