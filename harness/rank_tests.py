"""Corrections and rank tests over many comparisons (pure functions): Holm's step-down correction,
Friedman's test with mean ranks and the Nemenyi critical difference (Demšar 2006)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (same order as given).

    Hand-written: scipy has no Holm correction (only Benjamini-Hochberg) and statsmodels is not a
    dependency; it is five lines.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.maximum.accumulate((m - np.arange(m)) * p[order])
    out = np.empty(m)
    out[order] = np.minimum(adjusted, 1.0)
    return out.tolist()


@dataclass(frozen=True)
class Ranking:
    """Friedman's test over blocks with mean ranks (1 = best) and the Nemenyi critical difference."""

    methods: list[str]
    mean_ranks: list[float]
    statistic: float
    p: float
    critical_difference: float
    n_blocks: int
    alpha: float


def friedman_nemenyi(values: np.ndarray, methods: Sequence[str], alpha: float = 0.05) -> Ranking:
    """``values`` (blocks, methods), higher is better; ranks with ties averaged per block.

    The chi-square statistic includes the tie correction, so it equals scipy's
    ``friedmanchisquare``; the critical difference is q_alpha * sqrt(k (k + 1) / (6 N)) with
    q_alpha the studentised range quantile / sqrt(2) (Demšar 2006).
    """
    x = np.asarray(values, dtype=np.float64)
    n, k = x.shape
    if k < 2 or n < 2:
        raise ValueError("Friedman's test needs at least two methods and two blocks")
    ranks = stats.rankdata(-x, axis=1)
    mean_ranks = ranks.mean(axis=0)
    chi2 = 12 * n / (k * (k + 1)) * float(np.sum((mean_ranks - (k + 1) / 2) ** 2))
    ties = 0.0
    for row in x:
        _, counts = np.unique(row, return_counts=True)
        ties += float(np.sum(counts**3 - counts))
    denom = 1 - ties / (n * k * (k * k - 1))
    chi2 = chi2 / denom if denom > 0 else float("nan")
    p = float(stats.chi2.sf(chi2, k - 1)) if np.isfinite(chi2) else float("nan")
    q = stats.studentized_range.ppf(1 - alpha, k, np.inf) / math.sqrt(2)
    cd = float(q * math.sqrt(k * (k + 1) / (6 * n)))
    return Ranking(list(methods), mean_ranks.tolist(), float(chi2), p, cd, n, alpha)
