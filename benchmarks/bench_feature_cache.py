"""Seconds per training epoch of dma_sap with and without the frozen-feature cache (tiny backbones, CPU).

The tiny backbones are randomly initialised: the figures measure the engine, not any real model.
Usage: python benchmarks/bench_feature_cache.py [--images 64] [--size 112] [--epochs 3] [--variant D]
"""

from __future__ import annotations

import torch
from _training import random_batch, timed_fit, training_parser

from adbench.plugins.dma_sap import DMASAP, DMASAPConfig


def make(size: int, epochs: int, variant: str) -> DMASAP:
    cfg = DMASAPConfig(
        clip_backbone="tiny-clip",
        dino_backbone="tiny-dinov2",
        image_size=size,
        epochs=epochs,
        variant=variant,
    )
    method = DMASAP(cfg, "cpu")
    torch.manual_seed(0)
    method.setup()
    return method


def main() -> None:
    ap = training_parser(__doc__)
    ap.add_argument("--variant", default="D")
    args = ap.parse_args()
    batch = random_batch(args)
    print(
        f"dma_sap variant {args.variant}, tiny-clip + tiny-dinov2 (random weights), {args.images} images "
        f"at {args.size} px, batch 8, {args.epochs} epochs, CPU threads {torch.get_num_threads()}"
    )
    rows = {}
    for use_cache in (True, False):
        method = make(args.size, args.epochs, args.variant)
        log, total, per_epoch = timed_fit(method, batch, use_cache)
        rows[use_cache] = (log, total, per_epoch)
        label = "with cache" if use_cache else "no cache  "
        print(
            f"{label}: {per_epoch:.3f} s/epoch, feature pass {log.feature_seconds:.3f} s (once), "
            f"total {total:.3f} s, losses {[round(x, 4) for x in log.losses]}"
        )
    (c_log, c_total, c_epoch), (_, n_total, n_epoch) = rows[True], rows[False]
    print(
        f"speed-up per epoch: {n_epoch / c_epoch:.2f}x; whole fit ({args.epochs} epochs): {n_total / c_total:.2f}x"
    )
    print(f"paper setting (10 epochs): {(10 * n_epoch) / (c_log.feature_seconds + 10 * c_epoch):.2f}x")


if __name__ == "__main__":
    main()
