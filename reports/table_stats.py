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

from adbench import rank_tests, significance
from adbench.errors import AdbenchError
from adbench.store import ResultsStore

from .model import RowKey, Table
from .pairwise import job_predictions

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


@dataclass
class _Job:
    """What the tests need of one job, kept small: labels, ids, image scores and, per metric, its
    bootstrap (R values on the shared seeded resamples)."""

    labels: np.ndarray
    ids: np.ndarray | None
    scores: np.ndarray
    boot: dict[str, significance.JobBootstrap]


class JobCache:
    """Each job's predictions are read once; every requested metric's bootstrap is computed from
    them at once and the maps dropped, so marks and intervals of every table share one pass."""

    def __init__(self, store: ResultsStore, metrics: Sequence[str], n_resamples: int) -> None:
        self.store, self.n_resamples = store, n_resamples
        self.metrics = [m for m in metrics if m in significance.BOOTSTRAP_METRICS]  # aupro_cflow: none
        self._jobs: dict[str, _Job | None] = {}
        #: Jobs that could not be tested: predictions never stored, and unreadable ones (the report notes
        #: both; a damaged file also warns).
        self.missing: list[str] = []
        self.problems: list[str] = []

    def get(self, key: str) -> _Job | None:
        """The job, or None when its predictions are missing or unreadable (no mark, no interval)."""
        if key not in self._jobs:
            self._jobs[key] = self._load(key)
        return self._jobs[key]

    def _load(self, key: str) -> _Job | None:
        try:
            pred = job_predictions(self.store, key)
        except AdbenchError as exc:
            (self.missing if "no stored predictions" in str(exc) else self.problems).append(str(exc))
            return None
        boot = {}
        if len(np.unique(pred.labels)) == 2:
            for metric in self.metrics:
                if not metric.startswith("pixel_") or pred.maps is not None:
                    boot[metric] = significance.job_bootstrap(metric, pred, self.n_resamples)
        return _Job(np.asarray(pred.labels), pred.ids, np.asarray(pred.scores), boot)


def _pairs(best: CellJobs, other: CellJobs) -> dict[str, list[tuple[str, str]]]:
    """category -> [(best key, other key)] for the (category, seed) both ran."""
    theirs = {(c, s): k for c, s, k in other}
    out: dict[str, list[tuple[str, str]]] = {}
    for c, s, k in sorted(best):
        if (c, s) in theirs:
            out.setdefault(c, []).append((k, theirs[(c, s)]))
    return out


def _compare_cells(cache: JobCache, metric: str, best: CellJobs, other: CellJobs) -> float | None:
    """p-value of best vs other over their shared categories (None: nothing to test)."""
    parts_delong, parts_boot = [], []
    for jobs in _pairs(best, other).values():
        ja, jb = [cache.get(a) for a, _ in jobs], [cache.get(b) for _, b in jobs]
        if any(j is None for j in (*ja, *jb)):
            return None  # predictions missing: no mark rather than a partial test
        if metric not in ja[0].boot or metric not in jb[0].boot:
            continue  # one class only, or no maps
        if metric == "image_auroc" and len(ja) == 1:
            significance.same_images([ja[0].boot[metric], jb[0].boot[metric]])
            parts_delong.append(significance.delong_paired(ja[0].labels, ja[0].scores, jb[0].scores))
        else:
            parts_boot.append(
                significance.paired_from_jobs(
                    metric, [j.boot[metric] for j in ja], [j.boot[metric] for j in jb]
                )
            )
    if parts_delong and not parts_boot:
        return significance.delong_mean(parts_delong).p
    if parts_boot and not parts_delong:
        return significance.bootstrap_mean(parts_boot).p
    return None  # nothing shared, or a mix of single- and multi-seed cells: no mark rather than a wrong one


def _holm_marks(raw: Mapping[Hashable, float]) -> dict[Hashable, Mark]:
    adjusted = rank_tests.holm(list(raw.values())) if raw else []
    return {
        cell: Mark(p, q, q >= 1 - significance.LEVEL)
        for (cell, p), q in zip(raw.items(), adjusted, strict=True)
    }


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
    cache = JobCache(store, [metric], n_resamples)
    raw: dict[tuple[Hashable, Hashable], float] = {}
    for (row, col), jobs in cells.items():
        if row not in best or col == best[row] or (row, best[row]) not in cells:
            continue
        p = _safe_compare(cache, metric, cells[(row, best[row])], jobs)
        if p is not None:
            raw[(row, col)] = p
    return _holm_marks(raw)


def _safe_compare(cache: JobCache, metric: str, best: CellJobs, other: CellJobs) -> float | None:
    try:
        return _compare_cells(cache, metric, best, other)
    except ValueError:  # the two cells were not scored on the same images (e.g. another data copy)
        return None


def cell_interval(cache: JobCache, metric: str, jobs: CellJobs) -> tuple[float, float] | None:
    """95 % bootstrap interval of a cell's value (mean over its categories of the seed mean), with
    categories resampled independently; None when a category cannot be resampled."""
    per_cat: dict[str, list[str]] = {}
    for c, _, k in sorted(jobs):
        per_cat.setdefault(c, []).append(k)
    boots = []
    for keys in per_cat.values():
        loaded = [cache.get(k) for k in keys]
        if any(j is None or metric not in j.boot for j in loaded):
            return None
        boots.append(significance.values_from_jobs([j.boot[metric] for j in loaded])[1])
    return significance.percentile_interval(np.mean(boots, axis=0)) if boots else None


def with_intervals(published: Any, grid: Any, cache: JobCache) -> Any:
    """A published-value lookup (``builders.PublishedFn``) whose dataset cells also note whether the
    paper's number lies inside the reproduced 95 % bootstrap interval: only where a difference to
    the paper is allowed (same categories and setting) and predictions exist."""

    def lookup(col: int, row: RowKey, metric: str) -> tuple[Any, list[str]]:
        theirs, remarks = published(col, row, metric)
        comparable = theirs.ok and theirs.diffable and not theirs.diff_note
        if not comparable or row.dataset is None or metric not in cache.metrics:
            return theirs, remarks
        interval = cell_interval(cache, metric, grid.jobs(col, row.dataset))
        if interval is None:
            return theirs, remarks
        note = f"{grid.headers[col][0]}, {row.dataset}: " + published_inside(theirs.mean / 100, interval)
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


def grid_marks(grid: Any, cache: JobCache, families: Mapping[int, str]) -> dict[tuple[str, int, str], Mark]:
    """(metric, column, dataset) -> mark, for every rankable column that is not its row's best.

    The best of a dataset row is the highest rankable value within the column's comparable group
    (``grid.rank_group``); p-values are Holm-corrected over the comparisons of one table (one
    metric and one protocol family, ``families``: column -> family).
    """
    raw: dict[tuple[str, int, str], float] = {}
    for dataset in grid.datasets:
        row = RowKey(dataset)
        for metric in cache.metrics:
            groups: dict[Hashable, list[int]] = {}
            for col in range(len(grid.columns)):
                stat = grid.stat(col, row, metric)
                if stat.ok and stat.rankable:
                    groups.setdefault(grid.rank_group(col), []).append(col)
            for cols in groups.values():
                best = max(cols, key=lambda c: grid.stat(c, row, metric).mean)
                for col in (c for c in cols if c != best):
                    p = _safe_compare(cache, metric, grid.jobs(best, dataset), grid.jobs(col, dataset))
                    if p is not None:
                        raw[(metric, col, dataset)] = p
    marks: dict[tuple[str, int, str], Mark] = {}
    tables: dict[tuple[str, str], dict[tuple[str, int, str], float]] = {}
    for cell, p in raw.items():
        tables.setdefault((cell[0], families.get(cell[1], "")), {})[cell] = p
    for table in tables.values():
        marks.update(_holm_marks(table))
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
