"""Evaluation metrics: pure functions from labels/scores and masks/maps to python floats.

Image metrics are per category over its test images; pixel metrics pool every pixel of the
category's test images. Undefined values are NaN (never 0); ``compute_metrics`` says why.
Two AUPRO definitions are offered because published numbers use both (see ``METRIC_DEFINITIONS``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
from scipy import ndimage

from .metric_catalog import METRICS as METRIC_SPECS
from .metric_catalog import metric_keys

# sklearn.metrics is imported inside the functions that call it: importing sklearn imports
# scipy.stats, whose array-API probe loads the lazily bound torch; `adbench list` (which loads the
# report plugins, hence this module) must stay torch-free.

# Keys, order and definitions are declared once, in the metric catalog.
IMAGE_METRICS: tuple[str, ...] = metric_keys("image")
PIXEL_METRICS: tuple[str, ...] = metric_keys("pixel")
#: Computation order (records store metrics in it).
METRICS: tuple[str, ...] = IMAGE_METRICS + PIXEL_METRICS

#: One line per metric key, stored with every result so each number names its definition.
METRIC_DEFINITIONS: dict[str, str] = {k: spec.definition for k, spec in METRIC_SPECS.items()}

# 3x3 all-ones structure: 8-connectivity, as the official MVTec AD evaluation code uses.
_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
# The published settings, the defaults of ``aupro``/``aupro_cflow`` and what ``compute_metrics`` uses.
_FPR_LIMIT = 0.3
_CFLOW_THRESHOLDS = 200


# ---------------------------------------------------------------- input handling


def _numpy(x: Any) -> np.ndarray:
    """A numpy view of a numpy array, torch tensor (any device) or sequence."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _scores(x: Any) -> np.ndarray:
    """Scores as a float array, float32 unless already float64 (no copy when possible)."""
    arr = _numpy(x)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    return arr


def _pixel_inputs(masks: Any, maps: Any) -> tuple[Any, Any]:
    """Binary masks (N,H,W) as bool and maps (N,H,W) as float; ValueError on a shape mismatch.

    Lists of per-image (H_i, W_i) arrays (images at their own sizes) give lists of checked arrays.
    """
    if isinstance(masks, list) or isinstance(maps, list):
        if len(masks) != len(maps):
            raise ValueError(f"{len(masks)} masks but {len(maps)} maps")
        pairs = [_pixel_inputs(_numpy(m)[None], _scores(a)[None]) for m, a in zip(masks, maps)]
        return [m[0] for m, _ in pairs], [a[0] for _, a in pairs]
    m = _numpy(masks)
    a = _scores(maps)
    if m.shape != a.shape:
        raise ValueError(f"masks shape {m.shape} does not match maps shape {a.shape}")
    if a.ndim != 3:
        raise ValueError(f"masks and maps must be (N, H, W); got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("anomaly maps contain NaN or infinite values")
    return (m if m.dtype == bool else m != 0), a


def _image_inputs(labels: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = _numpy(labels).ravel()
    s = _scores(scores).ravel()
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    return y != 0, s


def _both_classes(y: np.ndarray) -> bool:
    return 0 < int(np.count_nonzero(y)) < y.size


# ---------------------------------------------------------------- image / pooled-pixel metrics


def image_auroc(labels: Any, scores: Any) -> float:
    """Area under the ROC curve (sklearn); NaN when only one class is present."""
    y, s = _image_inputs(labels, scores)
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s)) if _both_classes(y) else math.nan


def image_auroc_by_group(labels: Any, scores: Any, groups: Sequence[str | None]) -> dict[str, float]:
    """Image AUROC of each anomaly group (e.g. "logical") against all normal images of the category:
    normals vs that group's anomalies only, so a per-type breakdown is not diluted by the other types."""
    y, s = _image_inputs(labels, scores)
    kinds = np.asarray([g if g is not None else "" for g in groups], dtype=object)
    normal = y == 0
    out = {}
    for group in sorted({str(g) for g, lab in zip(kinds, y) if lab == 1 and g}):
        keep = normal | ((y == 1) & (kinds == group))
        out[group] = image_auroc(y[keep], s[keep])
    return out


def image_ap(labels: Any, scores: Any) -> float:
    """Average precision (sklearn); NaN when only one class is present."""
    y, s = _image_inputs(labels, scores)
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, s)) if _both_classes(y) else math.nan


def f1_max(labels: Any, scores: Any) -> float:
    """Best F1 over all thresholds: max of 2PR/(P+R) on sklearn's PR curve, finite values only."""
    y, s = _image_inputs(labels, scores)
    if not _both_classes(y):
        return math.nan
    from sklearn.metrics import precision_recall_curve

    precision, recall, _ = precision_recall_curve(y, s)
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = 2 * precision * recall / (precision + recall)
    f1 = f1[np.isfinite(f1)]
    return float(f1.max()) if f1.size else math.nan


class _Counts(NamedTuple):
    """One category's pixels counted per distinct score, shared by every pixel metric."""

    values: np.ndarray  # distinct scores, ascending, in the maps' dtype
    neg: np.ndarray  # normal pixels per value (int64)
    pos: np.ndarray  # gt (anomalous) pixels per value (int64)
    pro: np.ndarray  # per value: sum over its gt pixels of 1 / (area of the pixel's region), float64
    n_regions: int  # 8-connected gt regions over all images

    @property
    def n_neg(self) -> int:
        return int(self.neg.sum())

    @property
    def n_pos(self) -> int:
        return int(self.pos.sum())


# Every pixel metric is a function of the per-value counts of normal pixels, gt pixels and region
# weights, so the pixels are counted, not sorted. The runner rounds maps to float16 before scoring
# (runner.compact_maps, so `adbench rescore` reproduces records). A float16 value, like any float32
# with at most 11 significant bits, has the low 13 bits of its float32 pattern zero: the other 19
# bits are a code, and np.bincount over 2^19 bins replaces the sort of every pixel (bins are ordered
# by value afterwards). Measured on one core for 200 maps of 518 px (53.7 M pixels,
# benchmarks/bench_metrics.py, 2 cores shared with ~8 busy processes): compute_metrics 0.5-0.8 s,
# each pixel metric alone ~0.5 s, against 5.8 s with the previous two sorts + searchsorted and
# 3.5 s (idle machine) to 44 s (loaded) for sklearn's roc_auc_score alone.
# Other maps (direct calls, float64, |x| >= 60000 in the runner) are counted from one sort instead:
# ~1.3x the previous sort-based code there (10 s vs 7.5 s for 100 maps of 518 px of float32 noise,
# every value distinct, the worst case; 2 shared cores).
_SHIFT = 13
_CODES = 1 << (32 - _SHIFT)
_CODE_VALUES = (np.arange(_CODES, dtype=np.uint32) << _SHIFT).view(np.float32)
_NEG_ZERO = 1 << (31 - _SHIFT)
_BLOCK = 1 << 22  # pixels counted at a time (16 images of 518 px): few passes, bounded memory


def _short_codes(a: np.ndarray) -> np.ndarray | None:
    """19-bit codes of a float32 map whose values all have at most 11 significant bits; else None."""
    if a.dtype != np.float32:
        return None
    bits = a.view(np.uint32)
    if np.bitwise_and(bits, (1 << _SHIFT) - 1).any():
        return None
    return bits >> _SHIFT


def _blocks(m: Any, a: Any) -> list[tuple[np.ndarray, np.ndarray]]:
    """(masks, maps) a few images at a time: stacked arrays in blocks of about _BLOCK pixels."""
    if isinstance(a, list):
        return list(zip(m, a))
    step = max(1, _BLOCK // max(1, a[0].size if len(a) else 1))
    return [(m[i : i + step], a[i : i + step]) for i in range(0, len(a), step)]


def _counts(masks: Any, maps: Any) -> _Counts:
    """Checked inputs counted per distinct score (normal / gt pixels, region weights)."""
    m, a = _pixel_inputs(masks, maps)
    region_ids, areas = _regions(m)
    weights = 1.0 / areas[region_ids] if areas.size else np.zeros(0)
    dtype = np.result_type(*[x.dtype for x in a]) if isinstance(a, list) and a else a.dtype
    chunks = _blocks(m, a)
    counted = _count_short(chunks, weights)
    if counted is None:
        counted = _count_sorted(chunks, weights)
    values, total, pos, pro = counted
    return _Counts(values.astype(dtype), total - pos, pos, pro, int(areas.size))


def _count_short(
    chunks: list[tuple[np.ndarray, np.ndarray]], weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """Counts over the 2^19 codes of short float32 values; None as soon as a map holds another value."""
    total = np.zeros(_CODES, np.int64)
    gts = []
    for mask, amap in chunks:
        codes = _short_codes(amap)
        if codes is None:
            return None
        total += np.bincount(codes.ravel(), minlength=_CODES)
        gts.append(codes[mask])  # in masks[masks] order, as the region ids
    gt = np.concatenate(gts) if gts else np.zeros(0, np.uint32)
    pos = np.bincount(gt, minlength=_CODES).astype(np.int64)
    pro = np.bincount(gt, weights=weights, minlength=_CODES).astype(np.float64)
    for arr in (total, pos, pro):  # -0 and +0 are one score
        arr[0] += arr[_NEG_ZERO]
        arr[_NEG_ZERO] = 0
    present = np.flatnonzero(total)
    keep = present[np.argsort(_CODE_VALUES[present], kind="stable")]
    return _CODE_VALUES[keep], total[keep], pos[keep], pro[keep]


def _count_sorted(
    chunks: list[tuple[np.ndarray, np.ndarray]], weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Counts over the distinct values of arbitrary float maps: one sort of the normal pixels (and of
    the far fewer gt pixels), runs of equal values counted, the gt values merged in by position."""
    dtype = np.result_type(*[a.dtype for _, a in chunks]) if chunks else np.float32
    neg = np.concatenate([a[~m] for m, a in chunks]) if chunks else np.zeros(0, dtype)
    gt = np.concatenate([a[m] for m, a in chunks]) if chunks else np.zeros(0, dtype)
    neg.sort()
    order = np.argsort(gt, kind="stable")
    neg_values, neg_counts, _ = _runs(neg)
    pos_values, pos_counts, pos_weights = _runs(gt[order], weights[order])
    at = np.searchsorted(neg_values, pos_values)
    inside = at < neg_values.size
    new = np.ones(pos_values.size, bool)  # gt values no normal pixel has
    new[inside] = neg_values[at[inside]] != pos_values[inside]
    values = np.insert(neg_values, at[new], pos_values[new])
    total = np.insert(neg_counts, at[new], 0)
    where = np.searchsorted(values, pos_values)
    pos = np.zeros(values.size, np.int64)
    pro = np.zeros(values.size, np.float64)
    pos[where], pro[where] = pos_counts, pos_weights
    return values, total + pos, pos, pro


def _runs(values: np.ndarray, weights: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct values of a sorted array, how often each occurs and (optionally) their summed weights."""
    if values.size == 0:
        return values, np.zeros(0, np.int64), np.zeros(0, np.float64)
    starts = np.flatnonzero(np.concatenate(([True], values[1:] != values[:-1])))
    counts = np.diff(np.append(starts, values.size)).astype(np.int64)
    sums = np.add.reduceat(weights, starts) if weights is not None else np.zeros(0, np.float64)
    return values[starts], counts, sums


def _at_or_above(counts: np.ndarray) -> np.ndarray:
    """``out[k] = counts[k:].sum()``, with one trailing 0 (``out[len]``: nothing above the top)."""
    out = np.zeros(counts.size + 1, counts.dtype)
    np.cumsum(counts[::-1], out=out[-2::-1])
    return out


def _check_fpr_limit(fpr_limit: float) -> None:
    if not 0 < fpr_limit <= 1:
        raise ValueError(f"fpr_limit must be in (0, 1]; got {fpr_limit}")


def pooled_pixel_metrics(masks: Any, maps: Any) -> tuple[float, float, float]:
    """Pixel (AUROC, AP, F1-max) pooled over all pixels, from one sort; equal to scikit-learn's.

    NaN (all three) without anomalous or without normal pixels.
    """
    return _pooled(_counts(masks, maps))


def _pooled(c: _Counts) -> tuple[float, float, float]:
    # From the per-value counts (same numbers as sklearn, compared in the tests):
    #   AUROC = P(anomalous > normal) + P(tie)/2 (Mann-Whitney, equal to the trapezoid ROC area);
    #   AP and F1-max only change at anomalous scores, so only those thresholds are evaluated.
    n_pos, n_neg = c.n_pos, c.n_neg
    if n_pos == 0 or n_neg == 0:
        return math.nan, math.nan, math.nan
    neg_le = np.cumsum(c.neg)
    auroc = int(np.dot(c.pos, 2 * neg_le - c.neg)) / (2.0 * n_pos * n_neg)  # int64: exact

    at = c.pos > 0  # distinct anomalous scores, ascending
    tp = _at_or_above(c.pos)[:-1][at].astype(np.float64)  # anomalous pixels scoring >= threshold
    fp = _at_or_above(c.neg)[:-1][at].astype(np.float64)
    precision = tp / (tp + fp)
    recall_step = c.pos[at] / n_pos  # recall gained at each threshold
    ap = float(np.sum(recall_step * precision))
    f1 = float(np.max(2 * tp / (tp + fp + n_pos)))
    return float(auroc), ap, f1


def pixel_auroc(masks: Any, maps: Any) -> float:
    """AUROC pooled over all pixels of all images; NaN without anomalous or without normal pixels."""
    return pooled_pixel_metrics(masks, maps)[0]


def pixel_ap(masks: Any, maps: Any) -> float:
    """Average precision pooled over all pixels of all images (sklearn's definition)."""
    return pooled_pixel_metrics(masks, maps)[1]


def pixel_f1_max(masks: Any, maps: Any) -> float:
    """F1-max pooled over all pixels of all images (max of 2PR/(P+R) over all thresholds)."""
    return pooled_pixel_metrics(masks, maps)[2]


# ---------------------------------------------------------------- AUPRO


def _regions(masks: np.ndarray | list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Global region id (0-based) of every gt pixel, in ``masks[masks]`` order, and each region's area.

    Regions are the 8-connected components of each image's mask (scipy.ndimage.label, 3x3 ones),
    numbered consecutively across images.
    """
    counts = [int(np.count_nonzero(m)) for m in masks]
    ids = np.empty(sum(counts), dtype=np.int64)
    start = offset = 0
    for mask, count in zip(masks, counts):  # a loop over images (not thresholds): labelling is per image
        if count == 0:
            continue
        # label the mask's bounding box only: same components, same raster order (a third of the
        # metrics' time went to labelling whole 518 px images, most of them empty or nearly)
        rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
        box = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        labelled, n = ndimage.label(box, structure=_EIGHT_CONNECTED)
        lab = labelled[box]
        ids[start : start + lab.size] = lab.astype(np.int64) + (offset - 1)
        start += lab.size
        offset += n
    return ids, np.bincount(ids, minlength=offset)


def aupro(masks: Any, maps: Any, fpr_limit: float = _FPR_LIMIT) -> float:
    """Normalised area under the PRO curve up to ``fpr_limit``: the official MVTec AD definition.

    Same curve as the MVTec AD evaluation script (compute_pro + trapezoid): one point per distinct
    score, PRO = mean overlap over all 8-connected gt regions of all images, FPR over all normal
    pixels, trapezoid up to ``fpr_limit`` with linear interpolation there, divided by ``fpr_limit``.
    NaN without gt regions or without normal pixels.
    """
    _check_fpr_limit(fpr_limit)
    return _aupro(_counts(masks, maps), fpr_limit)


def _aupro(c: _Counts, fpr_limit: float) -> float:
    n_ok, n_regions = c.n_neg, c.n_regions
    if n_ok == 0 or n_regions == 0:
        return math.nan
    # Hand-written instead of sorting every pixel with its FP/PRO increments (as the reference
    # script does): the curve's points are the distinct normal scores (gt-only scores add vertical
    # segments, no area), read from the per-value counts, highest score first.
    # Only scores above which fewer than fpr_limit of the normal pixels lie give points: a suffix.
    neg_ge = _at_or_above(c.neg)
    top = int(np.argmax(neg_ge[1:] / n_ok < fpr_limit))
    neg_ge, pro_ge_all = neg_ge[top:], _at_or_above(c.pro[top:])
    at = np.flatnonzero(c.neg[top:])[::-1]
    fpr_ge, fpr_gt = neg_ge[at] / n_ok, neg_ge[at + 1] / n_ok  # FPR at score >= t and > t
    pro_ge = np.clip(pro_ge_all[at] / n_regions, 0.0, 1.0)
    pro_gt = np.clip(pro_ge_all[at + 1] / n_regions, 0.0, 1.0)

    # segment k goes from (fpr_gt[k], pro_gt[k]) to (fpr_ge[k], pro_ge[k]); cut the last at the limit
    inside = fpr_gt < fpr_limit
    x0, y0, x1, y1 = fpr_gt[inside], pro_gt[inside], fpr_ge[inside], pro_ge[inside]
    last = x1 > fpr_limit
    y1 = np.where(last, y0 + (y1 - y0) * (fpr_limit - x0) / np.where(last, x1 - x0, 1.0), y1)
    x1 = np.minimum(x1, fpr_limit)
    area = float(np.sum(0.5 * (y0 + y1) * (x1 - x0)))
    return area / fpr_limit


def aupro_cflow(
    masks: Any, maps: Any, num_thresholds: int = _CFLOW_THRESHOLDS, fpr_limit: float = _FPR_LIMIT
) -> float:
    """AUPRO as CFLOW-AD's ``cal_pro_score`` computes it (copied by AnomalyCLIP, MuSc and their followers).

    Reproduces that reference step by step, vectorised: thresholds ``np.arange(min, max, (max-min)/200)``
    in the maps' dtype; a pixel is positive when score > threshold; PRO = mean over all gt regions
    (8-connected components of each image's mask, as skimage.measure.label) of the region's positive
    fraction; FPR = positive normal pixels / all normal pixels; keep points with FPR < ``fpr_limit``;
    min-max rescale those FPRs to [0, 1]; ``sklearn.metrics.auc``. NaN where the reference would fail
    (constant map, no gt region, no normal pixel, fewer than two kept points of distinct FPR).
    """
    _check_fpr_limit(fpr_limit)
    if num_thresholds < 1:
        raise ValueError(f"num_thresholds must be at least 1; got {num_thresholds}")
    return _aupro_cflow(_counts(masks, maps), num_thresholds, fpr_limit)


def _aupro_cflow(c: _Counts, num_thresholds: int, fpr_limit: float) -> float:
    n_ok, n_regions = c.n_neg, c.n_regions
    if n_ok == 0 or n_regions == 0:
        return math.nan
    min_th, max_th = c.values[0], c.values[-1]  # numpy scalars of the maps' dtype, as the reference
    if min_th == max_th:
        return math.nan
    delta = (max_th - min_th) / num_thresholds
    ths = np.arange(min_th, max_th, delta)
    # A pixel is positive at threshold j iff score > ths[j]: every value from the first one above
    # ths[j] counts; a region's positive fraction summed over regions is the sum of 1/area weights.
    above = np.searchsorted(c.values, ths, side="right")
    fprs = _at_or_above(c.neg)[above] / n_ok
    pros = _at_or_above(c.pro)[above] / n_regions
    keep = fprs < fpr_limit
    fprs, pros = fprs[keep], pros[keep]
    if fprs.size < 2 or fprs.max() == fprs.min():
        return math.nan
    fprs = (fprs - fprs.min()) / (fprs.max() - fprs.min())
    from sklearn.metrics import auc

    return float(auc(fprs, pros))


# ---------------------------------------------------------------- per category / per dataset


def compute_metrics(
    labels: Any, scores: Any, masks: Any = None, maps: Any = None
) -> tuple[dict[str, float], list[str]]:
    """Every metric of one category, and notes saying why any of them is NaN.

    ``labels``/``scores`` are per test image; ``masks``/``maps`` (N,H,W) per pixel, or None for an
    image-level dataset. Undefined metrics are NaN, never 0.
    """
    values: dict[str, float] = {}
    notes: list[str] = []
    y, _ = _image_inputs(labels, scores)  # checks the lengths even when the metrics are undefined
    n_anomalous = int(np.count_nonzero(y))
    if y.size == 0:
        notes.append("image metrics undefined: no test images")
    elif n_anomalous == y.size:
        notes.append("image metrics undefined: all test images are anomalous")
    elif n_anomalous == 0:
        notes.append("image metrics undefined: no anomalous test images")
    image_ok = not notes
    values["image_auroc"] = image_auroc(y, scores) if image_ok else math.nan
    values["image_ap"] = image_ap(y, scores) if image_ok else math.nan
    values["image_f1max"] = f1_max(y, scores) if image_ok else math.nan

    pixel_note = None
    if masks is None:
        pixel_note = "pixel metrics undefined: no pixel masks"
    elif maps is None:
        pixel_note = "pixel metrics undefined: no anomaly maps"
    else:
        px = _counts(masks, maps)
        if px.n_pos == 0:
            pixel_note = "pixel metrics undefined: all pixel masks are empty (no anomalous pixels)"
        elif px.n_neg == 0:
            pixel_note = "pixel metrics undefined: no normal pixels in the masks"
    if pixel_note is not None:
        notes.append(pixel_note)
        values.update(dict.fromkeys(PIXEL_METRICS, math.nan))
    else:
        values["pixel_auroc"], values["pixel_ap"], values["pixel_f1max"] = _pooled(px)
        values["pixel_aupro"] = _aupro(px, _FPR_LIMIT)
        values["pixel_aupro_cflow"] = _aupro_cflow(px, _CFLOW_THRESHOLDS, _FPR_LIMIT)
        if math.isnan(values["pixel_aupro_cflow"]):
            notes.append(
                "pixel_aupro_cflow undefined: constant map or fewer than two distinct FPRs below 0.3"
            )
    return values, notes


def mean_over_categories(values: Sequence[float | None]) -> float:
    """Dataset score: the mean over categories ignoring NaN/None (categories not run); NaN if none."""
    finite = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return sum(finite) / len(finite) if finite else math.nan
