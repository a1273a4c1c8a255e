"""The paired statistics against independent references (brute force, sklearn, scipy, simulation)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats
from sklearn.metrics import average_precision_score, roc_auc_score

from adbench import metrics, rank_tests, significance
from adbench.significance import Predictions


def _brute_delong_var(labels: np.ndarray, a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """DeLong (1988) by its definition: psi over every (anomalous, normal) pair, O(m n) loops."""
    pos, neg = labels == 1, labels == 0

    def components(s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = s[pos], s[neg]
        psi = np.array([[1.0 if xi > yj else 0.5 if xi == yj else 0.0 for yj in y] for xi in x])
        return psi.mean(axis=1), psi.mean(axis=0)

    (v10a, v01a), (v10b, v01b) = components(a), components(b)
    m, n = len(v10a), len(v01a)
    s10 = np.cov(np.stack([v10a, v10b]))
    s01 = np.cov(np.stack([v01a, v01b]))
    cov = s10 / m + s01 / n
    return v10a.mean(), v10b.mean(), cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]


def test_delong_matches_brute_force_covariance_with_ties():
    rng = np.random.default_rng(3)
    labels = np.array([0] * 17 + [1] * 11)
    a = np.round(rng.normal(labels * 1.0, 1.0), 1)  # rounding plants ties
    b = np.round(rng.normal(labels * 0.5, 1.0), 1)
    auc_a, auc_b, var = _brute_delong_var(labels, a, b)
    res = significance.delong_paired(labels, a, b)
    assert res.a == pytest.approx(roc_auc_score(labels, a), abs=1e-12)
    assert res.a == pytest.approx(auc_a, abs=1e-12) and res.b == pytest.approx(auc_b, abs=1e-12)
    assert res.se**2 == pytest.approx(var, rel=1e-10)
    z = (auc_a - auc_b) / np.sqrt(var)
    assert res.p == pytest.approx(2 * stats.norm.sf(abs(z)), rel=1e-9)


def test_delong_identical_scores_is_not_significant():
    labels = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    res = significance.delong_paired(labels, s, s)
    assert res.diff == 0 and res.p == 1.0


def test_histogram_statistics_equal_the_exact_metrics_on_float16_maps():
    rng = np.random.default_rng(0)
    masks = np.zeros((6, 24, 24), np.uint8)
    masks[1, 3:9, 4:10] = 1
    masks[2, 10:20, 2:5] = 1
    masks[2, 1:3, 20:23] = 1
    masks[4, 12:16, 12:22] = 1
    maps = np.round((rng.random(masks.shape) + masks * 0.6) * 512) / 512  # ties, below MAX_BINS values
    hist = significance.PixelHistograms.build(list(maps), list(masks))
    ones = np.ones((1, len(maps)))
    y, s = masks.ravel(), maps.ravel()
    assert significance.PIXEL_STATISTICS["pixel_auroc"](hist, ones)[0] == pytest.approx(
        roc_auc_score(y, s), abs=1e-10
    )
    assert significance.PIXEL_STATISTICS["pixel_ap"](hist, ones)[0] == pytest.approx(
        average_precision_score(y, s), abs=1e-10
    )
    assert significance.PIXEL_STATISTICS["pixel_f1max"](hist, ones)[0] == pytest.approx(
        metrics.f1_max(y, s), abs=1e-9
    )
    assert significance.PIXEL_STATISTICS["pixel_aupro"](hist, ones)[0] == pytest.approx(
        metrics.aupro(masks, maps), abs=1e-6
    )


def test_weights_equal_the_metric_of_the_resampled_images():
    """A resample's weighted histogram is the metric of the images drawn (with repetition)."""
    rng = np.random.default_rng(1)
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    masks = np.zeros((8, 10, 10), np.uint8)
    for i in np.flatnonzero(labels):
        masks[i, 2:6, 3:7] = 1
    maps = (rng.random(masks.shape) + masks * 0.4).astype(np.float16).astype(np.float32)
    w = significance.resample_weights(labels, 3, rng)
    hist = significance.PixelHistograms.build(list(maps), list(masks))
    got = significance.PIXEL_STATISTICS["pixel_auroc"](hist, w)
    for r in range(3):
        idx = np.repeat(np.arange(8), w[r].astype(int))
        assert got[r] == pytest.approx(roc_auc_score(masks[idx].ravel(), maps[idx].ravel()), abs=1e-10)
        assert (w[r][labels == 1].sum(), w[r][labels == 0].sum()) == (4, 4)  # stratified


def test_bootstrap_interval_covers_a_known_difference():
    """Binormal scores: AUROC = Phi(d / sqrt 2), so the true difference is known; the 95 % interval
    must cover it in about 95 % of simulated pairs (>= 85 % of 60 here, a loose bound for noise)."""
    da, db = 1.2, 0.8
    truth = stats.norm.cdf(da / np.sqrt(2)) - stats.norm.cdf(db / np.sqrt(2))
    labels = np.array([0] * 60 + [1] * 60)
    rng = np.random.default_rng(7)
    hits = 0
    for trial in range(60):
        base = rng.normal(size=len(labels))
        a = base + labels * da
        b = 0.3 * base + np.sqrt(1 - 0.09) * rng.normal(size=len(labels)) + labels * db
        res, _ = significance.bootstrap_paired(
            "image_auroc", [Predictions(labels, a)], [Predictions(labels, b)], n_resamples=300, seed=trial
        )
        hits += res.low <= truth <= res.high
    assert hits >= 51


def test_bootstrap_detects_a_real_difference_and_not_a_null_one():
    rng = np.random.default_rng(11)
    labels = np.array([0] * 80 + [1] * 40)
    good = rng.normal(labels * 2.0, 1.0)
    bad = rng.normal(labels * 0.2, 1.0)
    res, _ = significance.bootstrap_paired(
        "image_ap", [Predictions(labels, good)], [Predictions(labels, bad)]
    )
    assert res.diff > 0 and res.p < 0.01 and res.low > 0
    same, _ = significance.bootstrap_paired(
        "image_ap", [Predictions(labels, good)], [Predictions(labels, good)]
    )
    assert same.diff == 0 and same.p == 1.0


def test_seed_aware_bootstrap_widens_with_seed_spread():
    rng = np.random.default_rng(5)
    labels = np.array([0] * 40 + [1] * 40)
    base = rng.normal(labels * 1.0, 1.0)
    steady = [Predictions(labels, base + 0.01 * rng.normal(size=80)) for _ in range(3)]
    noisy = [Predictions(labels, base + 2.0 * rng.normal(size=80)) for _ in range(3)]
    ref = [Predictions(labels, rng.normal(labels * 1.0, 1.0)) for _ in range(3)]
    narrow, _ = significance.bootstrap_paired("image_auroc", steady, ref, n_resamples=400)
    wide, _ = significance.bootstrap_paired("image_auroc", noisy, ref, n_resamples=400)
    assert (wide.high - wide.low) > (narrow.high - narrow.low)


def test_bootstrap_refuses_different_test_sets():
    with pytest.raises(ValueError, match="same test images"):
        significance.bootstrap_paired(
            "image_ap",
            [Predictions(np.array([0, 1]), np.zeros(2))],
            [Predictions(np.array([1, 0]), np.zeros(2))],
        )


def test_holm_matches_its_definition():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone max: 0.06
    assert rank_tests.holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert rank_tests.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])


def test_friedman_equals_scipy_with_ties_and_ranks_best_first():
    rng = np.random.default_rng(2)
    x = np.round(rng.random((9, 4)), 1)
    x[:, 0] += 0.5
    res = rank_tests.friedman_nemenyi(x, ["a", "b", "c", "d"])
    ref = stats.friedmanchisquare(*x.T)
    assert res.statistic == pytest.approx(ref.statistic, rel=1e-10)
    assert res.p == pytest.approx(ref.pvalue, rel=1e-8)
    assert res.mean_ranks[0] == min(res.mean_ranks)


def test_nemenyi_critical_difference_matches_demsar_table():
    """Demšar (2006), Table 5(a): q_0.05 for k = 4 is 2.569; CD = q sqrt(k(k+1)/(6N))."""
    res = rank_tests.friedman_nemenyi(np.random.default_rng(0).random((10, 4)), list("abcd"))
    assert res.critical_difference == pytest.approx(2.569 * np.sqrt(4 * 5 / 60), abs=2e-3)


def test_float32_maps_fall_back_to_quantile_bins_close_to_exact():
    rng = np.random.default_rng(4)
    masks = np.zeros((5, 40, 40), np.uint8)
    masks[1:4, 10:20, 10:25] = 1
    maps = rng.random(masks.shape) + 0.3 * masks  # float64, not float16-exact: approximate bins
    hist = significance.PixelHistograms.build(list(maps), list(masks))
    value = significance.PIXEL_STATISTICS["pixel_auroc"](hist, np.ones((1, 5)))[0]
    assert value == pytest.approx(roc_auc_score(masks.ravel(), maps.ravel()), abs=1e-3)


def test_float16_codes_preserve_order_and_merge_signed_zero():
    values = np.array([-2.0, -0.5, -0.0, 0.0, 1e-4, 0.5, 3.0], np.float16)
    codes = significance._float16_codes(values)
    assert np.all(np.diff(codes[[0, 1, 2, 4, 5, 6]]) > 0) and codes[2] == codes[3]
