"""Print the time of each pixel metric on synthetic blob masks and smoothed noisy maps.

Usage: python benchmarks/bench_metrics.py [--images 100] [--size 256] [--repeat 1] [--sklearn] [--float32]
(--sklearn also times scikit-learn's roc_auc_score / average_precision_score / precision_recall_curve
on the same pixels, the baseline the pooled pixel metrics replace.) Maps are rounded to float16 as the
runner stores and scores them (runner.compact_maps); --float32 keeps them unrounded (the np.unique path).
Synthetic data only (random maps): the times matter here, not the metric values.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
from scipy import ndimage
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from adbench import metrics


def synthetic(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Masks with a few discs in two thirds of the images, maps = mask signal + smoothed noise."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((n, size, size), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    for i in range(n):
        if i % 3 == 0:
            continue
        for _ in range(rng.integers(1, 4)):
            cy, cx = rng.integers(0, size, 2)
            r = rng.integers(2, size // 8)
            masks[i][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = 1
    noise = ndimage.gaussian_filter(rng.normal(size=masks.shape).astype(np.float32), sigma=(0, 4, 4))
    noise /= noise.std()
    return masks, (masks * 1.5 + noise).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=100)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--sklearn", action="store_true", help="also time the scikit-learn equivalents")
    parser.add_argument("--float32", action="store_true", help="score unrounded float32 maps")
    args = parser.parse_args()
    masks, maps = synthetic(args.images, args.size)
    if not args.float32:
        maps = maps.astype(np.float16).astype(np.float32)
    print(
        f"{args.images} images of {args.size}x{args.size} = {masks.size / 1e6:.1f} M pixels (synthetic maps)"
    )
    for name, fn in [
        ("pixel_auroc", metrics.pixel_auroc),
        ("pixel_ap", metrics.pixel_ap),
        ("pixel_f1max", metrics.pixel_f1_max),
        ("pixel_aupro", metrics.aupro),
        ("pixel_aupro_cflow", metrics.aupro_cflow),
    ]:
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            value = fn(masks, maps)
            times.append(time.perf_counter() - t0)
        print(f"{name:18s} {min(times):7.3f} s   (value {value:.4f})")
    if args.sklearn:
        y, s = masks.ravel(), maps.ravel()
        for name, fn in [
            ("sklearn auroc", roc_auc_score),
            ("sklearn ap", average_precision_score),
            ("sklearn pr_curve", precision_recall_curve),
        ]:
            t0 = time.perf_counter()
            fn(y, s)
            print(f"{name:18s} {time.perf_counter() - t0:7.3f} s")
    t0 = time.perf_counter()
    metrics.compute_metrics(masks.reshape(len(masks), -1).any(1), maps.max(axis=(1, 2)), masks, maps)
    print(f"{'compute_metrics':18s} {time.perf_counter() - t0:7.3f} s   (all metrics)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
