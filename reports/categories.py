"""Per-category tables as papers print them: one table per dataset, its categories in the
dataset's own order, then a Mean row; cells one metric, or paired "(AUROC, AP)" as AnomalyCLIP and
AdaCLIP print them. A failed job's cell quotes that job's own error; a missing one is "not run"."""

from __future__ import annotations

from collections.abc import Sequence

from .builders import all_columns, header_fields, rank_row
from .catalog import metric_name
from .columns import nan_reason
from .grids import ReproducedGrid
from .model import Cell, Notes, Row, RowKey, Stat, Table, tuple_cell, value_cell

#: The pairs papers print per category, by level ("(AUROC, AP)").
PAIRS = {"image": ("image_auroc", "image_ap"), "pixel": ("pixel_auroc", "pixel_ap")}


def _category_stat(grid: ReproducedGrid, agg: dict, col: int, dataset: str, cat: str, metric: str) -> Stat:
    """Mean (± std over seeds) of one category, or why there is none."""
    hit = agg.get((grid.keys[col], dataset, cat, metric))
    if hit is None:
        cov = grid.coverage(col, dataset)
        err = cov.failed.get(cat) if cov is not None else None
        return Stat(notes=(f"job failed: {err}" if err else "not run",), rankable=False)
    if hit["count"] == 0:
        frame = grid.frame
        rows = frame[
            (frame["_col"] == grid.keys[col]) & (frame["dataset"] == dataset) & (frame["category"] == cat)
        ]
        return Stat(notes=(nan_reason(rows, metric),), rankable=False)
    std = hit["std"] * 100.0 if hit["count"] > 1 else None
    return Stat(hit["mean"] * 100.0, std)


def _aggregate(grid: ReproducedGrid, metrics: Sequence[str]) -> dict:
    """(column, dataset, category, metric) -> mean/std/count over seeds: one groupby for all tables
    (per-cell filtering is slow on large stores)."""
    out = {}
    for m in metrics:
        agg = grid.frame.groupby(["_col", "dataset", "category"], sort=False)[m].agg(["mean", "std", "count"])
        for (key, d, cat), hit in agg.to_dict("index").items():
            out[(key, d, cat, m)] = hit
    return out


def category_table(
    grid: ReproducedGrid,
    metrics: Sequence[str],
    dataset: str,
    agg: dict | None = None,
    cols: Sequence[int] | None = None,
) -> Table:
    """One dataset's categories (rows, in its own order) then the Mean row; one metric per cell,
    or a "(a, b)" pair of metrics per cell."""
    cols = list(cols) if cols is not None else all_columns(grid)
    agg = agg if agg is not None else _aggregate(grid, metrics)
    notes = Notes()
    names = [metric_name(m) for m in metrics]
    covs = [grid.coverage(c, dataset) for c in cols]
    cats = grid.catalog.sort_categories(
        dataset, sorted(set().union(*[(c.ok | set(c.failed)) for c in covs if c is not None]))
    )
    rows = []
    for cat in cats:
        stats = [[_category_stat(grid, agg, c, dataset, cat, m) for m in metrics] for c in cols]
        rows.append(Row(cat, _cells(stats, names, notes)))
        rank_row(grid, rows[-1].cells, cols, len(metrics))
    mean = [[grid.stat(c, RowKey(dataset), m) for m in metrics] for c in cols]
    rows.append(Row("Mean", _cells(mean, names, notes), rule_before=True))
    rank_row(grid, rows[-1].cells, cols, len(metrics))
    title = grid.catalog.title(dataset)
    what = f"({', '.join(names)})" if len(metrics) > 1 else names[0]
    return Table(
        f"category-{'-'.join(metrics)}-{dataset}",
        f"{what} per category, {title} ({len(cats)} categories)",
        "Category",
        rows=rows,
        footnotes=notes.texts,
        section="categories",
        remarks=grid.remarks(cols)
        + ["Mean = the mean over the categories each column ran (as the dataset rows of the main tables)."],
        **header_fields(grid, cols),
    )


def _cells(stats: Sequence[Sequence[Stat]], names: Sequence[str], notes: Notes) -> list[Cell]:
    if len(names) == 1:
        return [value_cell(s[0], notes) for s in stats]
    return [tuple_cell(s, names, notes) for s in stats]


def category_tables(
    grid: ReproducedGrid, paired: bool = False, col_sets: Sequence[Sequence[int]] | None = None
) -> list[Table]:
    """Per-category tables of every metric (or every "(AUROC, AP)" pair) and dataset."""
    if paired:
        groups = [tuple(m for m in pair if m in grid.metrics) for pair in PAIRS.values()]
        groups = [g for g in groups if g]
    else:
        groups = [(m,) for m in grid.metrics]
    agg = _aggregate(grid, [m for g in groups for m in g])
    col_sets = col_sets or [all_columns(grid)]
    out = []
    for metrics in groups:
        for d in grid.datasets:
            for cols in col_sets:
                t = category_table(grid, metrics, d, agg, cols)
                if len(col_sets) > 1:
                    t.id += f"-{grid.protocol(cols[0])[0]}"
                out.append(t)
    return out
