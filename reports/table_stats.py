"""Significance marks for paper tables: which columns are not significantly worse than a row's best.

A table cell is a set of jobs (one per category and seed). For each row the best column is tested
against every other column on the jobs they share (paired by category and seed: DeLong for
single-seed image AUROC, the paired bootstrap otherwise); all p-values of one table are Holm-
corrected together. Reads predictions through the store; pure otherwise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from adbench import significance
from adbench.errors import AdbenchError
from adbench.significance import Predictions
from adbench.store import ResultsStore

from .model import RowKey, Table
from .pairwise import _predictions

#: (category, seed, job key) of one table cell's jobs.
CellJobs = Sequence[tuple[str, int, str]]

TEST_NOTE = (
    "† not significantly worse than the best (bold) of its row: paired test on the same test images "
    "(DeLong for image AUROC, else a paired bootstrap over images; seeds resampled for few-shot), "
    "Holm-corrected over the table's comparisons, α = 0.05"
)


@dataclass(frozen=True)
class Mark:
    """The outcome for one (row, column) cell compared with its row's best."""

    p: float  #: raw p-value
    p_holm: float
    tied: bool  #: not significantly worse than the best (after Holm)


def _pairs(best: CellJobs, other: CellJobs) -> dict[str, list[tuple[str, str]]]:
    """category -> [(best key, other key)] for the (category, seed) both ran."""
    theirs = {(c, s): k for c, s, k in other}
    out: dict[str, list[tuple[str, str]]] = {}
    for c, s, k in sorted(best):
        if (c, s) in theirs:
            out.setdefault(c, []).append((k, theirs[(c, s)]))
    return out


def _compare_cells(
    cache: PredictionCache, metric: str, best: CellJobs, other: CellJobs, n_resamples: int
) -> float | None:
    """p-value of best vs other over their shared categories (None: nothing to test)."""
    pairs = _pairs(best, other)
    parts_delong, parts_boot = [], []
    for jobs in pairs.values():
        pa = [cache.get(a) for a, _ in jobs]
        pb = [cache.get(b) for _, b in jobs]
        if len(np.unique(pa[0].labels)) < 2:
            continue
        if metric.startswith("pixel_") and (pa[0].maps is None or pb[0].maps is None):
            continue
        if metric == "image_auroc" and len(pa) == 1:
            parts_delong.append(significance.delong_paired(pa[0].labels, pa[0].scores, pb[0].scores))
        else:
            parts_boot.append(significance.bootstrap_paired(metric, pa, pb, n_resamples=n_resamples))
    if parts_delong and not parts_boot:
        return significance.delong_mean(parts_delong).p
    if parts_boot and not parts_delong:
        return significance.bootstrap_mean(parts_boot).p
    return None  # nothing shared, or a mix of single- and multi-seed cells: no mark rather than a wrong one


def table_marks(
    store: ResultsStore,
    metric: str,
    cells: Mapping[tuple[Hashable, Hashable], CellJobs],
    best: Mapping[Hashable, Hashable],
    n_resamples: int = significance.N_RESAMPLES,
) -> dict[tuple[Hashable, Hashable], Mark]:
    """Marks for every non-best cell of each row that has a best column.

    ``cells`` maps (row, column) to the jobs averaged in that cell; ``best`` maps a row to its best
    column. Cells whose predictions are missing get no mark (a report still renders).
    """
    raw: dict[tuple[Hashable, Hashable], float] = {}
    for (row, col), jobs in cells.items():
        if row not in best or col == best[row] or (row, best[row]) not in cells:
            continue
        try:
            p = _compare_cells(PredictionCache(store), metric, cells[(row, best[row])], jobs, n_resamples)
        except AdbenchError:
            p = None
        if p is not None:
            raw[(row, col)] = p
    adjusted = significance.holm(list(raw.values())) if raw else []
    return {
        cell: Mark(p, q, q >= 1 - significance.LEVEL)
        for (cell, p), q in zip(raw.items(), adjusted, strict=True)
    }


def cell_interval(
    store: ResultsStore, metric: str, jobs: CellJobs, n_resamples: int = significance.N_RESAMPLES
) -> tuple[float, float] | None:
    """95 % bootstrap interval of a cell's value (mean over its categories of the seed mean), with
    categories resampled independently; None when a category cannot be resampled."""
    per_cat: dict[str, list[str]] = {}
    for c, _, k in sorted(jobs):
        per_cat.setdefault(c, []).append(k)
    boots = []
    for keys in per_cat.values():
        try:
            runs = [_predictions(store, k) for k in keys]
        except AdbenchError:
            return None
        if len(np.unique(runs[0].labels)) < 2 or (metric.startswith("pixel_") and runs[0].maps is None):
            return None
        boots.append(significance.bootstrap_values(metric, runs, n_resamples)[1])
    return significance.percentile_interval(np.mean(boots, axis=0)) if boots else None


def with_intervals(published: Any, grid: Any, store: ResultsStore, n_resamples: int) -> Any:
    """A published-value lookup (``builders.PublishedFn``) whose dataset cells also note whether the
    paper's number lies inside the reproduced 95 % bootstrap interval (cells with predictions only)."""
    memo: dict[tuple[int, str, str], tuple[float, float] | None] = {}

    def lookup(col: int, row: RowKey, metric: str) -> tuple[Any, list[str]]:
        theirs, remarks = published(col, row, metric)
        if not theirs.ok or row.dataset is None or metric not in significance.BOOTSTRAP_METRICS:
            return theirs, remarks
        key = (col, row.dataset, metric)
        if key not in memo:
            memo[key] = cell_interval(store, metric, grid.jobs(col, row.dataset), n_resamples)
        if memo[key] is None:
            return theirs, remarks
        note = f"{grid.headers[col][0]}, {row.dataset}: " + published_inside(theirs.mean / 100, memo[key])
        return dataclasses.replace(theirs, notes=(*theirs.notes, note)), remarks

    return lookup


def published_inside(published: float, interval: tuple[float, float] | None) -> str:
    """The note a published number gets beside a reproduced interval (values as fractions)."""
    if interval is None:
        return "no interval (predictions missing)"
    lo, hi = interval
    if lo <= published <= hi:
        return f"published value inside the reproduced 95 % interval [{100 * lo:.1f}, {100 * hi:.1f}]"
    side = "above" if published > hi else "below"
    return f"published value {side} the reproduced 95 % interval [{100 * lo:.1f}, {100 * hi:.1f}]"


# ----------------------------------------------------------------------------- report integration


class PredictionCache:
    """Predictions of the jobs of one dataset row, loaded once and shared by every metric's tests
    (pixel histograms are built once per job); cleared between datasets to bound memory."""

    def __init__(self, store: ResultsStore) -> None:
        self.store = store
        self._cache: dict[str, Predictions] = {}

    def get(self, key: str) -> Predictions:
        if key not in self._cache:
            self._cache[key] = _predictions(self.store, key)
        return self._cache[key]

    def clear(self) -> None:
        self._cache.clear()


def grid_marks(
    grid: Any,
    store: ResultsStore,
    metrics: Sequence[str],
    families: Mapping[int, str],
    n_resamples: int = significance.N_RESAMPLES,
) -> dict[tuple[str, int, str], Mark]:
    """(metric, column, dataset) -> mark, for every rankable column that is not its row's best.

    The best of a dataset row is the highest rankable value within the column's comparable group
    (``grid.rank_group``); p-values are Holm-corrected over the comparisons of one table (one
    metric and one protocol family, ``families``: column -> family).
    """
    raw: dict[tuple[str, int, str], float] = {}
    metrics = [m for m in metrics if m in significance.BOOTSTRAP_METRICS]  # aupro_cflow: no paired test
    cache = PredictionCache(store)
    for dataset in grid.datasets:
        row = RowKey(dataset)
        for metric in metrics:
            groups: dict[Hashable, list[int]] = {}
            for col in range(len(grid.columns)):
                stat = grid.stat(col, row, metric)
                if stat.ok and stat.rankable:
                    groups.setdefault(grid.rank_group(col), []).append(col)
            for cols in groups.values():
                if len(cols) < 2:
                    continue
                best = max(cols, key=lambda c: grid.stat(c, row, metric).mean)
                for col in cols:
                    if col == best:
                        continue
                    try:
                        p = _compare_cells(
                            cache, metric, grid.jobs(best, dataset), grid.jobs(col, dataset), n_resamples
                        )
                    except AdbenchError:
                        p = None
                    if p is not None:
                        raw[(metric, col, dataset)] = p
        cache.clear()
    marks: dict[tuple[str, int, str], Mark] = {}
    tables: dict[tuple[str, str], list[tuple[str, int, str]]] = {}
    for cell in raw:
        tables.setdefault((cell[0], families.get(cell[1], "")), []).append(cell)
    for cells in tables.values():
        for cell, q in zip(cells, significance.holm([raw[c] for c in cells]), strict=True):
            marks[cell] = Mark(raw[cell], q, q >= 1 - significance.LEVEL)
    return marks


def apply_marks(
    table: Table,
    row_keys: Sequence[RowKey],
    cols: Sequence[int],
    metric: str,
    marks: Mapping[tuple[str, int, str], Mark],
) -> bool:
    """Set ``tied`` on the value cells the marks say are not significantly worse; True if any
    comparison was made for this table (its note then names the test)."""
    tested = False
    for row, key in zip(table.rows, row_keys, strict=True):
        if key.dataset is None:
            continue
        values = [cell for cell in row.cells if cell.kind == "value"]
        for cell, col in zip(values, cols, strict=False):
            mark = marks.get((metric, col, key.dataset))
            if mark is not None:
                tested = True
                cell.tied = mark.tied
    if tested:
        table.remarks.append(TEST_NOTE)
    return tested
