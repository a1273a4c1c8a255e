"""Tests for adbench.metrics against scikit-learn and straightforward loop references written here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import measure
from sklearn.metrics import auc, average_precision_score, roc_auc_score

from adbench import metrics

# ---------------------------------------------------------------- fixtures and loop references


def blob_data(seed: int, n: int = 6, size: int = 32, ties: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Masks with a few random rectangles/discs per image (some images normal) and noisy maps."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        if i % 3 == 0:
            continue  # a normal image
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(0, size, 2)
            if rng.random() < 0.5:
                r = rng.integers(1, 6)
                masks[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
            else:
                h, w = rng.integers(1, 8, 2)
                masks[i, cy : cy + h, cx : cx + w] = 1
    noise = ndimage.gaussian_filter(rng.normal(size=masks.shape), sigma=(0, 1.5, 1.5))
    noise /= noise.std()
    maps = (masks * rng.uniform(0.5, 2.0) + noise).astype(np.float32)
    if ties:
        maps = np.round(maps, 1)
    return masks, maps


def reference_aupro(masks: np.ndarray, maps: np.ndarray, limit: float = 0.3) -> float:
    """Per-threshold loop over every distinct score; trapezoid up to the limit, interpolated there."""
    regions = []
    for i, mask in enumerate(masks):
        labelled, n = ndimage.label(mask, structure=np.ones((3, 3)))
        regions += [(i, labelled == k) for k in range(1, n + 1)]
    normal = masks == 0
    fprs, pros = [0.0], [0.0]
    for t in np.unique(maps)[::-1]:
        positive = maps >= t
        fprs.append((positive & normal).sum() / normal.sum())
        pros.append(np.mean([positive[i][r].mean() for i, r in regions]))
    area = 0.0
    for k in range(1, len(fprs)):
        x0, x1, y0, y1 = fprs[k - 1], fprs[k], pros[k - 1], pros[k]
        if x0 >= limit:
            break
        if x1 > limit:
            y1 = y0 + (y1 - y0) * (limit - x0) / (x1 - x0)
            x1 = limit
        area += (x1 - x0) * (y0 + y1) / 2
    return area / limit


def reference_cflow(masks: np.ndarray, maps: np.ndarray, steps: int = 200, limit: float = 0.3) -> float:
    """CFLOW-AD's cal_pro_score written as a plain loop (skimage regions, 200 thresholds)."""
    lo, hi = maps.min(), maps.max()
    pros, fprs = [], []
    for th in np.arange(lo, hi, (hi - lo) / steps):
        binary = maps > th
        overlaps = []
        for b, mask in zip(binary, masks):
            for region in measure.regionprops(measure.label(mask)):
                overlaps.append(b[region.coords[:, 0], region.coords[:, 1]].sum() / region.area)
        inverse = 1 - masks
        fprs.append(np.logical_and(inverse, binary).sum() / inverse.sum())
        pros.append(np.mean(overlaps))
    fprs, pros = np.array(fprs), np.array(pros)
    keep = fprs < limit
    x = fprs[keep]
    x = (x - x.min()) / (x.max() - x.min())
    return float(auc(x, pros[keep]))


def brute_f1max(labels: np.ndarray, scores: np.ndarray) -> float:
    best = 0.0
    for t in np.unique(scores):
        pred = scores >= t
        tp = np.sum(pred & (labels == 1))
        if tp == 0:
            continue
        p, r = tp / pred.sum(), tp / labels.sum()
        best = max(best, 2 * p * r / (p + r))
    return best


# ---------------------------------------------------------------- image / pooled metrics


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_image_auroc_ap_equal_sklearn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 50)
    scores = rng.normal(size=50) + labels * rng.uniform(0, 2)
    assert metrics.image_auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    assert metrics.image_ap(labels, scores) == pytest.approx(
        average_precision_score(labels, scores), abs=1e-12
    )
    # torch inputs give the same numbers
    assert metrics.image_auroc(torch.tensor(labels), torch.tensor(scores)) == pytest.approx(
        roc_auc_score(labels, scores)
    )
    assert isinstance(metrics.image_auroc(labels, scores), float)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True)])
def test_pixel_auroc_ap_equal_sklearn_pooled(seed: int, ties: bool) -> None:
    masks, maps = blob_data(seed, n=4, size=16, ties=ties)
    y, s = masks.ravel(), maps.ravel()
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(y, s), abs=1e-10)
    assert metrics.pixel_ap(masks, maps) == pytest.approx(average_precision_score(y, s), abs=1e-10)
    assert metrics.pixel_f1_max(masks, maps) == pytest.approx(metrics.f1_max(y, s), abs=1e-10)


def test_pixel_metrics_with_heavy_ties_across_classes() -> None:
    rng = np.random.default_rng(9)
    masks = (rng.random((3, 8, 8)) < 0.3).astype(np.uint8)
    maps = rng.integers(0, 3, masks.shape).astype(np.float32) + masks * rng.integers(0, 2, masks.shape)
    y, s = masks.ravel(), maps.ravel()
    assert metrics.pixel_auroc(masks, maps) == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert metrics.pixel_ap(masks, maps) == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert metrics.pixel_f1_max(masks, maps) == pytest.approx(brute_f1max(y, s), abs=1e-12)
    assert math.isnan(metrics.pixel_auroc(np.zeros_like(masks), maps))


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_f1max_equals_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 40)
    scores = np.round(rng.normal(size=40) + labels, 1)  # rounding makes ties
    assert metrics.f1_max(labels, scores) == pytest.approx(brute_f1max(labels, scores), abs=1e-12)
    masks, maps = blob_data(seed, n=3, size=12, ties=True)
    assert metrics.pixel_f1_max(masks, maps) == pytest.approx(
        brute_f1max(masks.ravel(), maps.ravel()), abs=1e-12
    )


def test_image_metrics_nan_with_one_class() -> None:
    assert math.isnan(metrics.image_auroc([1, 1, 1], [0.1, 0.5, 0.9]))
    assert math.isnan(metrics.image_ap([0, 0], [0.1, 0.5]))
    assert math.isnan(metrics.f1_max([1, 1], [0.1, 0.5]))


# ---------------------------------------------------------------- AUPRO (official)


@pytest.mark.parametrize("seed,ties", [(0, False), (1, False), (2, True), (3, True), (4, False)])
def test_aupro_equals_loop_reference(seed: int, ties: bool) -> None:
    masks, maps = blob_data(seed, ties=ties)
    assert masks.any()
    expected = reference_aupro(masks, maps)
    assert 0.0 < expected < 1.0
    assert metrics.aupro(masks, maps) == pytest.approx(expected, abs=1e-9)
    assert metrics.aupro(masks, maps, fpr_limit=0.05) == pytest.approx(
        reference_aupro(masks, maps, limit=0.05), abs=1e-9
    )


def test_aupro_perfect_inverted_constant() -> None:
    masks, _ = blob_data(5)
    rng = np.random.default_rng(5)
    noise = rng.uniform(0, 0.4, masks.shape).astype(np.float32)
    assert metrics.aupro(masks, masks + noise) == pytest.approx(1.0, abs=1e-9)
    assert metrics.aupro(masks, 1 - masks + noise) == pytest.approx(0.0, abs=1e-9)
    # one tie over everything: curve (0,0)->(1,1), so the area up to 0.3 is 0.045, /0.3 = 0.15
    assert metrics.aupro(masks, np.zeros(masks.shape, np.float32)) == pytest.approx(0.15)


def test_regions_are_eight_connected() -> None:
    mask = np.zeros((1, 5, 5), dtype=bool)
    mask[0, 1, 1] = mask[0, 2, 2] = mask[0, 2, 3] = True  # touching only diagonally
    mask[0, 4, 0] = True  # separate
    ids, areas = metrics._regions(mask)
    assert sorted(areas.tolist()) == [1, 3]
    assert ids.size == 4


# ---------------------------------------------------------------- AUPRO (cflow)


def hand_example() -> tuple[np.ndarray, np.ndarray]:
    """One 4x4 image: region A = two pixels (scores 4, 2), region B = one pixel (3); normals 2, 1, 0..."""
    mask = np.zeros((1, 4, 4), dtype=np.uint8)
    amap = np.zeros((1, 4, 4), dtype=np.float32)
    mask[0, 0, 0] = mask[0, 0, 1] = mask[0, 3, 3] = 1
    amap[0, 0, 0], amap[0, 0, 1], amap[0, 3, 3] = 4, 2, 3
    amap[0, 2, 2], amap[0, 3, 1] = 2, 1  # normal pixels above the minimum
    return mask, amap


def test_aupro_cflow_hand_example() -> None:
    mask, amap = hand_example()
    # thresholds arange(0, 4, 1) = 0, 1, 2, 3; positive iff score > threshold; 13 normal pixels
    # th=0: PRO (1 + 1)/2 = 1,      FPR 2/13
    # th=1: PRO 1,                  FPR 1/13
    # th=2: PRO (1/2 + 1)/2 = 0.75, FPR 0
    # th=3: PRO (1/2 + 0)/2 = 0.25, FPR 0
    # all FPR < 0.3; rescaled FPRs 1, 0.5, 0, 0 -> area 0.5*1 + 0.5*(1+0.75)/2 = 0.9375
    assert metrics.aupro_cflow(mask, amap, num_thresholds=4) == pytest.approx(0.9375)
    # with limit 0.1 only FPRs 1/13, 0, 0 stay -> rescaled 1, 0, 0 -> area (1+0.75)/2 = 0.875
    assert metrics.aupro_cflow(mask, amap, num_thresholds=4, fpr_limit=0.1) == pytest.approx(0.875)
    assert metrics.aupro_cflow(mask, amap, num_thresholds=4) == pytest.approx(
        reference_cflow(mask, amap, steps=4)
    )


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False)])
def test_aupro_cflow_equals_loop_reference(seed: int, ties: bool) -> None:
    masks, maps = blob_data(seed, n=4, size=24, ties=ties)
    expected = reference_cflow(masks, maps)
    assert metrics.aupro_cflow(masks, maps) == pytest.approx(expected, abs=1e-9)
    # float64 maps follow the reference in float64 too
    maps64 = maps.astype(np.float64)
    assert metrics.aupro_cflow(masks, maps64) == pytest.approx(reference_cflow(masks, maps64), abs=1e-9)


def test_official_aupro_on_hand_example_differs_from_cflow() -> None:
    mask, amap = hand_example()
    # exact curve: (0,0) -> score 4: (0, 1/4) -> 3: (0, 3/4) -> 2: (1/13, 1) -> 1: (2/13, 1) -> 0: (1, 1)
    expected = ((0.75 + 1) / 2 / 13 + 1 / 13 + (0.3 - 2 / 13)) / 0.3
    assert metrics.aupro(mask, amap) == pytest.approx(expected)
    assert metrics.aupro(mask, amap) == pytest.approx(reference_aupro(mask, amap))
    assert abs(expected - metrics.aupro_cflow(mask, amap, num_thresholds=4)) > 0.02


def test_aupro_cflow_constant_map_is_nan() -> None:
    mask, _ = hand_example()
    assert math.isnan(metrics.aupro_cflow(mask, np.ones(mask.shape, np.float32)))


# ---------------------------------------------------------------- compute_metrics, errors, means


def test_compute_metrics_all_keys_and_definitions() -> None:
    masks, maps = blob_data(0)
    labels = masks.reshape(len(masks), -1).any(1).astype(int)
    scores = maps.reshape(len(maps), -1).max(1)
    values, notes = metrics.compute_metrics(labels, scores, masks, maps)
    assert tuple(values) == metrics.METRICS
    assert set(metrics.METRIC_DEFINITIONS) == set(metrics.METRICS)
    assert metrics.METRICS == metrics.IMAGE_METRICS + metrics.PIXEL_METRICS
    assert notes == []
    assert all(isinstance(v, float) and 0.0 <= v <= 1.0 for v in values.values())
    assert values["pixel_aupro"] == pytest.approx(metrics.aupro(masks, maps))
    assert values["image_auroc"] == pytest.approx(roc_auc_score(labels, scores))
    # the shared split/labelling inside compute_metrics gives exactly the standalone functions' values
    assert values["pixel_aupro"] == pytest.approx(reference_aupro(masks, maps), abs=1e-9)
    assert values["pixel_aupro_cflow"] == metrics.aupro_cflow(masks, maps)
    assert values["pixel_aupro_cflow"] == pytest.approx(reference_cflow(masks, maps), abs=1e-9)
    assert values["pixel_auroc"] == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-10)
    assert (values["pixel_ap"], values["pixel_f1max"]) == (
        metrics.pixel_ap(masks, maps),
        metrics.pixel_f1_max(masks, maps),
    )


def test_compute_metrics_undefined_is_nan_with_notes() -> None:
    masks, maps = blob_data(1)
    values, notes = metrics.compute_metrics([1, 1, 1], [0.2, 0.4, 0.9])
    assert all(math.isnan(values[k]) for k in metrics.METRICS)
    assert "image metrics undefined: all test images are anomalous" in notes
    assert any("no pixel masks" in n for n in notes)

    values, notes = metrics.compute_metrics([0, 0], [0.2, 0.4])
    assert math.isnan(values["image_auroc"]) and any("no anomalous" in n for n in notes)

    n = len(maps)
    values, notes = metrics.compute_metrics(np.arange(n) % 2, np.arange(n), np.zeros_like(masks), maps)
    assert not math.isnan(values["image_auroc"])
    assert all(math.isnan(values[k]) for k in metrics.PIXEL_METRICS)
    assert any("pixel metrics undefined" in n for n in notes)


def test_shape_mismatch_raises() -> None:
    masks, maps = blob_data(0, n=2, size=8)
    for fn in (
        metrics.pixel_auroc,
        metrics.pixel_ap,
        metrics.pixel_f1_max,
        metrics.aupro,
        metrics.aupro_cflow,
    ):
        with pytest.raises(ValueError, match="shape"):
            fn(masks, maps[:, :4])
    with pytest.raises(ValueError):
        metrics.compute_metrics([0, 1], [0.1, 0.2], masks, maps[:1])
    with pytest.raises(ValueError):
        metrics.image_auroc([0, 1, 1], [0.1, 0.2])


def test_aupro_options_checked() -> None:
    masks, maps = blob_data(0, n=2, size=8)
    for fn in (metrics.aupro, metrics.aupro_cflow):
        for bad in (0.0, -0.1, 1.5):
            with pytest.raises(ValueError, match="fpr_limit"):
                fn(masks, maps, fpr_limit=bad)
    with pytest.raises(ValueError, match="num_thresholds"):
        metrics.aupro_cflow(masks, maps, num_thresholds=0)


def test_torch_inputs_accepted() -> None:
    masks, maps = blob_data(2, n=3, size=16)
    assert metrics.aupro(torch.from_numpy(masks), torch.from_numpy(maps)) == pytest.approx(
        metrics.aupro(masks, maps)
    )
    assert metrics.pixel_auroc(torch.from_numpy(masks).bool(), torch.from_numpy(maps)) == pytest.approx(
        metrics.pixel_auroc(masks, maps)
    )


def test_mean_over_categories() -> None:
    assert metrics.mean_over_categories([0.5, float("nan"), 0.7, None]) == pytest.approx(0.6)
    assert math.isnan(metrics.mean_over_categories([float("nan"), float("nan")]))
    assert math.isnan(metrics.mean_over_categories([]))


# ---------------------------------------------------------------- float16 counting path


def as_stored(maps: np.ndarray) -> np.ndarray:
    """Maps rounded to float16 and back, as the runner scores them (runner.compact_maps)."""
    return maps.astype(np.float16).astype(np.float32)


def all_pixel_metrics(masks: object, maps: object) -> list[float]:
    return [
        *metrics.pooled_pixel_metrics(masks, maps),
        metrics.aupro(masks, maps),
        metrics.aupro_cflow(masks, maps),
    ]


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False), (3, True)])
def test_float16_maps_counted_match_sklearn_and_references(seed: int, ties: bool) -> None:
    masks, maps = blob_data(seed, n=4, size=24, ties=ties)
    maps = as_stored(maps * 3.0)
    counts = metrics._counts(masks, maps)
    assert counts.values.size == np.unique(maps).size  # one bin per distinct value
    y, s = masks.ravel(), maps.ravel()
    auroc, ap, f1 = metrics.pooled_pixel_metrics(masks, maps)
    assert auroc == pytest.approx(roc_auc_score(y, s), abs=1e-12)
    assert ap == pytest.approx(average_precision_score(y, s), abs=1e-12)
    assert f1 == pytest.approx(brute_f1max(y, s), abs=1e-12)
    assert metrics.aupro(masks, maps) == pytest.approx(reference_aupro(masks, maps), abs=1e-9)
    assert metrics.aupro_cflow(masks, maps) == pytest.approx(reference_cflow(masks, maps), abs=1e-9)


def test_float16_counting_equals_unique_counting(monkeypatch: pytest.MonkeyPatch) -> None:
    masks, maps = blob_data(7, n=5, size=20, ties=True)
    maps = as_stored(maps)
    maps[0, 0, :4] = [-0.0, 0.0, -0.0, 0.0]  # -0 and +0 are one score
    fast = all_pixel_metrics(masks, maps)
    assert metrics._count_short(list(zip(masks != 0, maps)), np.ones(int(masks.sum()))) is not None
    monkeypatch.setattr(metrics, "_count_short", lambda chunks, weights: None)  # force the sorted path
    slow = all_pixel_metrics(masks, maps)
    assert fast[:3] == slow[:3]  # AUROC, AP, F1-max: the same float operations, bit-equal
    assert fast[3:] == pytest.approx(slow[3:], abs=1e-12)


def test_long_values_use_exact_sorted_path_short_ones_are_counted() -> None:
    masks, maps = blob_data(8, n=3, size=16)
    assert metrics._short_codes(maps[0]) is None  # float32 noise has more than 11 significant bits
    assert metrics._short_codes(maps[0].astype(np.float64)) is None
    y = masks.ravel()
    big = as_stored(maps) + np.float32(70000.0)  # beyond float16's range, long significands
    assert metrics._short_codes(big[0]) is None
    assert metrics.pixel_auroc(masks, big) == pytest.approx(roc_auc_score(y, big.ravel()), abs=1e-12)
    huge = as_stored(maps) * np.float32(2.0**20)  # beyond float16's range, still 11 significant bits
    assert metrics._short_codes(huge[0]) is not None
    assert metrics.pooled_pixel_metrics(masks, huge) == metrics.pooled_pixel_metrics(masks, as_stored(maps))
    assert metrics.aupro(masks, huge) == pytest.approx(reference_aupro(masks, huge), abs=1e-9)


def test_constant_and_edge_maps_counted() -> None:
    masks, _ = blob_data(5, n=3, size=12)
    const = np.full(masks.shape, 0.5, np.float32)
    auroc, ap, f1 = metrics.pooled_pixel_metrics(masks, const)
    assert auroc == 0.5 and ap == pytest.approx(masks.mean()) and f1 == pytest.approx(2 * ap / (ap + 1))
    assert metrics.aupro(masks, const) == pytest.approx(0.15)
    assert math.isnan(metrics.aupro_cflow(masks, const))
    perfect = as_stored(masks * 2.0 - 1.0)
    assert metrics.pooled_pixel_metrics(masks, perfect) == (1.0, 1.0, 1.0)
    assert metrics.aupro(masks, perfect) == pytest.approx(1.0)


def test_ragged_float16_maps_pool_like_stacked() -> None:
    masks, maps = blob_data(6, n=4, size=16, ties=True)
    maps = as_stored(maps)
    ragged = all_pixel_metrics(list(masks), list(maps))
    assert ragged == pytest.approx(all_pixel_metrics(masks, maps), abs=1e-12)


@pytest.mark.parametrize("as_f16", [True, False])
def test_one_class_pixels_on_both_counting_paths(as_f16: bool) -> None:
    _, maps = blob_data(3, n=2, size=8)
    maps = as_stored(maps) if as_f16 else maps
    for masks in (np.zeros(maps.shape, np.uint8), np.ones(maps.shape, np.uint8)):
        assert all(math.isnan(v) for v in all_pixel_metrics(masks, maps))
