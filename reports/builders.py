"""Table builders: paper layouts filled from any ``Grid`` (reproduced or published).

Metric tables (DMA-SAP Tables 1-6: rows = datasets then Average, columns = methods), the tuple
layout (ViP2-CLIP Tables 1-2) and per-category tables (the dataset's own category order, a mean
row, optionally "(AUROC, AP)" cells as AnomalyCLIP and AdaCLIP print them). Cells are ranked only
within a comparable group of columns (``Grid.rank_group``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .catalog import TUPLES, metric_name
from .grids import Grid
from .model import (
    Cell,
    Notes,
    Part,
    Row,
    RowKey,
    Stat,
    Table,
    fmt_diff,
    rank_in_groups,
    tuple_cell,
    value_cell,
)

#: (column, row, metric) -> the paper's value beside ours, and remarks for the table.
PublishedFn = Callable[[int, RowKey, str], tuple[Stat, list[str]]]


@dataclass(frozen=True)
class PaperOnly:
    """A method of the paper's table that was not run here: a paper-only column."""

    name: str
    value: Callable[[RowKey, str], Stat]


def header_fields(grid: Grid, cols: Sequence[int], extra: Sequence[PaperOnly] = ()) -> dict:
    """Table keyword arguments for short column headers with their small detail lines."""
    return {
        "columns": [grid.headers[c][0] for c in cols] + [p.name for p in extra],
        "column_details": [list(grid.headers[c][1]) for c in cols] + [["paper only"] for _ in extra],
    }


def all_columns(grid: Grid) -> list[int]:
    return list(range(len(grid.columns)))


def rank_row(grid: Grid, cells: Sequence[Cell], cols: Sequence[int], width: int = 1) -> None:
    """Rank the value cells of one row within their column's comparable group."""
    values = [c for c in cells if c.kind == "value"]
    groups = [grid.rank_group(c) for c in cols]
    for i in range(width):
        rank_in_groups([cell.parts[i] for cell in values], groups)


def _new_group(grid: Grid, rows: Sequence[RowKey], i: int) -> bool:
    """A dataset row whose group (industrial, medical) differs from the row above: a rule between."""
    if i == 0 or rows[i].dataset is None or rows[i - 1].dataset is None:
        return False
    return grid.catalog.group(rows[i].dataset) != grid.catalog.group(rows[i - 1].dataset)


def metric_table(
    grid: Grid,
    metric: str,
    *,
    rows: Sequence[RowKey] | None = None,
    cols: Sequence[int] | None = None,
    published: PublishedFn | None = None,
    paper_only: Sequence[PaperOnly] = (),  # needs ``published``
    table_id: str = "",
    title: str = "",
) -> Table:
    """DMA-SAP Tables 1-6: rows = datasets then Average, columns = methods, one metric.

    With ``published``, every column is split into ours / paper / Δ; ``paper_only`` columns
    show the paper's number of a method not run here (only beside published numbers).
    """
    cols = list(cols) if cols is not None else all_columns(grid)
    notes = Notes()
    remarks: list[str] = []
    out_rows = []
    row_list = list(rows) if rows is not None else grid.row_keys()
    for i, r in enumerate(row_list):
        cells = []
        for c in cols:
            stat = grid.stat(c, r, metric)
            cells.append(value_cell(stat, notes))
            if published is not None:
                theirs, extra = published(c, r, metric)
                cells.append(value_cell(theirs, notes, kind="published"))
                remarks += [x for x in extra if x not in remarks]
                diff = fmt_diff(stat.mean, theirs.mean) if theirs.diffable else "—"
                why = [theirs.diff_note] if theirs.diff_note and stat.ok and theirs.ok else []
                cells.append(Cell([Part(diff)], kind="diff", marks=notes.marks(why)))
        for p in paper_only:  # the paper's number in the "paper" subcolumn, never ranked
            theirs = value_cell(p.value(r, metric), notes, kind="published")
            cells += [Cell([Part("")], kind="paper-only"), theirs, Cell([Part("")], kind="diff")]
        rank_row(grid, cells, cols)
        first_avg = r.is_average and not any(x.is_average for x in row_list[:i])
        out_rows.append(
            Row(grid.row_label(r, row_list), cells, rule_before=first_avg or _new_group(grid, row_list, i))
        )
        out_rows[-1].info = grid.row_info(r)
    if paper_only:
        remarks.append("Columns marked 'paper only': the paper's number of a method not run here.")
    return Table(
        id=table_id or f"metric-{metric}",
        title=title or metric_name(metric),
        row_header="Dataset",
        rows=out_rows,
        subcolumns=["ours", "paper", "Δ"] if published is not None else [],
        footnotes=notes.texts,
        remarks=grid.remarks(cols) + remarks,
        info_header=grid.info_header,
        **header_fields(grid, cols, paper_only),
    )


def tuple_table(
    grid: Grid,
    *,
    cols: Sequence[int] | None = None,
    table_id: str = "tuples",
    title: str = "",
    group: str | None = None,
) -> Table:
    """ViP2-CLIP Tables 1-2: one "(AUROC, AP, F1)" tuple per cell, image then pixel level."""
    cols = list(cols) if cols is not None else all_columns(grid)
    notes = Notes()
    out_rows: list[Row] = []
    for level, metrics in TUPLES.values():
        if not any(m in grid.metrics for m in metrics):
            continue
        names = grid.row_keys(group)
        for i, r in enumerate(names):
            cells = [
                tuple_cell([grid.stat(c, r, m) for m in metrics], [metric_name(m) for m in metrics], notes)
                for c in cols
            ]
            rank_row(grid, cells, cols, len(metrics))
            row = Row(grid.row_label(r, names), cells, group=level, group_start=i == 0, info=grid.row_info(r))
            row.rule_before = r.is_average or (i == 0 and bool(out_rows))
            out_rows.append(row)
    remark = "PRO = the official MVTec AD AUPRO (pixel_aupro); F1 = F1-max; ± std over seeds is in the per-metric tables."
    return Table(
        table_id,
        title or "All metrics, tuple layout",
        "Dataset",
        rows=out_rows,
        footnotes=notes.texts,
        section="tuples",
        remarks=grid.remarks(cols) + [remark],
        info_header=grid.info_header,
        **header_fields(grid, cols),
    )
