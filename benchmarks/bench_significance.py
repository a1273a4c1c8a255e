"""Time of the paired statistics at paper scale: one 200-image category at 518 px (53.7 M pixels).

Prints seconds for building the per-image histograms and for 1000 paired bootstrap resamples of
each pixel metric, and for DeLong on the image scores. Run: python benchmarks/bench_significance.py
"""

from __future__ import annotations

import time

import numpy as np

from adbench import significance
from adbench.significance import Predictions


def main(n: int = 200, size: int = 518, resamples: int = 1000) -> None:
    rng = np.random.default_rng(0)
    labels = np.array([0] * (n // 2) + [1] * (n - n // 2))
    masks = np.zeros((n, size, size), np.uint8)
    for i in np.flatnonzero(labels):
        y, x = rng.integers(0, size - 80, 2)
        masks[i, y : y + 60, x : x + 80] = 1
    runs = []
    for strength in (0.5, 0.4):
        maps = (rng.random((n, size, size), dtype=np.float32) + strength * masks).astype(np.float16)
        runs.append(
            Predictions(
                labels, rng.normal(labels * strength * 4, 1.0), list(maps.astype(np.float32)), list(masks)
            )
        )
    t = time.perf_counter()
    significance.delong_paired(labels, runs[0].scores, runs[1].scores)
    print(f"DeLong image AUROC: {time.perf_counter() - t:.3f} s")
    for metric in ("pixel_auroc", "pixel_ap", "pixel_aupro"):
        t = time.perf_counter()
        res, _ = significance.bootstrap_paired(metric, [runs[0]], [runs[1]], n_resamples=resamples)
        print(
            f"{metric}: {time.perf_counter() - t:.1f} s for {resamples} paired resamples "
            f"(diff {100 * res.diff:+.2f} [{100 * res.low:+.2f}, {100 * res.high:+.2f}])"
        )


if __name__ == "__main__":
    main()
