"""95 % bootstrap confidence intervals of Image-AUROC over test images, from stored predictions.

Resampling is stratified (normal and anomalous images resampled separately, so every resample
keeps both classes and the AUROC is always defined), per category and seed; the dataset value of
a resample is the mean over categories and seeds, as the table's value. Percentile interval.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

from adbench.errors import AdbenchError
from adbench.store import ResultsStore

from .tables import Cell, Notes, Part, ReproducedGrid, Row, Table, fmt

N_RESAMPLES = 1000
LEVEL = 0.95


def auroc_rows(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """AUROC of each row of ``scores`` (R, N) against ``labels`` (R, N): the Mann-Whitney U statistic,
    vectorised over resamples (sklearn's roc_auc_score takes one resample per call)."""
    ranks = rankdata(scores, axis=1)
    pos = labels.astype(bool)
    n_pos = pos.sum(axis=1)
    n_neg = labels.shape[1] - n_pos
    u = (ranks * pos).sum(axis=1) - n_pos * (n_pos + 1) / 2
    return u / (n_pos * n_neg)


def bootstrap_auroc(labels: np.ndarray, scores: np.ndarray, rng: np.random.Generator) -> np.ndarray | None:
    """``N_RESAMPLES`` stratified bootstrap AUROCs of one category, or None with a single class."""
    pos, neg = np.flatnonzero(labels == 1), np.flatnonzero(labels == 0)
    if not len(pos) or not len(neg):
        return None
    idx = np.concatenate(
        [rng.choice(pos, (N_RESAMPLES, len(pos))), rng.choice(neg, (N_RESAMPLES, len(neg)))], axis=1
    )
    return auroc_rows(labels[idx], scores[idx])


def dataset_interval(
    grid: ReproducedGrid, store: ResultsStore, col: int, dataset: str
) -> tuple[float, float] | None:
    """The percentile interval (in %) of the column's Image-AUROC on one dataset."""
    rows = grid.frame[(grid.frame["_col"] == grid.keys[col]) & (grid.frame["dataset"] == dataset)]
    cats = grid.categories_used(col, dataset)
    if cats is not None:
        rows = rows[rows["category"].isin(cats)]
    rng = np.random.default_rng(0)
    per_job = []
    for key in rows["key"]:
        pred = store.load_predictions(key)
        boot = bootstrap_auroc(pred.labels, pred.scores.astype(np.float64), rng)
        if boot is not None:
            per_job.append(boot)
    if not per_job:
        return None
    means = np.mean(per_job, axis=0) * 100.0
    lo, hi = np.percentile(means, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return float(lo), float(hi)


def ci_table(grid: ReproducedGrid, store: ResultsStore) -> Table:
    """Image-AUROC per dataset with its 95 % bootstrap interval over images."""
    notes = Notes()
    out_rows = []
    for d in grid.datasets:
        cells = []
        for c in range(len(grid.keys)):
            stat = grid.stat(c, d, "image_auroc")
            why = "single-class test set"
            try:
                interval = dataset_interval(grid, store, c, d) if stat.ok else None
            except AdbenchError as exc:  # predictions deleted or never written: the value still shows
                interval, why = None, str(exc)
            text = fmt(stat.mean) + (f" [{interval[0]:.1f}, {interval[1]:.1f}]" if interval else "")
            marks = notes.marks(stat.notes if not stat.ok else ([] if interval else [why]))
            cells.append(Cell([Part(text)], marks=marks))
        out_rows.append(Row(grid.catalog.title(d), cells))
    return Table(
        "ci-image_auroc",
        "Image-AUROC with 95 % bootstrap confidence intervals over test images",
        "Dataset",
        columns=[name for name, _ in grid.headers],
        column_details=[list(lines) for _, lines in grid.headers],
        rows=out_rows,
        footnotes=notes.texts,
        section="ci",
        remarks=list(grid.legend)
        + [
            f"{N_RESAMPLES} stratified resamples of the test images per category and seed; interval of the "
            "dataset mean over the same categories and seeds as the value, percentile method."
        ],
    )
