"""Paired significance tests between methods scored on the same test images (pure functions).

* DeLong's test for image AUROC (fast midrank form of Sun & Xu 2014; the covariance of the two
  AUROCs comes from their structural components, so no resampling is needed);
* a paired, stratified bootstrap over test images for every other metric: each image keeps its
  pixels together, normal and anomalous images are resampled separately so both classes survive;
  for few-shot, seeds are resampled too (seeds x images).

Holm's correction and Friedman/Nemenyi ranks live in ``adbench.rank_tests``.

Pixel metrics are bootstrapped from per-image score histograms: a resample's pooled pixels are a
weighted sum of the images' histograms, so 1000 resamples of a 200-image category cost one matrix
product instead of 1000 passes over 54 M pixels. Maps are stored as float16, so up to
``MAX_BINS`` distinct values the histogram is exact; above it, values are grouped into quantile
bins (the point estimate always comes from the exact metrics of the record).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage, stats

LEVEL = 0.95
N_RESAMPLES = 1000
MAX_BINS = 8192
_FPR_LIMIT = 0.3  # AUPRO integrates FPR in [0, 0.3], as the official MVTec AD evaluation does
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)


@dataclass(frozen=True)
class Paired:
    """One paired comparison: metric values of A and B, their difference A - B, its interval and p."""

    metric: str
    a: float
    b: float
    diff: float
    low: float
    high: float
    p: float
    test: str
    n: int  #: test images (per seed) the comparison is over
    se: float | None = None  #: standard error of ``diff`` (DeLong only)

    @property
    def significant(self) -> bool:
        return self.p < 1 - LEVEL


# ----------------------------------------------------------------------------- DeLong


def _midranks(x: np.ndarray) -> np.ndarray:
    return stats.rankdata(x, method="average", axis=-1)


def delong_components(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """AUROCs of the rows of ``scores`` (K, N) and their structural components V10 (K, m), V01 (K, n).

    V10[i] is the fraction of normal images scored below anomalous image i (ties count half),
    V01[j] the fraction of anomalous images scored above normal image j; AUROC is the mean of either.
    """
    y = np.asarray(labels).astype(bool)
    s = np.atleast_2d(np.asarray(scores, dtype=np.float64))
    pos, neg = s[:, y], s[:, ~y]
    m, n = pos.shape[1], neg.shape[1]
    if m == 0 or n == 0:
        raise ValueError("DeLong needs both normal and anomalous images")
    r_all, r_pos, r_neg = _midranks(np.concatenate([pos, neg], axis=1)), _midranks(pos), _midranks(neg)
    v10 = (r_all[:, :m] - r_pos) / n
    v01 = 1.0 - (r_all[:, m:] - r_neg) / m
    return v10.mean(axis=1), v10, v01


def delong_covariance(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUROCs (K,) and their DeLong covariance matrix (K, K)."""
    auc, v10, v01 = delong_components(labels, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10)) if m > 1 else np.zeros((len(auc), len(auc)))
    s01 = np.atleast_2d(np.cov(v01)) if n > 1 else np.zeros((len(auc), len(auc)))
    return auc, s10 / m + s01 / n


def delong_paired(labels: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> Paired:
    """DeLong's paired test of AUROC(A) - AUROC(B) on the same images (normal approximation)."""
    auc, cov = delong_covariance(labels, np.stack([scores_a, scores_b]))
    return _normal_result(
        "image_auroc", [(auc[0], auc[1], cov[0, 0] + cov[1, 1] - 2 * cov[0, 1])], len(labels)
    )


def delong_mean(parts: Sequence[Paired]) -> Paired:
    """DeLong over several independent categories: the mean difference, variance sum / C^2."""
    terms = [(p.a, p.b, (p.se or 0.0) ** 2) for p in parts]
    return _normal_result("image_auroc", terms, sum(p.n for p in parts))


def _normal_result(metric: str, terms: Sequence[tuple[float, float, float]], n: int) -> Paired:
    k = len(terms)
    a = float(np.mean([t[0] for t in terms]))
    b = float(np.mean([t[1] for t in terms]))
    var = float(sum(t[2] for t in terms)) / (k * k)
    diff = a - b
    z_crit = stats.norm.ppf(0.5 + LEVEL / 2)
    se = math.sqrt(max(var, 0.0))
    if se == 0.0:
        p = 1.0 if diff == 0 else 0.0
    else:
        p = float(2 * stats.norm.sf(abs(diff) / se))
    return Paired(metric, a, b, diff, diff - z_crit * se, diff + z_crit * se, p, "DeLong", n, se)


# ----------------------------------------------------------------------------- resampling


def resample_weights(labels: np.ndarray, n_resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(R, N) bootstrap counts per image, stratified by label (each class keeps its size)."""
    y = np.asarray(labels)
    w = np.zeros((n_resamples, len(y)), dtype=np.float64)
    for cls in np.unique(y):
        idx = np.flatnonzero(y == cls)
        draws = rng.integers(0, len(idx), size=(n_resamples, len(idx)))
        rows = np.repeat(np.arange(n_resamples), len(idx))
        np.add.at(w, (rows, idx[draws.ravel()]), 1.0)
    return w


def _bin_edges(values: np.ndarray) -> np.ndarray:
    """Sorted bin values: every distinct value up to MAX_BINS, else MAX_BINS quantiles."""
    uniq = np.unique(values)
    if len(uniq) <= MAX_BINS:
        return uniq
    return np.unique(np.quantile(values, np.linspace(0, 1, MAX_BINS)))


def _bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(edges, values, side="left"), 0, len(edges) - 1)


_F16_CODES = 1 << 16
_SAMPLE = 2_000_000  # pixels sampled for quantile edges when maps are not float16 (approximate bins)


def _float16_codes(values: np.ndarray) -> np.ndarray:
    """Order-preserving integer codes of float16 values (0 .. 65535); -0.0 and +0.0 share one."""
    bits = np.asarray(values, np.float16).view(np.uint16).astype(np.int32)
    bits[bits == 0x8000] = 0
    return np.where(bits & 0x8000, 0xFFFF - bits, bits | 0x8000)


class _Coder:
    """Maps pixel values to integer codes in score order: the float16 bit pattern when every map is
    exactly float16 (as the store keeps them: exact, no sort), else quantile bins of a sample."""

    def __init__(self, maps: Sequence[np.ndarray]) -> None:
        self.exact = all(np.array_equal(np.asarray(m, np.float16).astype(np.float32), m) for m in maps)
        if self.exact:
            self.size = _F16_CODES
            self.edges = None
        else:
            flat = np.concatenate([np.asarray(m, np.float32).ravel() for m in maps])
            if flat.size > _SAMPLE:
                flat = np.random.default_rng(0).choice(flat, _SAMPLE, replace=False)
            self.edges = np.unique(np.quantile(flat, np.linspace(0, 1, MAX_BINS)))
            self.size = len(self.edges)

    def __call__(self, amap: np.ndarray) -> np.ndarray:
        if self.edges is None:
            return _float16_codes(amap)
        return _bin_index(np.asarray(amap, np.float32), self.edges)


def _compact(totals: np.ndarray) -> tuple[np.ndarray, int]:
    """code -> bin index over the codes that occur, merged into at most MAX_BINS bins of similar
    pixel count (contiguous in score order; exact when no more than MAX_BINS codes occur)."""
    used = np.flatnonzero(totals)
    if len(used) <= MAX_BINS:
        groups = np.arange(len(used))
    else:
        share = np.cumsum(totals[used]) / totals[used].sum()
        groups = np.unique(
            np.minimum((share * MAX_BINS).astype(np.int64), MAX_BINS - 1), return_inverse=True
        )[1]
    table = np.full(len(totals), -1, dtype=np.int64)
    table[used] = groups
    return table, int(groups.max()) + 1 if len(groups) else 1


@dataclass
class PixelHistograms:
    """Per-image (and per-region) counts of anomalous and normal pixels in each score bin."""

    pos: np.ndarray  #: (N, B) anomalous-pixel counts per image
    neg: np.ndarray  #: (N, B) normal-pixel counts per image
    region_hist: np.ndarray  #: (G, B) pixel counts per 8-connected gt region
    region_image: np.ndarray  #: (G,) the image each region belongs to

    @classmethod
    def build(cls, maps: Sequence[np.ndarray], masks: Sequence[np.ndarray]) -> PixelHistograms:
        """Two passes: per-image counts in code space, then the bins (and the regions) compacted."""
        coder = _Coder(maps)
        gts = [np.asarray(mask) > 0 for mask in masks]
        full_pos = np.zeros((len(maps), coder.size), dtype=np.int64)
        full_neg = np.zeros_like(full_pos)
        for i, (amap, gt) in enumerate(zip(maps, gts)):
            codes = coder(amap)
            full_pos[i] = np.bincount(codes[gt], minlength=coder.size)
            full_neg[i] = np.bincount(codes[~gt], minlength=coder.size)
        table, nb = _compact(full_pos.sum(axis=0) + full_neg.sum(axis=0))
        pos, neg = np.zeros((len(maps), nb)), np.zeros((len(maps), nb))
        keep = table >= 0
        for i in range(len(maps)):
            pos[i] = np.bincount(table[keep], weights=full_pos[i, keep], minlength=nb)
            neg[i] = np.bincount(table[keep], weights=full_neg[i, keep], minlength=nb)
        regions, owner = [], []
        for i, (amap, gt) in enumerate(zip(maps, gts)):
            labelled, count = ndimage.label(gt, structure=_EIGHT_CONNECTED)
            if not count:
                continue
            bins = table[coder(amap)[gt]]
            region_of = labelled[gt] - 1
            flat = np.bincount(region_of * nb + bins, minlength=count * nb).reshape(count, nb)
            regions.append(flat.astype(np.float64))
            owner.extend([i] * count)
        region_hist = np.concatenate(regions) if regions else np.zeros((0, nb))
        return cls(pos, neg, region_hist, np.array(owner, dtype=np.int64))


def _above(hist: np.ndarray) -> np.ndarray:
    """Counts at or above each bin (thresholds descending along the last axis, highest first)."""
    return np.cumsum(hist[..., ::-1], axis=-1)


def hist_auroc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """AUROC from (R, B) weighted pixel histograms (ties count half)."""
    neg_below = np.cumsum(neg, axis=-1) - neg
    num = (pos * (neg_below + 0.5 * neg)).sum(axis=-1)
    return num / (pos.sum(axis=-1) * neg.sum(axis=-1))


def hist_ap(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Average precision (sklearn's step form) from (R, B) weighted histograms."""
    tp, fp = _above(pos), _above(neg)
    total = tp[..., -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(tp + fp > 0, tp / (tp + fp), 1.0)
    recall_step = np.diff(np.concatenate([np.zeros_like(total), tp], axis=-1), axis=-1) / total
    return (recall_step * precision).sum(axis=-1)


def hist_f1max(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """F1-max over every bin threshold from (R, B) weighted histograms."""
    tp, fp = _above(pos), _above(neg)
    total = tp[..., -1:]
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(tp > 0, 2 * tp / (tp + fp + total), 0.0)
    return f1.max(axis=-1)


def hist_aupro(h: PixelHistograms, weights: np.ndarray) -> np.ndarray:
    """AUPRO (FPR up to 0.3, /0.3) of each resample, weights (R, N) per image."""
    region_w = weights[:, h.region_image]  # (R, G)
    overlap = _above(h.region_hist) / h.region_hist.sum(axis=-1, keepdims=True)  # (G, B)
    pro = (region_w @ overlap) / region_w.sum(axis=1, keepdims=True)  # (R, B)
    neg = weights @ h.neg
    fpr = _above(neg) / neg.sum(axis=1, keepdims=True)
    out = np.empty(len(weights))
    for r in range(len(weights)):
        x = np.concatenate([[0.0], fpr[r]])
        y = np.concatenate([[0.0], pro[r]])
        keep = x <= _FPR_LIMIT
        xs, ys = x[keep], y[keep]
        if xs[-1] < _FPR_LIMIT and keep.sum() < len(x):
            nxt = int(keep.sum())
            t = (_FPR_LIMIT - x[nxt - 1]) / max(x[nxt] - x[nxt - 1], 1e-12)
            xs = np.append(xs, _FPR_LIMIT)
            ys = np.append(ys, y[nxt - 1] + t * (y[nxt] - y[nxt - 1]))
        out[r] = np.trapezoid(ys, xs) / _FPR_LIMIT
    return out


#: metric -> function (histograms, weights (R, N)) -> values (R,)
PIXEL_STATISTICS: dict[str, Callable[[PixelHistograms, np.ndarray], np.ndarray]] = {
    "pixel_auroc": lambda h, w: hist_auroc(w @ h.pos, w @ h.neg),
    "pixel_ap": lambda h, w: hist_ap(w @ h.pos, w @ h.neg),
    "pixel_f1max": lambda h, w: hist_f1max(w @ h.pos, w @ h.neg),
    "pixel_aupro": hist_aupro,
}


def _image_hist(labels: np.ndarray, scores: np.ndarray) -> PixelHistograms:
    """Image scores as one-pixel 'images', so the histogram statistics serve image metrics too."""
    edges = _bin_edges(np.asarray(scores, np.float64))
    bins = _bin_index(np.asarray(scores, np.float64), edges)
    onehot = np.zeros((len(scores), len(edges)))
    onehot[np.arange(len(scores)), bins] = 1.0
    y = np.asarray(labels).astype(bool)[:, None]
    return PixelHistograms(onehot * y, onehot * ~y, np.zeros((0, len(edges))), np.zeros(0, np.int64))


IMAGE_STATISTICS: dict[str, Callable[[PixelHistograms, np.ndarray], np.ndarray]] = {
    "image_auroc": PIXEL_STATISTICS["pixel_auroc"],
    "image_ap": PIXEL_STATISTICS["pixel_ap"],
    "image_f1max": PIXEL_STATISTICS["pixel_f1max"],
}
BOOTSTRAP_METRICS = tuple(IMAGE_STATISTICS) + tuple(PIXEL_STATISTICS)


@dataclass
class Predictions:
    """What the bootstrap needs of one job: labels, image scores, and optionally maps and masks."""

    labels: np.ndarray
    scores: np.ndarray
    maps: Sequence[np.ndarray] | None = None
    masks: Sequence[np.ndarray] | None = None
    ids: np.ndarray | None = None  #: image ids: two jobs pair only when they name the same images
    _pixels: PixelHistograms | None = field(default=None, repr=False, compare=False)

    def pixel_histograms(self) -> PixelHistograms:
        """Built once per job and shared by every pixel metric's bootstrap."""
        if self._pixels is None:
            self._pixels = PixelHistograms.build(self.maps, self.masks)
        return self._pixels


def _statistic(metric: str, pred: Predictions) -> tuple[Callable, PixelHistograms]:
    if metric in IMAGE_STATISTICS:
        return IMAGE_STATISTICS[metric], _image_hist(pred.labels, pred.scores)
    if metric in PIXEL_STATISTICS:
        if pred.maps is None or pred.masks is None:
            raise ValueError(f"{metric} needs anomaly maps and masks")
        return PIXEL_STATISTICS[metric], pred.pixel_histograms()
    raise ValueError(f"no paired test for metric {metric!r}; choose one of {', '.join(BOOTSTRAP_METRICS)}")


@dataclass(frozen=True)
class JobBootstrap:
    """One job's metric: its point value and its (R,) values on the seeded image resamples.

    The resamples depend only on the labels, R and the seed, so two jobs on the same test images
    share them: a job's values are computed once and paired with any other job's (no second pass
    over its histograms per comparison)."""

    point: float
    values: np.ndarray
    labels: np.ndarray
    ids: np.ndarray | None


def job_bootstrap(
    metric: str, run: Predictions, n_resamples: int = N_RESAMPLES, seed: int = 0
) -> JobBootstrap:
    """The job's point value and bootstrap values of ``metric`` (images stratified by label)."""
    labels = np.asarray(run.labels)
    w = resample_weights(labels, n_resamples, np.random.default_rng(seed))
    fn, hist = _statistic(metric, run)
    point = float(fn(hist, np.ones((1, len(labels))))[0])
    return JobBootstrap(point, fn(hist, w), labels, None if run.ids is None else np.asarray(run.ids))


def same_images(jobs: Sequence[JobBootstrap | Predictions]) -> None:
    """ValueError unless every job scored the same test images (labels, and ids where known)."""
    first = jobs[0]
    for job in jobs[1:]:
        same_ids = (
            first.ids is None or job.ids is None or np.array_equal(first.ids.astype(str), job.ids.astype(str))
        )
        if not (np.array_equal(np.asarray(job.labels), np.asarray(first.labels)) and same_ids):
            raise ValueError("A and B were not scored on the same test images")


def _seed_mean(values: np.ndarray, pick: np.ndarray | None) -> np.ndarray:
    """(S, R) per-seed values -> (R,) means over the seeds each resample drew (all when one seed)."""
    if pick is None:
        return values[0]
    return values[pick, np.arange(values.shape[1])[:, None]].mean(axis=1)


def _seed_pick(n_seeds: int, n_resamples: int, seed: int) -> np.ndarray | None:
    """Seeds drawn with replacement per resample (few-shot), from a stream apart from the images'."""
    if n_seeds < 2:
        return None
    return np.random.default_rng([seed, 1]).integers(0, n_seeds, size=(n_resamples, n_seeds))


def paired_from_jobs(
    metric: str, jobs_a: Sequence[JobBootstrap], jobs_b: Sequence[JobBootstrap], seed: int = 0
) -> tuple[Paired, np.ndarray]:
    """The paired result of A - B from per-seed job bootstraps made with the same resamples."""
    if len(jobs_a) != len(jobs_b) or not jobs_a:
        raise ValueError("A and B need the same seeds")
    same_images([*jobs_a, *jobs_b])
    pick = _seed_pick(len(jobs_a), len(jobs_a[0].values), seed)
    diffs = _seed_mean(np.stack([j.values for j in jobs_a]), pick) - _seed_mean(
        np.stack([j.values for j in jobs_b]), pick
    )
    a = float(np.mean([j.point for j in jobs_a]))
    b = float(np.mean([j.point for j in jobs_b]))
    return _bootstrap_result(metric, a, b, diffs, len(jobs_a[0].labels)), diffs


def bootstrap_paired(
    metric: str,
    runs_a: Sequence[Predictions],
    runs_b: Sequence[Predictions],
    n_resamples: int = N_RESAMPLES,
    seed: int = 0,
) -> tuple[Paired, np.ndarray]:
    """Paired bootstrap of metric(A) - metric(B) over the same test images.

    ``runs_a[s]`` and ``runs_b[s]`` are the predictions of seed s (one entry for zero-shot): each
    resample draws images (stratified by label, the same draw for A and B and for every seed) and,
    with several seeds, seeds with replacement; the value is the mean over the drawn seeds, as the
    table's value. Percentile interval; two-sided p from the null-centred bootstrap distribution.
    Returns the result and the (R,) bootstrap differences (for ``bootstrap_mean`` over categories).
    """
    if len(runs_a) != len(runs_b) or not runs_a:
        raise ValueError("A and B need the same seeds")
    jobs_a = [job_bootstrap(metric, r, n_resamples, seed) for r in runs_a]
    jobs_b = [job_bootstrap(metric, r, n_resamples, seed) for r in runs_b]
    return paired_from_jobs(metric, jobs_a, jobs_b, seed)


def values_from_jobs(jobs: Sequence[JobBootstrap], seed: int = 0) -> tuple[float, np.ndarray]:
    """Point value (mean over seeds) and (R,) bootstrap values of one cell's seeds."""
    pick = _seed_pick(len(jobs), len(jobs[0].values), seed)
    return float(np.mean([j.point for j in jobs])), _seed_mean(np.stack([j.values for j in jobs]), pick)


def bootstrap_values(
    metric: str, runs: Sequence[Predictions], n_resamples: int = N_RESAMPLES, seed: int = 0
) -> tuple[float, np.ndarray]:
    """Point value and (R,) bootstrap values of one method's metric (images, and seeds if several)."""
    return values_from_jobs([job_bootstrap(metric, r, n_resamples, seed) for r in runs], seed)


def percentile_interval(boot: np.ndarray) -> tuple[float, float]:
    """The central LEVEL percentile interval of bootstrap values."""
    lo, hi = np.nanpercentile(boot, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    return float(lo), float(hi)


def bootstrap_mean(parts: Sequence[tuple[Paired, np.ndarray]]) -> Paired:
    """Dataset-level result from per-category bootstrap differences drawn independently (R each)."""
    diffs = np.mean([d for _, d in parts], axis=0)
    a = float(np.mean([p.a for p, _ in parts]))
    b = float(np.mean([p.b for p, _ in parts]))
    return _bootstrap_result(parts[0][0].metric, a, b, diffs, sum(p.n for p, _ in parts))


def _bootstrap_result(metric: str, a: float, b: float, boot_diff: np.ndarray, n: int) -> Paired:
    diff = a - b
    lo, hi = np.nanpercentile(boot_diff, [100 * (1 - LEVEL) / 2, 100 * (1 + LEVEL) / 2])
    centred = boot_diff - np.nanmean(boot_diff)
    p = (1 + np.sum(np.abs(centred) >= abs(diff))) / (1 + np.sum(np.isfinite(centred)))
    return Paired(metric, a, b, diff, float(lo), float(hi), float(min(p, 1.0)), "paired bootstrap", n)
